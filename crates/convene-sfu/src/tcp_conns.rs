//! A worker's ICE-TCP connections: framed reads into the SFU, framed writes out
//! of it, each connection with bounded buffers so that no client can stall the
//! worker or make it hold much memory.
//!
//! A connection reaches the worker already accepted (by the server's listener,
//! which read its first frame to find the worker; see [`crate::pool`]). From
//! then on it is read here, at most [`READ_BUDGET`] bytes per turn of the
//! worker's loop, so one client that floods its connection gets no more turns
//! than another. Writes that the kernel cannot take at once wait in a queue of
//! at most [`MAX_QUEUED`] bytes; beyond that whole frames are dropped (media is
//! loss-tolerant, a torn frame would break the stream). A connection is closed,
//! with a debug line, on a frame larger than WebRTC sends, on EOF or error,
//! after [`IDLE_TIMEOUT`] without a frame that reached a connection (browsers
//! check consent every few seconds; a half-open connection says nothing), and
//! when it has not passed an ICE check (its STUN integrity checked with the
//! connection's password) within [`VERIFY_TIMEOUT`] or [`MAX_UNVERIFIED_FRAMES`]:
//! naming a live username fragment is not enough to keep a socket open. When
//! the media connection it served goes, it goes too.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use tracing::debug;

use crate::transport::{next_frame, push_frame, MAX_FRAME};
use crate::Sfu;

/// Bytes read from one connection per turn of the worker's loop.
pub const READ_BUDGET: usize = 64 * 1024;
/// Bytes waiting to be written to one connection before frames are dropped:
/// about a second of a 2 Mbit/s subscription.
pub const MAX_QUEUED: usize = 256 * 1024;
/// The kernel's send buffer per connection (Linux doubles it): about half a
/// second of a 2 Mbit/s subscription.
const SEND_BUFFER: usize = 64 * 1024;
/// A connection with no frame for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// An adopted connection must pass an ICE check within this...
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(10);
/// ... and within this many frames (a browser's checks and their retries).
pub const MAX_UNVERIFIED_FRAMES: u32 = 32;
/// Connections one worker holds at most.
pub const MAX_CONNECTIONS: usize = 8192;
/// Tokens below this are the worker's own (socket, waker).
pub const FIRST_TOKEN: usize = 16;

/// Held for as long as the connection lives (the acceptor's count of open
/// connections, per address and in all).
pub struct Guard(pub Box<dyn Send>);

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Guard")
    }
}

struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    /// Bytes read that do not make a whole frame yet.
    input: Vec<u8>,
    /// Framed bytes waiting for the kernel, from `sent` on.
    output: Vec<u8>,
    sent: usize,
    wants_write: bool,
    /// When a frame last reached a media connection (or the adoption).
    last_frame: Instant,
    adopted_at: Instant,
    /// It passed an ICE check: its frames reach a connection.
    verified: bool,
    unverified_frames: u32,
    _guard: Guard,
}

/// Counters for stats and tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct TcpStats {
    pub open: usize,
    pub frames_in: u64,
    pub frames_dropped: u64,
    pub closed_bad_framing: u64,
    pub closed_idle: u64,
    pub closed_unverified: u64,
}

pub struct TcpConns {
    /// The SFU's TCP candidate: the destination of every frame read.
    local: SocketAddr,
    conns: HashMap<Token, Conn>,
    by_peer: HashMap<SocketAddr, Token>,
    next_token: usize,
    /// Connections with bytes left to read after their budget ran out.
    unread: Vec<Token>,
    /// Peers of connections closed since the last [`TcpConns::poll_closed`]:
    /// the SFU forgets their routes.
    closed: Vec<SocketAddr>,
    /// Connections with frames queued since the last [`TcpConns::write_queued`]:
    /// one write per connection per flush, not one per frame.
    unwritten: Vec<Token>,
    next_sweep: Instant,
    stats: TcpStats,
    buf: Vec<u8>,
}

impl TcpConns {
    pub fn new(local: SocketAddr, now: Instant) -> Self {
        TcpConns {
            local,
            conns: HashMap::new(),
            by_peer: HashMap::new(),
            next_token: FIRST_TOKEN,
            unread: Vec::new(),
            unwritten: Vec::new(),
            closed: Vec::new(),
            next_sweep: now,
            stats: TcpStats::default(),
            buf: vec![0; 16 * 1024],
        }
    }

    pub fn stats(&self) -> TcpStats {
        TcpStats {
            open: self.conns.len(),
            ..self.stats
        }
    }

    /// Whether a connection still has bytes to read this turn (the loop must
    /// not sleep).
    pub fn has_unread(&self) -> bool {
        !self.unread.is_empty()
    }

    pub fn owns(&self, token: Token) -> bool {
        token.0 >= FIRST_TOKEN
    }

    /// Take over an accepted connection whose first `first` bytes were already read.
    pub fn adopt(
        &mut self,
        registry: &Registry,
        sfu: &mut Sfu,
        stream: std::net::TcpStream,
        first: Vec<u8>,
        guard: Guard,
        now: Instant,
    ) {
        let Ok(peer) = stream.peer_addr() else {
            return;
        };
        if self.conns.len() >= MAX_CONNECTIONS {
            debug!(peer = %crate::logged_address::logged(peer), "ICE-TCP connection refused: this worker holds {MAX_CONNECTIONS}");
            return;
        }
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        let _ = stream.set_nodelay(true);
        // A fixed, small kernel send buffer: what the kernel holds for a slow
        // reader is media growing stale (autotuning would let it hold
        // megabytes, seconds of video); beyond it frames wait in our queue,
        // which drops whole frames when full.
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
        let mut stream = TcpStream::from_std(stream);
        let token = Token(self.next_token);
        self.next_token += 1;
        if let Err(e) = registry.register(&mut stream, token, Interest::READABLE) {
            debug!(peer = %crate::logged_address::logged(peer), "ICE-TCP register: {e}");
            return;
        }
        // A client reconnecting from the same address replaces its old connection.
        if let Some(old) = self.by_peer.insert(peer, token) {
            self.close(registry, old, "replaced");
        }
        self.conns.insert(
            token,
            Conn {
                stream,
                peer,
                input: first,
                output: Vec::new(),
                sent: 0,
                wants_write: false,
                last_frame: now,
                adopted_at: now,
                verified: false,
                unverified_frames: 0,
                _guard: guard,
            },
        );
        debug!(peer = %crate::logged_address::logged(peer), "ICE-TCP connection adopted");
        // The bytes already read, and whatever arrived since; only this
        // connection's (the others wait for their turn of the loop).
        match self.read(sfu, token, now) {
            Ok(true) => self.unread.push(token),
            Ok(false) => {}
            Err(why) => self.close(registry, token, &why),
        }
    }

    /// Close the connection from `peer` (its media connection is gone).
    pub fn close_peer(&mut self, registry: &Registry, peer: SocketAddr) {
        if let Some(&token) = self.by_peer.get(&peer) {
            self.close(registry, token, "its media connection ended");
        }
    }

    /// The peers of connections closed since the last call.
    pub fn poll_closed(&mut self) -> Option<SocketAddr> {
        self.closed.pop()
    }

    /// A readiness event for one of ours.
    pub fn ready(&mut self, registry: &Registry, token: Token, readable: bool, writable: bool) {
        if writable {
            self.write_out(registry, token);
        }
        if readable && !self.unread.contains(&token) {
            self.unread.push(token);
        }
    }

    /// Give every connection with bytes waiting one budget's worth of reading.
    pub fn read_unread(&mut self, registry: &Registry, sfu: &mut Sfu, now: Instant) {
        for token in std::mem::take(&mut self.unread) {
            match self.read(sfu, token, now) {
                Ok(true) => self.unread.push(token),
                Ok(false) => {}
                Err(why) => self.close(registry, token, &why),
            }
        }
    }

    /// Read up to the budget; `Ok(true)` if more may be waiting.
    fn read(&mut self, sfu: &mut Sfu, token: Token, now: Instant) -> Result<bool, String> {
        let Some(c) = self.conns.get_mut(&token) else {
            return Ok(false);
        };
        let mut budget = READ_BUDGET;
        let mut more = true;
        // Frames already buffered (the acceptor's first bytes) go first.
        loop {
            let mut taken = 0;
            while let Some((frame, n)) = next_frame(&c.input[taken..]).map_err(|e| {
                self.stats.closed_bad_framing += 1;
                e.to_string()
            })? {
                self.stats.frames_in += 1;
                taken += n;
                if frame.is_empty() {
                    continue; // legal framing, no datagram: keeps nothing alive
                }
                if sfu.handle_tcp_frame(now, c.peer, self.local, frame) {
                    c.verified = true;
                    c.last_frame = now;
                } else if !c.verified {
                    c.unverified_frames += 1;
                    if c.unverified_frames > MAX_UNVERIFIED_FRAMES {
                        self.stats.closed_unverified += 1;
                        return Err("no ICE check passed in its first frames".into());
                    }
                }
            }
            c.input.drain(..taken);
            if budget == 0 || !more {
                break;
            }
            let want = (2 + MAX_FRAME).min(budget).min(self.buf.len());
            match c.stream.read(&mut self.buf[..want]) {
                Ok(0) => return Err("closed by the client".into()),
                Ok(n) => {
                    budget -= n;
                    c.input.extend_from_slice(&self.buf[..n]);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => more = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(more)
    }

    /// Queue a frame for the connection from `peer`; it is written by the next
    /// [`TcpConns::write_queued`].
    pub fn send(&mut self, peer: SocketAddr, payload: &[u8]) {
        let Some(&token) = self.by_peer.get(&peer) else {
            return; // the connection went; ICE will notice
        };
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        if c.output.len() - c.sent + 2 + payload.len() > MAX_QUEUED {
            self.stats.frames_dropped += 1;
            return;
        }
        if c.sent > 0 && c.sent == c.output.len() {
            c.output.clear();
            c.sent = 0;
        }
        let was_empty = c.sent == c.output.len();
        push_frame(&mut c.output, payload);
        // A connection waiting for writability is written when the kernel says so.
        if was_empty && !c.wants_write {
            self.unwritten.push(token);
        }
    }

    /// Write what was queued since the last call, as much as the kernel takes.
    pub fn write_queued(&mut self, registry: &Registry) {
        for token in std::mem::take(&mut self.unwritten) {
            self.write_out(registry, token);
        }
    }

    fn write_out(&mut self, registry: &Registry, token: Token) {
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        while c.sent < c.output.len() {
            match c.stream.write(&c.output[c.sent..]) {
                Ok(0) => break,
                Ok(n) => c.sent += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    let why = e.to_string();
                    self.close(registry, token, &why);
                    return;
                }
            }
        }
        if c.sent == c.output.len() {
            c.output.clear();
            c.sent = 0;
        } else if c.sent > MAX_QUEUED {
            c.output.drain(..c.sent);
            c.sent = 0;
        }
        let wants_write = !c.output.is_empty();
        if wants_write != c.wants_write {
            c.wants_write = wants_write;
            let interest = if wants_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let _ = registry.reregister(&mut c.stream, token, interest);
        }
    }

    /// Close connections that have been silent too long (checked about once a second).
    pub fn sweep(&mut self, registry: &Registry, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + Duration::from_secs(1);
        let stale: Vec<(Token, bool)> = self
            .conns
            .iter()
            .filter_map(|(t, c)| {
                let unverified =
                    !c.verified && now.saturating_duration_since(c.adopted_at) >= VERIFY_TIMEOUT;
                let idle = now.saturating_duration_since(c.last_frame) >= IDLE_TIMEOUT;
                (unverified || idle).then_some((*t, unverified))
            })
            .collect();
        for (token, unverified) in stale {
            if unverified {
                self.stats.closed_unverified += 1;
                self.close(registry, token, "no ICE check passed in time");
            } else {
                self.stats.closed_idle += 1;
                self.close(registry, token, "idle");
            }
        }
    }

    fn close(&mut self, registry: &Registry, token: Token, why: &str) {
        self.unread.retain(|t| *t != token);
        self.unwritten.retain(|t| *t != token);
        let Some(mut c) = self.conns.remove(&token) else {
            return;
        };
        if self.by_peer.get(&c.peer) == Some(&token) {
            self.by_peer.remove(&c.peer);
        }
        let _ = registry.deregister(&mut c.stream);
        self.closed.push(c.peer);
        // Debug only: a client can open and break connections as fast as it
        // likes, and its lines would crowd out the log (the counts are in stats).
        debug!(peer = %crate::logged_address::logged(c.peer), "ICE-TCP connection closed: {why}");
    }
}

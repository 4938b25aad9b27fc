//! Runs one [`Sfu`] on its own thread with one UDP socket and the ICE-TCP
//! connections handed to it ([`crate::tcp_conns`]), driven by mio.
//!
//! The meeting layer talks to it through an [`SfuHandle`]: commands in over a
//! channel (waking the thread), events out through a callback.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use tracing::{debug, error, warn};

use crate::pool::Directory;
use crate::sendmany::{SendMany, MAX_PER_CALL};
use crate::tcp_conns::{Guard, TcpConns};
use crate::{
    ConnId, ConnOptions, Datagram, Priority, Sfu, SfuConfig, SfuEvent, SfuStats, TrackId,
    TrackKind, Transport, View,
};

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);
/// Largest datagram we accept; larger ones are not WebRTC.
const RECV_BUF: usize = 2048;
/// Kernel buffers asked for on the media socket. One incoming keyframe to 500
/// subscribers is about 10 000 datagrams out, and RTCP from every subscriber keeps
/// arriving meanwhile: the default 208 KiB receive buffer overflowed (measured:
/// about 2 400 drops/s at fan-out 500, each a loss for every subscriber when it was
/// media). The kernel caps these at net.core.rmem_max / wmem_max.
const SOCKET_BUFFER: usize = 8 << 20;
/// Datagrams received before what they produced is sent.
const RECV_BATCH: usize = 16;
/// ... or packets forwarded, whichever comes first: what a batch produced is sent
/// only at its end, so a batch is as much delay as work (16 voice packets to 1000
/// listeners each were 16 000 datagrams, about 190 ms). 2048 is a few video
/// frames to 500 subscribers, about 25 ms here.
const FLUSH_AFTER_FORWARDED: u64 = 2048;

#[derive(Debug)]
pub enum Command {
    AddConnection(ConnId, ConnOptions),
    RemoveConnection(ConnId),
    Publish {
        conn: ConnId,
        track: TrackId,
        kind: TrackKind,
        /// A camera in three layers (see [`Sfu::publish_simulcast`]).
        simulcast: bool,
    },
    /// How a subscriber shows a video (see [`Sfu::set_view`]).
    SetView {
        conn: ConnId,
        track: TrackId,
        view: View,
    },
    SetPriority {
        track: TrackId,
        priority: Priority,
    },
    Unpublish(TrackId),
    Pause {
        track: TrackId,
        paused: bool,
    },
    Subscribe {
        conn: ConnId,
        track: TrackId,
    },
    Unsubscribe {
        conn: ConnId,
        track: TrackId,
    },
    Answer {
        conn: ConnId,
        sdp: String,
    },
    /// Offer new ICE credentials to a client whose network changed.
    RestartIce(ConnId),
    /// An edge's offer for relay connection `conn` (cascading: see
    /// [`Sfu::relay_offer`]); the answer comes back as
    /// [`SfuEvent::RelayAnswer`], a refusal as [`SfuEvent::Failed`].
    RelayOffer {
        conn: ConnId,
        offer: String,
        /// The offer's mid for each track sent on it.
        tracks: Vec<(String, TrackId)>,
    },
    /// An accepted ICE-TCP connection for one of this worker's connections,
    /// with the bytes already read from it (at least its first frame).
    AdoptTcp {
        stream: std::net::TcpStream,
        first: Vec<u8>,
        guard: Guard,
    },
    Shutdown,
}

/// Cheap to clone; every clone drives the same SFU thread.
#[derive(Clone)]
pub struct SfuHandle {
    tx: Sender<Command>,
    waker: Arc<Waker>,
    next_conn: Arc<AtomicU64>,
    stats: Arc<Mutex<SfuStats>>,
    local_addr: SocketAddr,
    /// False once the worker's thread has ended (an I/O error stops it).
    running: Arc<AtomicBool>,
}

impl SfuHandle {
    pub fn send(&self, cmd: Command) {
        if self.tx.send(cmd).is_ok() {
            let _ = self.waker.wake();
        }
    }

    /// Allocate an id and create the connection.
    pub fn add_connection(&self) -> ConnId {
        self.add_connection_with(ConnOptions::default())
    }

    /// Allocate an id and create the connection, set up as `options` say.
    pub fn add_connection_with(&self, options: ConnOptions) -> ConnId {
        let id = ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed));
        self.send(Command::AddConnection(id, options));
        id
    }

    /// Allocate an id for a connection made another way (a relay's, which
    /// [`Command::RelayOffer`] creates).
    pub fn new_conn_id(&self) -> ConnId {
        ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed))
    }

    pub fn stats(&self) -> SfuStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The worker's thread still runs (readiness checks).
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }
}

/// Marks the worker stopped however its thread ends, a panic included.
struct RunningFlag(Arc<AtomicBool>);

impl Drop for RunningFlag {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

pub struct SfuThread {
    pub handle: SfuHandle,
    thread: Option<JoinHandle<()>>,
}

impl SfuThread {
    pub fn shutdown(mut self) {
        self.handle.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a worker needs besides its UDP port (through [`crate::pool::spawn_pool`]).
pub(crate) struct WorkerSetup {
    pub index: usize,
    /// The ICE-TCP candidate every worker announces, if TCP is on.
    pub tcp_announce: Option<SocketAddr>,
    pub directory: Directory,
    /// Shared by the pool's workers.
    pub next_conn: Arc<AtomicU64>,
}

/// Bind `bind` and start one SFU thread (through [`crate::pool::spawn_pool`]).
/// `announce` overrides the address given to clients (needed when binding a
/// wildcard address or behind NAT).
pub(crate) fn spawn_worker(
    bind: SocketAddr,
    announce: Option<SocketAddr>,
    setup: WorkerSetup,
    mut on_event: impl FnMut(SfuEvent) + Send + 'static,
) -> std::io::Result<SfuThread> {
    let std_socket = bind_media_socket(bind)?;
    let local_addr = std_socket.local_addr()?;
    let mut announce = announce.unwrap_or(local_addr);
    if announce.port() == 0 {
        announce.set_port(local_addr.port());
    }
    if announce.ip().is_unspecified() {
        return Err(std::io::Error::new(
            ErrorKind::InvalidInput,
            "the media socket is bound to a wildcard address: give the address clients should use",
        ));
    }
    // Sends go through a duplicate of the descriptor as a std socket (batched
    // with sendmmsg); mio only watches for reads.
    let send_socket = std_socket.try_clone()?;
    let mut socket = UdpSocket::from_std(std_socket);
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut socket, SOCKET, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (tx, rx) = mpsc::channel();
    let stats = Arc::new(Mutex::new(SfuStats::default()));
    let handle = SfuHandle {
        tx,
        waker,
        next_conn: setup.next_conn.clone(),
        stats: stats.clone(),
        local_addr: announce,
        running: Arc::new(AtomicBool::new(true)),
    };
    let running = RunningFlag(handle.running.clone());
    let config = SfuConfig {
        candidates: vec![announce],
        tcp_candidates: setup.tcp_announce.into_iter().collect(),
    };
    let thread = std::thread::Builder::new()
        .name("convene-sfu".into())
        .spawn(move || {
            let _running = running;
            if let Err(e) = run(
                poll,
                (socket, announce),
                Output::new(send_socket),
                rx,
                (config, setup),
                stats,
                &mut on_event,
            ) {
                error!("SFU thread stopped: {e}");
            }
        })?;
    Ok(SfuThread {
        handle,
        thread: Some(thread),
    })
}

fn bind_media_socket(bind: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a smaller buffer still works, with more drops under bursts.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    let got = socket.recv_buffer_size().unwrap_or(0);
    if got < SOCKET_BUFFER {
        warn!(
            "media socket receive buffer is {} KiB (asked for {} KiB): raise net.core.rmem_max for large meetings",
            got / 1024,
            SOCKET_BUFFER / 1024
        );
    }
    socket.set_nonblocking(true)?;
    socket.bind(&bind.into())?;
    // Without arrival times nothing is dropped as late; media still flows.
    #[cfg(target_os = "linux")]
    if let Err(e) = crate::stamped::enable(std::os::fd::AsRawFd::as_raw_fd(&socket)) {
        warn!("no kernel arrival times on the media socket: {e}");
    }
    Ok(socket.into())
}

/// One datagram: its length, sender, the time now, and when the kernel received
/// it (where the kernel does not say, it counts as just arrived).
fn recv(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, Instant, Instant)> {
    #[cfg(target_os = "linux")]
    {
        use crate::stamped;
        let fd = std::os::fd::AsRawFd::as_raw_fd(socket);
        // No GRO on this socket: one datagram per read.
        let r = stamped::recv(fd, buf)?;
        let clocks = stamped::Clocks::now();
        Ok((
            r.len,
            r.source,
            clocks.instant(),
            clocks.instant_of(r.arrival),
        ))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let (n, source) = socket.recv_from(buf)?;
        let now = Instant::now();
        Ok((n, source, now, now))
    }
}

/// `candidate` is the UDP candidate clients send to: the destination str0m
/// expects on every datagram (the bound address may be a wildcard, or a
/// private address behind NAT).
fn run(
    mut poll: Poll,
    (socket, candidate): (UdpSocket, SocketAddr),
    mut out: Output,
    rx: Receiver<Command>,
    (config, setup): (SfuConfig, WorkerSetup),
    stats: Arc<Mutex<SfuStats>>,
    on_event: &mut dyn FnMut(SfuEvent),
) -> std::io::Result<()> {
    let start = Instant::now();
    let mut tcp = TcpConns::new(setup.tcp_announce.unwrap_or(candidate), start);
    let mut sfu = Sfu::new(config, start);
    let mut events = Events::with_capacity(64);
    let mut buf = vec![0u8; RECV_BUF];
    let (mut busy, mut bytes_in) = (std::time::Duration::ZERO, 0u64);
    loop {
        let wait = if tcp.has_unread() {
            std::time::Duration::ZERO
        } else {
            sfu.next_timeout()
                .saturating_duration_since(Instant::now())
                .min(std::time::Duration::from_secs(1))
        };
        if let Err(e) = poll.poll(&mut events, Some(wait)) {
            if e.kind() != ErrorKind::Interrupted {
                return Err(e);
            }
        }
        let woke = Instant::now();
        for ev in events.iter() {
            if tcp.owns(ev.token()) {
                tcp.ready(
                    poll.registry(),
                    ev.token(),
                    ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                    ev.is_writable(),
                );
            }
        }
        // Commands first, all of them, so one batch gives one offer per connection.
        loop {
            match rx.try_recv() {
                Ok(Command::Shutdown) => return Ok(()),
                Ok(Command::AdoptTcp {
                    stream,
                    first,
                    guard,
                }) => tcp.adopt(
                    poll.registry(),
                    &mut sfu,
                    stream,
                    first,
                    guard,
                    Instant::now(),
                ),
                Ok(cmd) => apply(&mut sfu, cmd),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return Ok(()),
            }
        }
        tcp.read_unread(poll.registry(), &mut sfu, Instant::now());
        // Datagrams are handled in batches, and what they produce sent after each
        // batch: packets of one frame arrive together and share the drains.
        let mut batch = 0;
        let mut flushed_at = sfu.forwarded();
        loop {
            if batch == RECV_BATCH || sfu.forwarded() - flushed_at >= FLUSH_AFTER_FORWARDED {
                out.flush(&mut sfu, &mut tcp, poll.registry());
                batch = 0;
                flushed_at = sfu.forwarded();
            }
            match recv(&socket, &mut buf) {
                Ok((n, source, now, arrived)) => {
                    sfu.handle_datagram_received(now, arrived, source, candidate, &buf[..n]);
                    bytes_in += n as u64;
                    batch += 1;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // ICMP errors surface here on Linux; they concern one peer only.
                Err(e) => debug!("recv: {e}"),
            }
        }
        let now = Instant::now();
        sfu.handle_timeout(now);
        tcp.sweep(poll.registry(), now);
        while let Some(peer) = sfu.poll_dropped_tcp_peer() {
            tcp.close_peer(poll.registry(), peer);
        }
        while let Some(peer) = tcp.poll_closed() {
            sfu.forget_tcp_peer(peer);
        }
        sfu.negotiate_all();
        out.flush(&mut sfu, &mut tcp, poll.registry());
        // Before the offers go out: a client may connect over TCP as soon as
        // it has one.
        setup.directory.update(setup.index, &mut sfu);
        while let Some(ev) = sfu.poll_event() {
            on_event(ev);
        }
        busy += woke.elapsed();
        if let Ok(mut s) = stats.lock() {
            let t = tcp.stats();
            *s = SfuStats {
                tcp_connections: t.open,
                tcp_frames_dropped: t.frames_dropped,
                bytes_in,
                bytes_out: out.bytes,
                busy_ns: u64::try_from(busy.as_nanos()).unwrap_or(u64::MAX),
                ..sfu.stats()
            };
        }
    }
}

fn apply(sfu: &mut Sfu, cmd: Command) {
    let now = Instant::now();
    let (conn, result) = match cmd {
        Command::AddConnection(conn, options) => {
            (conn, sfu.add_connection_with(now, conn, options))
        }
        Command::RemoveConnection(conn) => {
            sfu.remove_connection(conn);
            return;
        }
        Command::Publish {
            conn,
            track,
            kind: TrackKind::Video,
            simulcast: true,
        } => (conn, sfu.publish_simulcast(conn, track)),
        Command::Publish {
            conn, track, kind, ..
        } => (conn, sfu.publish(conn, track, kind)),
        Command::SetView { conn, track, view } => {
            sfu.set_view(conn, track, view);
            return;
        }
        Command::SetPriority { track, priority } => {
            sfu.set_priority(track, priority);
            return;
        }
        Command::Unpublish(track) => {
            sfu.unpublish(track);
            return;
        }
        Command::Pause { track, paused } => {
            sfu.set_paused(track, paused);
            return;
        }
        Command::Subscribe { conn, track } => (conn, sfu.subscribe(conn, track)),
        Command::Unsubscribe { conn, track } => {
            sfu.unsubscribe(conn, track);
            return;
        }
        Command::Answer { conn, sdp } => (conn, sfu.accept_answer(now, conn, &sdp)),
        Command::RestartIce(conn) => (conn, sfu.restart_ice(conn)),
        Command::RelayOffer {
            conn,
            offer,
            tracks,
        } => match sfu.relay_offer(now, conn, &offer, &tracks) {
            Ok(sdp) => {
                sfu.push_event(SfuEvent::RelayAnswer { conn, sdp });
                return;
            }
            Err(e) => (conn, Err(e)),
        },
        Command::Shutdown | Command::AdoptTcp { .. } => return,
    };
    if let Err(error) = result {
        sfu.push_event(SfuEvent::Failed { conn, error });
    }
}

/// The sending side of the media socket.
struct Output {
    socket: std::net::UdpSocket,
    batch: Vec<Datagram>,
    sender: SendMany,
    errors: u64,
    /// Bytes handed to the kernel (UDP, less failed sends) or queued on TCP.
    bytes: u64,
}

impl Output {
    fn new(socket: std::net::UdpSocket) -> Self {
        Output {
            socket,
            batch: Vec::new(),
            sender: SendMany::default(),
            errors: 0,
            bytes: 0,
        }
    }

    /// Send everything the SFU has to send.
    fn flush(&mut self, sfu: &mut Sfu, tcp: &mut TcpConns, registry: &mio::Registry) {
        loop {
            self.batch.clear();
            while self.batch.len() < MAX_PER_CALL * 8 {
                let Some(d) = sfu.poll_transmit() else { break };
                self.bytes += d.contents.len() as u64;
                match d.transport {
                    Transport::Udp => self.batch.push(d),
                    Transport::Tcp => tcp.send(d.destination, &d.contents),
                }
            }
            tcp.write_queued(registry);
            if self.batch.is_empty() {
                return;
            }
            let (errors, bytes) = (&mut self.errors, &mut self.bytes);
            self.sender.send(&self.socket, &self.batch, |d, e| {
                *errors += 1;
                *bytes -= d.contents.len() as u64;
                if *errors % 1000 == 1 {
                    warn!(
                        "send to {} failed ({} so far): {e}",
                        crate::logged_address::logged(d.destination),
                        errors
                    );
                }
            });
        }
    }
}

//! Accepting HTTP connections with limits, so that people who only open
//! connections cannot exhaust the process's file descriptors: a cap on open
//! connections overall and per client address, a deadline for a request's
//! headers (which also closes keep-alive connections left idle), a cap on the
//! size of headers, and the open-files limit raised at start.
//!
//! Each accepted connection goes to [`connection`], which decides what it
//! speaks and serves it: HTTP, or with `--tls-cert` TLS and then HTTP inside
//! it (the handshake under the same deadline as a request's headers). The
//! certificates themselves are tls.rs's concern.
//!
//! A WebSocket keeps its connection's place in the counts for as long as it is
//! open (the count travels with the socket into the upgrade); its own keepalive
//! and idle rules are in ws.rs.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;
use tracing::{debug, info, warn};

/// Largest request head (request line and headers) read; larger gets 431.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most header fields in one request.
const MAX_HEADERS: usize = 64;
/// File descriptors kept back from the connection cap for the database, media
/// sockets, log files and the like.
const RESERVED_FDS: u64 = 256;
/// How long connections get to finish when the server stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub per_address: usize,
    /// Deadline for a request's headers, counted from when the connection is
    /// ready for the next request: a silent or idle connection is closed then.
    pub header_timeout: Duration,
    /// Addresses exempt from the per-address cap (the reverse proxies).
    pub trusted: Arc<[ipnet::IpNet]>,
}

/// Connection counters, for the admin stats.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    pub open: AtomicU64,
    pub accepted: AtomicU64,
    pub refused_total_cap: AtomicU64,
    pub refused_address_cap: AtomicU64,
}

/// Raise the soft open-files limit to the hard limit and return the result;
/// the connection cap is kept below it.
pub fn raise_open_files_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            warn!("could not raise the open-files limit: {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// The connection cap that fits in `open_files` descriptors.
pub fn connection_cap(wanted: usize, open_files: u64) -> usize {
    let fits = open_files.saturating_sub(RESERVED_FDS).max(16);
    wanted.min(usize::try_from(fits).unwrap_or(usize::MAX))
}

struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Who holds how many connections. A [`Slot`] gives its place back when
/// dropped. The main listener and the redirect listener share one.
pub struct Gate {
    limits: Limits,
    counts: Mutex<Counts>,
    stats: Arc<ConnectionStats>,
}

pub(crate) struct Slot {
    gate: Arc<Gate>,
    address: Option<IpAddr>,
}

impl Gate {
    pub fn new(limits: Limits, stats: Arc<ConnectionStats>) -> Arc<Gate> {
        Arc::new(Gate {
            limits,
            counts: Mutex::new(Counts {
                total: 0,
                by_address: HashMap::new(),
            }),
            stats,
        })
    }

    /// `peer` counts by its address group (an IPv4 address, an IPv6 /64).
    pub(crate) fn enter(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        let peer = peer.to_canonical();
        let exempt = self.limits.trusted.iter().any(|n| n.contains(&peer));
        let peer = crate::client_addr::address_group(peer);
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if c.total >= self.limits.max_connections {
            self.stats.refused_total_cap.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if !exempt {
            let n = c.by_address.entry(peer).or_default();
            if *n >= self.limits.per_address {
                self.stats
                    .refused_address_cap
                    .fetch_add(1, Ordering::Relaxed);
                return None;
            }
            *n += 1;
        }
        c.total += 1;
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        Some(Slot {
            gate: self.clone(),
            address: (!exempt).then_some(peer),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.gate.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.total -= 1;
        if let Some(a) = self.address {
            if let Some(n) = c.by_address.get_mut(&a) {
                *n -= 1;
                if *n == 0 {
                    c.by_address.remove(&a);
                }
            }
        }
        self.gate.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream (plain TCP, or TLS over it) that holds its connection's place in
/// the counts until it is dropped, which for a WebSocket is when the socket
/// closes.
struct Counted<S> {
    stream: S,
    _slot: Slot,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// What a listener's connections speak once accepted.
#[derive(Clone)]
pub enum Transport {
    /// HTTP/1.1 straight on TCP.
    Plain,
    /// TLS first (certificates from tls.rs), then HTTP/1.1 inside it.
    Tls(tokio_rustls::TlsAcceptor),
}

/// What the first bytes of a connection say it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Greeting {
    /// A TLS record carrying a handshake (a ClientHello): 0x16.
    Tls,
    /// An HTTP request line: it starts with a method, in ASCII letters.
    Http,
    /// Media over TCP (ICE-TCP, RFC 4571 framing): a two-byte length, so a
    /// first byte of 0x00 to 0x10 (see `may_be_ice_tcp`). Only looked for when
    /// the web port carries ICE-TCP; ice_tcp.rs then reads the first frame
    /// under its own deadline and closes what is not a STUN check.
    IceTcp,
    Other,
}

impl Greeting {
    fn of(first: u8, ice_tcp: bool) -> Greeting {
        match first {
            0x16 => Greeting::Tls,
            b if b.is_ascii_alphabetic() => Greeting::Http,
            b if ice_tcp && convene_sfu::transport::may_be_ice_tcp(b) => Greeting::IceTcp,
            _ => Greeting::Other,
        }
    }
}

/// Wait for a connection's first byte without taking it from the stream.
/// `None`: closed before saying anything.
async fn greeting(stream: &TcpStream, ice_tcp: bool) -> std::io::Result<Option<Greeting>> {
    let mut first = [0u8; 1];
    let n = stream.peek(&mut first).await?;
    Ok((n > 0).then(|| Greeting::of(first[0], ice_tcp)))
}

/// What every connection of one listener shares.
struct Served {
    app: Router,
    transport: Transport,
    header_timeout: Duration,
    /// The media workers, when this port also takes media over TCP.
    ice_tcp: Option<convene_sfu::pool::SfuPool>,
}

/// Serve `app` on `listener` until `stop` turns true, then give open requests
/// [`SHUTDOWN_GRACE`] to finish. Listeners that share `gate` share its caps.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    gate: Arc<Gate>,
    transport: Transport,
    ice_tcp: Option<convene_sfu::pool::SfuPool>,
    mut stop: watch::Receiver<bool>,
) {
    let local = listener
        .local_addr()
        .map_or_else(|e| e.to_string(), |a| a.to_string());
    info!(
        address = %local,
        tls = matches!(transport, Transport::Tls(_)),
        ice_tcp = ice_tcp.is_some(),
        max_connections = gate.limits.max_connections,
        per_address = gate.limits.per_address,
        header_timeout_s = gate.limits.header_timeout.as_secs_f32(),
        "accepting connections"
    );
    let served = Arc::new(Served {
        app,
        transport,
        header_timeout: gate.limits.header_timeout,
        ice_tcp,
    });
    let (closing_tx, closing) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            a = listener.accept() => a,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            // An IPv4 client on a dual-stack socket is an IPv4 client.
            Ok((s, peer)) => (s, SocketAddr::new(peer.ip().to_canonical(), peer.port())),
            Err(e) => {
                // EMFILE and friends: wait a moment rather than spin.
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = gate.enter(peer.ip()) else {
            debug!(peer = %convene_sfu::logged_address::logged(peer), "connection refused: at the connection cap");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tasks.spawn(connection(
            stream,
            peer,
            slot,
            served.clone(),
            closing.clone(),
        ));
    }
    let _ = closing_tx.send(true);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

/// One accepted connection, from its first byte to its close: decide what it
/// speaks, then serve it. Whatever the protocol, the connection holds its
/// `slot` throughout, and nothing waits longer than the header deadline for a
/// client that says nothing.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    served: Arc<Served>,
    closing: watch::Receiver<bool>,
) {
    // The first bytes and, for TLS, the whole handshake within the header
    // deadline: a client that connects and never sends a ClientHello, or
    // sends it slowly, is closed then. The request head that follows has a
    // deadline of its own (in `http`).
    let deadline = tokio::time::Instant::now() + served.header_timeout;
    let greeting = match (&served.transport, &served.ice_tcp) {
        // Plain HTTP only: hyper's own header deadline covers silence.
        (Transport::Plain, None) => Greeting::Http,
        _ => match tokio::time::timeout_at(deadline, greeting(&stream, served.ice_tcp.is_some()))
            .await
        {
            Ok(Ok(Some(g))) => g,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                debug!(peer = %convene_sfu::logged_address::logged(peer), "connection failed before its first bytes: {e}");
                return;
            }
            Err(_) => {
                debug!(peer = %convene_sfu::logged_address::logged(peer), "closed: nothing said within the header deadline");
                return;
            }
        },
    };
    if let (Greeting::IceTcp, Some(pool)) = (greeting, &served.ice_tcp) {
        crate::ice_tcp::take_over(stream, peer, pool.clone(), slot, Vec::new()).await;
        return;
    }
    match &served.transport {
        Transport::Plain => {
            let io = Counted {
                stream,
                _slot: slot,
            };
            http(io, peer, &served, closing).await;
        }
        Transport::Tls(acceptor) => {
            if greeting != Greeting::Tls {
                debug!(peer = %convene_sfu::logged_address::logged(peer), ?greeting, "closed: not TLS on a TLS port");
                return;
            }
            match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let io = Counted {
                        stream: tls,
                        _slot: slot,
                    };
                    http(io, peer, &served, closing).await;
                }
                Ok(Err(e)) => {
                    debug!(peer = %convene_sfu::logged_address::logged(peer), "TLS handshake failed: {e}")
                }
                Err(_) => {
                    debug!(peer = %convene_sfu::logged_address::logged(peer), "TLS handshake timed out")
                }
            }
        }
    }
}

/// HTTP/1.1 (and WebSocket upgrades) on an accepted, counted stream.
async fn http<S>(io: S, peer: SocketAddr, served: &Served, mut closing: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = served
        .app
        .clone()
        .map_request(move |req: hyper::Request<hyper::body::Incoming>| {
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            req
        });
    let svc = TowerToHyperService::new(svc);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(served.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES.max(8192) * 2)
        .max_header_size(MAX_HEADER_BYTES)
        .max_headers(MAX_HEADERS);
    let conn = builder
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                debug!(peer = %convene_sfu::logged_address::logged(peer), "connection ended: {e}");
            }
        }
        _ = closing.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_fits_in_the_open_files_limit() {
        assert_eq!(connection_cap(10_000, 1024), 768);
        assert_eq!(connection_cap(10_000, 1_048_576), 10_000);
        assert_eq!(connection_cap(10_000, 100), 16);
    }

    #[test]
    fn places_are_counted_per_address_and_given_back() {
        let gate = Gate::new(
            Limits {
                max_connections: 5,
                per_address: 2,
                header_timeout: Duration::from_secs(1),
                trusted: vec!["10.9.9.9/32".parse().unwrap()].into(),
            },
            Default::default(),
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a1 = gate.enter(ip("10.0.0.1")).unwrap();
        let _a2 = gate.enter(ip("10.0.0.1")).unwrap();
        assert!(gate.enter(ip("10.0.0.1")).is_none(), "per address");
        // IPv6 counts by /64: another address in it is the same client.
        let b1 = gate.enter(ip("2001:db8::1")).unwrap();
        let _b2 = gate.enter(ip("2001:db8::2")).unwrap();
        assert!(gate.enter(ip("2001:db8::3")).is_none(), "per /64");
        let _p1 = gate.enter(ip("10.9.9.9")).unwrap();
        assert!(gate.enter(ip("10.9.9.9")).is_none(), "overall cap");
        drop(b1);
        assert!(
            gate.enter(ip("2001:db8::3")).is_some(),
            "a place given back"
        );
        drop(a1);
        // A mapped IPv4 address is that IPv4 address.
        let _a3 = gate.enter(ip("::ffff:10.0.0.1")).unwrap();
        assert!(gate.enter(ip("::ffff:10.0.0.1")).is_none());
        assert!(gate.enter(ip("10.0.0.1")).is_none());
        assert_eq!(gate.stats.refused_address_cap.load(Ordering::Relaxed), 4);
        assert_eq!(gate.stats.refused_total_cap.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_trusted_proxy_is_not_held_to_the_per_address_cap() {
        let gate = Gate::new(
            Limits {
                max_connections: 10,
                per_address: 1,
                header_timeout: Duration::from_secs(1),
                trusted: vec!["10.9.9.9/32".parse().unwrap()].into(),
            },
            Default::default(),
        );
        let proxy: IpAddr = "10.9.9.9".parse().unwrap();
        let held: Vec<_> = (0..5).map(|_| gate.enter(proxy).unwrap()).collect();
        assert_eq!(held.len(), 5);
        let v6_64 = "2001:db8:0:1::5".parse().unwrap();
        let _c = gate.enter(v6_64).unwrap();
        assert!(gate.enter("2001:db8:0:1::6".parse().unwrap()).is_none());
        assert!(gate.enter("2001:db8:0:2::6".parse().unwrap()).is_some());
    }
}

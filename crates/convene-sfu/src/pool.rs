//! Several SFU workers, one thread and one UDP port each, so that a machine's
//! cores share the meetings. A meeting's connections all live on one worker
//! (forwarding never crosses threads); the pool gives each new meeting the worker
//! with the fewest meetings, then the fewest connections.
//!
//! ICE-TCP has one port for all workers: the server accepts a connection, reads
//! its first frame (a STUN binding request naming the SFU's username fragment)
//! and [`SfuPool::adopt_tcp`] hands it to the worker that knows that fragment,
//! as the workers keep a shared [`Directory`] of them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::driver::{spawn_worker, Command, SfuHandle, SfuThread, WorkerSetup};
use crate::tcp_conns::Guard;
use crate::transport::{first_frame, FramingError};
use crate::{Sfu, SfuEvent, SfuStats};

/// Which worker holds the connection with a given ICE username fragment.
#[derive(Clone, Default)]
pub struct Directory(Arc<Mutex<HashMap<String, usize>>>);

impl Directory {
    /// Take in what changed at worker `index` (called by the worker's loop).
    pub(crate) fn update(&self, index: usize, sfu: &mut Sfu) {
        let mut changes = std::iter::from_fn(|| sfu.poll_ufrag_change()).peekable();
        if changes.peek().is_none() {
            return;
        }
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (ufrag, added) in changes {
            if added {
                map.insert(ufrag, index);
            } else if map.get(&ufrag) == Some(&index) {
                map.remove(&ufrag);
            }
        }
    }

    fn worker_of(&self, ufrag: &str) -> Option<usize> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(ufrag).copied()
    }
}

/// Why an ICE-TCP connection was not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdoptError {
    #[error(transparent)]
    Framing(#[from] FramingError),
    #[error("the first frame is incomplete")]
    Incomplete,
    #[error("no connection has this ICE username")]
    UnknownUfrag,
}

struct Worker {
    handle: SfuHandle,
    /// Meetings holding a lease on this worker.
    meetings: Arc<AtomicUsize>,
}

/// Cheap to clone: hands out workers to meetings.
#[derive(Clone)]
pub struct SfuPool {
    workers: Arc<[Worker]>,
    directory: Directory,
    tcp_announce: Option<SocketAddr>,
}

/// A meeting's hold on its worker; the worker counts one meeting fewer when dropped.
pub struct SfuLease {
    handle: SfuHandle,
    meetings: Arc<AtomicUsize>,
}

impl std::ops::Deref for SfuLease {
    type Target = SfuHandle;
    fn deref(&self) -> &SfuHandle {
        &self.handle
    }
}

impl Drop for SfuLease {
    fn drop(&mut self) {
        self.meetings.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where the pool's workers take media.
#[derive(Debug, Clone, Copy)]
pub struct MediaAddrs {
    /// UDP: with a fixed port, worker i binds port + i (and announces the
    /// announced port + i); with port 0 each picks a free port.
    pub bind: SocketAddr,
    pub announce: Option<SocketAddr>,
    /// The ICE-TCP candidate offered to clients (the server accepts there and
    /// calls [`SfuPool::adopt_tcp`]); `None`: media over UDP only.
    pub tcp_announce: Option<SocketAddr>,
}

/// Start `workers` SFU threads (at least one). `sink` makes each worker's
/// event callback.
pub fn spawn_pool<S>(
    workers: usize,
    addrs: MediaAddrs,
    mut sink: impl FnMut() -> S,
) -> std::io::Result<(SfuPool, Vec<SfuThread>)>
where
    S: FnMut(SfuEvent) + Send + 'static,
{
    let MediaAddrs {
        bind,
        announce,
        tcp_announce,
    } = addrs;
    // Connection ids are unique across workers: the layer above routes events by them.
    let next_conn = Arc::new(AtomicU64::new(1));
    let directory = Directory::default();
    let mut threads: Vec<SfuThread> = Vec::new();
    for i in 0..workers.max(1) {
        let offset = |mut a: SocketAddr| -> std::io::Result<SocketAddr> {
            if a.port() != 0 {
                let port = u16::try_from(usize::from(a.port()) + i).map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "media port + workers exceeds 65535",
                    )
                })?;
                a.set_port(port);
            }
            Ok(a)
        };
        let worker = offset(bind).and_then(|bind| {
            let announce = announce.map(offset).transpose()?;
            let setup = WorkerSetup {
                index: i,
                tcp_announce,
                directory: directory.clone(),
                next_conn: next_conn.clone(),
            };
            spawn_worker(bind, announce, setup, sink())
        });
        match worker {
            Ok(t) => threads.push(t),
            Err(e) => {
                for t in threads {
                    t.shutdown();
                }
                return Err(e);
            }
        }
    }
    let pool = SfuPool {
        workers: threads
            .iter()
            .map(|t| Worker {
                handle: t.handle.clone(),
                meetings: Arc::new(AtomicUsize::new(0)),
            })
            .collect(),
        directory,
        tcp_announce,
    };
    Ok((pool, threads))
}

impl SfuPool {
    /// The worker for a meeting that is starting.
    pub fn lease(&self) -> SfuLease {
        let w = self
            .workers
            .iter()
            .min_by_key(|w| {
                (
                    w.meetings.load(Ordering::Relaxed),
                    w.handle.stats().connections,
                )
            })
            .expect("a pool has at least one worker");
        w.meetings.fetch_add(1, Ordering::Relaxed);
        SfuLease {
            handle: w.handle.clone(),
            meetings: w.meetings.clone(),
        }
    }

    /// The worker for a meeting that is starting, among those whose
    /// address is not in `avoid`, if any is left (cascading: an edge keeps
    /// the relays from one of the host's workers on different workers of
    /// its own, since two connections between the same two sockets cannot
    /// be told apart).
    pub fn lease_avoiding(&self, avoid: &[SocketAddr]) -> SfuLease {
        let w = self
            .workers
            .iter()
            .filter(|w| !avoid.contains(&w.handle.local_addr()))
            .min_by_key(|w| {
                (
                    w.meetings.load(Ordering::Relaxed),
                    w.handle.stats().connections,
                )
            });
        let Some(w) = w else {
            return self.lease();
        };
        w.meetings.fetch_add(1, Ordering::Relaxed);
        SfuLease {
            handle: w.handle.clone(),
            meetings: w.meetings.clone(),
        }
    }

    /// The ICE-TCP candidate, if media over TCP is on.
    pub fn tcp_announce(&self) -> Option<SocketAddr> {
        self.tcp_announce
    }

    /// Hand an accepted ICE-TCP connection, of which `first` was read (its
    /// whole first frame, maybe more), to the worker that holds the connection
    /// the frame names. `guard` lives as long as the TCP connection.
    pub fn adopt_tcp(
        &self,
        stream: std::net::TcpStream,
        first: Vec<u8>,
        guard: Box<dyn Send>,
    ) -> Result<(), AdoptError> {
        let ufrag = first_frame(&first)?.ok_or(AdoptError::Incomplete)?;
        let index = self
            .directory
            .worker_of(&ufrag)
            .ok_or(AdoptError::UnknownUfrag)?;
        let worker = self.workers.get(index).ok_or(AdoptError::UnknownUfrag)?;
        worker.handle.send(Command::AdoptTcp {
            stream,
            first,
            guard: Guard(guard),
        });
        Ok(())
    }

    pub fn handles(&self) -> impl Iterator<Item = &SfuHandle> {
        self.workers.iter().map(|w| &w.handle)
    }

    /// Counters summed over the workers.
    pub fn stats(&self) -> SfuStats {
        self.handles().fold(SfuStats::default(), |a, h| {
            let b = h.stats();
            SfuStats {
                datagrams_in: a.datagrams_in + b.datagrams_in,
                unroutable: a.unroutable + b.unroutable,
                rtp_in: a.rtp_in + b.rtp_in,
                rtp_forwarded: a.rtp_forwarded + b.rtp_forwarded,
                rtp_relayed: a.rtp_relayed + b.rtp_relayed,
                rtp_dropped_unpublished: a.rtp_dropped_unpublished + b.rtp_dropped_unpublished,
                rtp_dropped_paused: a.rtp_dropped_paused + b.rtp_dropped_paused,
                rtp_dropped_late: a.rtp_dropped_late + b.rtp_dropped_late,
                keyframe_requests: a.keyframe_requests + b.keyframe_requests,
                layer_switches: a.layer_switches + b.layer_switches,
                connections: a.connections + b.connections,
                tracks: a.tracks + b.tracks,
                tcp_connections: a.tcp_connections + b.tcp_connections,
                tcp_frames_dropped: a.tcp_frames_dropped + b.tcp_frames_dropped,
                bytes_in: a.bytes_in + b.bytes_in,
                bytes_out: a.bytes_out + b.bytes_out,
                busy_ns: a.busy_ns + b.busy_ns,
            }
        })
    }

    /// Every worker's thread still runs.
    pub fn all_running(&self) -> bool {
        self.handles().all(SfuHandle::is_running)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meetings_spread_over_workers_and_ports_follow_the_first() {
        let udp = |bind| MediaAddrs {
            bind,
            announce: None,
            tcp_announce: None,
        };
        let (pool, threads) =
            spawn_pool(3, udp("127.0.0.1:0".parse().unwrap()), || |_| {}).unwrap();
        let ports: std::collections::BTreeSet<u16> =
            pool.handles().map(|h| h.local_addr().port()).collect();
        assert_eq!(ports.len(), 3, "each worker has its own port");
        let a = pool.lease();
        let b = pool.lease();
        let c = pool.lease();
        let used: std::collections::BTreeSet<SocketAddr> =
            [&a, &b, &c].iter().map(|l| l.local_addr()).collect();
        assert_eq!(used.len(), 3, "three meetings, three workers");
        let b_addr = b.local_addr();
        drop(b);
        assert_eq!(
            pool.lease().local_addr(),
            b_addr,
            "the freed worker is next"
        );
        for t in threads {
            t.shutdown();
        }

        // A fixed port: worker i takes port + i.
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let base = probe.local_addr().unwrap().port();
        drop(probe);
        if base < 65000 {
            let bind = SocketAddr::from(([127, 0, 0, 1], base));
            if let Ok((pool, threads)) = spawn_pool(2, udp(bind), || |_| {}) {
                let ports: Vec<u16> = pool.handles().map(|h| h.local_addr().port()).collect();
                assert_eq!(ports, vec![base, base + 1]);
                for t in threads {
                    t.shutdown();
                }
            }
        }
    }
}

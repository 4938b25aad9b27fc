//! Which connection a datagram belongs to: a hash-map lookup by transport and
//! remote address, or, for STUN from an address not seen yet, by the ICE
//! username fragment.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use str0m::ice::StunMessage;

use crate::transport::Transport;
use crate::ConnId;

/// Addresses remembered per connection; ICE may try a few candidate pairs.
const MAX_ADDRS_PER_CONN: usize = 8;
/// Username fragments per connection: the current one and, during an ICE
/// restart, the one offered (either may be in use until the answer comes).
const MAX_UFRAGS_PER_CONN: usize = 2;

/// A remote address, as the same port number over UDP and TCP are different
/// peers (two clients behind one NAT can hold them).
pub type Peer = (Transport, SocketAddr);

#[derive(Debug, Default)]
pub struct RouteTable {
    by_addr: HashMap<Peer, ConnId>,
    by_ufrag: HashMap<String, ConnId>,
    addrs: HashMap<ConnId, Vec<Peer>>,
    ufrags: HashMap<ConnId, Vec<String>>,
    /// Username fragments added (true) and dropped (false) since the last
    /// [`RouteTable::poll_ufrag_change`]: the driver keeps the directory that
    /// sends a new ICE-TCP connection to the worker that knows its ufrag.
    changes: VecDeque<(String, bool)>,
    /// TCP peers of connections that were removed, for the driver to close.
    dropped_tcp: VecDeque<SocketAddr>,
}

pub enum Route {
    /// Known remote address.
    Known(ConnId),
    /// STUN naming a connection's ufrag: the connection must verify it before the
    /// address is learnt.
    Candidate(ConnId),
    Unknown,
}

impl RouteTable {
    pub fn add_conn(&mut self, conn: ConnId, local_ufrag: String) {
        self.addrs.insert(conn, Vec::new());
        self.ufrags.insert(conn, Vec::new());
        self.add_ufrag(conn, local_ufrag);
    }

    /// A further username fragment for `conn` (an ICE restart's); the oldest
    /// beyond [`MAX_UFRAGS_PER_CONN`] is forgotten.
    pub fn add_ufrag(&mut self, conn: ConnId, ufrag: String) {
        let Some(list) = self.ufrags.get_mut(&conn) else {
            return;
        };
        if list.len() >= MAX_UFRAGS_PER_CONN {
            let old = list.remove(0);
            self.by_ufrag.remove(&old);
            self.changes.push_back((old, false));
        }
        list.push(ufrag.clone());
        self.by_ufrag.insert(ufrag.clone(), conn);
        self.changes.push_back((ufrag, true));
    }

    /// Forget one of `conn`'s username fragments (an ICE restart that failed).
    pub fn remove_ufrag(&mut self, conn: ConnId, ufrag: &str) {
        if let Some(list) = self.ufrags.get_mut(&conn) {
            list.retain(|u| u != ufrag);
        }
        if self.by_ufrag.get(ufrag) == Some(&conn) {
            self.by_ufrag.remove(ufrag);
            self.changes.push_back((ufrag.to_owned(), false));
        }
    }

    pub fn remove_conn(&mut self, conn: ConnId) {
        for ufrag in self.ufrags.remove(&conn).unwrap_or_default() {
            self.by_ufrag.remove(&ufrag);
            self.changes.push_back((ufrag, false));
        }
        for addr in self.addrs.remove(&conn).unwrap_or_default() {
            if self.by_addr.get(&addr) == Some(&conn) {
                self.by_addr.remove(&addr);
            }
            if addr.0 == Transport::Tcp {
                self.dropped_tcp.push_back(addr.1);
            }
        }
    }

    /// `peer` no longer belongs to anyone (its TCP connection closed).
    pub fn forget(&mut self, peer: Peer) {
        if let Some(conn) = self.by_addr.remove(&peer) {
            if let Some(list) = self.addrs.get_mut(&conn) {
                list.retain(|a| *a != peer);
            }
        }
    }

    pub fn poll_dropped_tcp_peer(&mut self) -> Option<SocketAddr> {
        self.dropped_tcp.pop_front()
    }

    /// The next username fragment added (`true`) or dropped (`false`).
    pub fn poll_ufrag_change(&mut self) -> Option<(String, bool)> {
        self.changes.pop_front()
    }

    pub fn lookup(&self, source: Peer, datagram: &[u8]) -> Route {
        if let Some(&c) = self.by_addr.get(&source) {
            return Route::Known(c);
        }
        // RFC 7983: first byte 0..=3 is STUN.
        if datagram.first().is_some_and(|b| *b < 4) {
            if let Ok(msg) = StunMessage::parse(datagram) {
                if let Some((local, _remote)) = msg.split_username() {
                    if let Some(&c) = self.by_ufrag.get(local) {
                        return Route::Candidate(c);
                    }
                }
            }
        }
        Route::Unknown
    }

    /// Remember that `source` belongs to `conn` (after the connection accepted it).
    /// [`RouteTable::learn`], unless another connection has `peer`: a
    /// relay learns the addresses it checks (named by the other SFU's
    /// offer), which must never take a browser's.
    /// False if another connection has it.
    pub fn learn_if_free(&mut self, conn: ConnId, peer: Peer) -> bool {
        let free = self.by_addr.get(&peer).is_none_or(|&c| c == conn);
        if free {
            self.learn(conn, peer);
        }
        free
    }

    pub fn learn(&mut self, conn: ConnId, source: Peer) {
        let Some(list) = self.addrs.get_mut(&conn) else {
            return;
        };
        if list.contains(&source) {
            return;
        }
        if list.len() >= MAX_ADDRS_PER_CONN {
            let old = list.remove(0);
            if self.by_addr.get(&old) == Some(&conn) {
                self.by_addr.remove(&old);
            }
        }
        list.push(source);
        // An address can move to a new connection (a client that reconnected).
        if let Some(prev) = self.by_addr.insert(source, conn) {
            if prev != conn {
                if let Some(l) = self.addrs.get_mut(&prev) {
                    l.retain(|a| *a != source);
                }
            }
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_addr.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UDP: Transport = Transport::Udp;

    #[test]
    fn unknown_non_stun_is_dropped_and_learnt_addresses_route() {
        let mut t = RouteTable::default();
        let a = (UDP, "127.0.0.1:5000".parse().unwrap());
        t.add_conn(ConnId(1), "abcd".into());
        assert!(matches!(t.lookup(a, &[0x80, 0, 0, 0]), Route::Unknown));
        t.learn(ConnId(1), a);
        assert!(matches!(t.lookup(a, &[0x80]), Route::Known(ConnId(1))));
        t.remove_conn(ConnId(1));
        assert!(matches!(t.lookup(a, &[0x80]), Route::Unknown));
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn addresses_per_connection_are_bounded() {
        let mut t = RouteTable::default();
        t.add_conn(ConnId(1), "u".into());
        for p in 0..100u16 {
            t.learn(
                ConnId(1),
                (UDP, SocketAddr::from(([127, 0, 0, 1], 1000 + p))),
            );
        }
        assert_eq!(t.len(), MAX_ADDRS_PER_CONN);
    }

    #[test]
    fn an_address_learnt_if_free_is_never_taken_from_another_connection() {
        let mut t = RouteTable::default();
        let a = (UDP, "127.0.0.1:5000".parse().unwrap());
        t.add_conn(ConnId(1), "browser".into());
        t.add_conn(ConnId(2), "relay".into());
        t.learn(ConnId(1), a);
        assert!(!t.learn_if_free(ConnId(2), a), "taken");
        assert!(matches!(t.lookup(a, &[0x80]), Route::Known(ConnId(1))));
        let b = (UDP, "127.0.0.1:5001".parse().unwrap());
        assert!(t.learn_if_free(ConnId(2), b));
        assert!(matches!(t.lookup(b, &[0x80]), Route::Known(ConnId(2))));
    }

    #[test]
    fn garbage_that_looks_like_stun_is_unknown() {
        let t = RouteTable::default();
        let a = (UDP, "127.0.0.1:5000".parse().unwrap());
        assert!(matches!(t.lookup(a, &[0, 1, 0, 0, 1, 2]), Route::Unknown));
        assert!(matches!(t.lookup(a, &[]), Route::Unknown));
    }

    #[test]
    fn the_same_port_over_tcp_is_another_peer() {
        let mut t = RouteTable::default();
        let addr: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        t.add_conn(ConnId(1), "a".into());
        t.add_conn(ConnId(2), "b".into());
        t.learn(ConnId(1), (UDP, addr));
        t.learn(ConnId(2), (Transport::Tcp, addr));
        assert!(matches!(
            t.lookup((UDP, addr), &[0x80]),
            Route::Known(ConnId(1))
        ));
        assert!(matches!(
            t.lookup((Transport::Tcp, addr), &[0x80]),
            Route::Known(ConnId(2))
        ));
    }

    #[test]
    fn an_ice_restart_keeps_two_ufrags_and_reports_each_change() {
        let mut t = RouteTable::default();
        t.add_conn(ConnId(1), "u1".into());
        t.add_ufrag(ConnId(1), "u2".into());
        t.add_ufrag(ConnId(1), "u3".into());
        t.remove_conn(ConnId(1));
        let changes: Vec<_> = std::iter::from_fn(|| t.poll_ufrag_change()).collect();
        let s = |u: &str, added| (u.to_string(), added);
        assert_eq!(
            changes,
            vec![
                s("u1", true),
                s("u2", true),
                s("u1", false),
                s("u3", true),
                s("u2", false),
                s("u3", false)
            ]
        );
        assert!(t.by_ufrag.is_empty() && t.ufrags.is_empty());
    }
}

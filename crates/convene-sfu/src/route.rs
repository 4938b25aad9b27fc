//! Which connection a datagram belongs to: a hash-map lookup by remote address,
//! or, for STUN from an address not seen yet, by the ICE username fragment.

use std::collections::HashMap;
use std::net::SocketAddr;

use str0m::ice::StunMessage;

use crate::ConnId;

/// Addresses remembered per connection; ICE may try a few candidate pairs.
const MAX_ADDRS_PER_CONN: usize = 8;

#[derive(Debug, Default)]
pub struct RouteTable {
    by_addr: HashMap<SocketAddr, ConnId>,
    by_ufrag: HashMap<String, ConnId>,
    addrs: HashMap<ConnId, Vec<SocketAddr>>,
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
        self.by_ufrag.insert(local_ufrag, conn);
        self.addrs.insert(conn, Vec::new());
    }

    pub fn remove_conn(&mut self, conn: ConnId) {
        self.by_ufrag.retain(|_, c| *c != conn);
        for addr in self.addrs.remove(&conn).unwrap_or_default() {
            if self.by_addr.get(&addr) == Some(&conn) {
                self.by_addr.remove(&addr);
            }
        }
    }

    pub fn lookup(&self, source: SocketAddr, datagram: &[u8]) -> Route {
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
    pub fn learn(&mut self, conn: ConnId, source: SocketAddr) {
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

    #[test]
    fn unknown_non_stun_is_dropped_and_learnt_addresses_route() {
        let mut t = RouteTable::default();
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
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
            t.learn(ConnId(1), SocketAddr::from(([127, 0, 0, 1], 1000 + p)));
        }
        assert_eq!(t.len(), MAX_ADDRS_PER_CONN);
    }

    #[test]
    fn garbage_that_looks_like_stun_is_unknown() {
        let t = RouteTable::default();
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert!(matches!(t.lookup(a, &[0, 1, 0, 0, 1, 2]), Route::Unknown));
        assert!(matches!(t.lookup(a, &[]), Route::Unknown));
    }
}

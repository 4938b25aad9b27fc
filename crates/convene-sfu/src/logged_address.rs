//! How log lines name a client's address. By default not at all: a
//! pseudonym that is stable within one process (so the lines about one
//! client can still be followed) and means nothing outside it. A deployment
//! that wants addresses in its log says so (`--log-client-addresses`).
//! str0m's own lines never hold them: it is built with its `pii` feature,
//! which redacts addresses there.

use std::fmt;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

static SHOW: AtomicBool = AtomicBool::new(false);

/// Whether log lines show client addresses from now on (set once at start).
pub fn show_addresses(show: bool) {
    SHOW.store(show, Ordering::Relaxed);
}

/// A client's address as a log line may show it.
pub fn logged(addr: impl Into<Loggable>) -> Loggable {
    addr.into()
}

pub enum Loggable {
    Ip(IpAddr),
    Socket(SocketAddr),
}

impl From<IpAddr> for Loggable {
    fn from(ip: IpAddr) -> Self {
        Loggable::Ip(ip)
    }
}

impl From<SocketAddr> for Loggable {
    fn from(addr: SocketAddr) -> Self {
        Loggable::Socket(addr)
    }
}

/// SipHash under a key drawn at start: the same address gives the same
/// pseudonym until the process ends, and no table maps one to the other.
fn pseudonym(ip: IpAddr) -> String {
    static KEY: OnceLock<std::hash::RandomState> = OnceLock::new();
    let h = KEY
        .get_or_init(std::hash::RandomState::new)
        .hash_one(ip.to_canonical());
    format!("client-{:08x}", h as u32)
}

impl fmt::Display for Loggable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = SHOW.load(Ordering::Relaxed);
        match self {
            Loggable::Ip(ip) if show => write!(f, "{ip}"),
            Loggable::Socket(a) if show => write!(f, "{a}"),
            Loggable::Ip(ip) => f.write_str(&pseudonym(*ip)),
            Loggable::Socket(a) => f.write_str(&pseudonym(a.ip())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_pseudonyms_unless_asked_for() {
        let a: SocketAddr = "203.0.113.7:50000".parse().unwrap();
        let b: IpAddr = "203.0.113.7".parse().unwrap();
        let hidden = logged(a).to_string();
        assert!(
            hidden.starts_with("client-") && !hidden.contains("203.0"),
            "{hidden}"
        );
        assert_eq!(hidden, logged(b).to_string(), "one client, one name");
        assert_ne!(
            hidden,
            logged("203.0.113.8".parse::<IpAddr>().unwrap()).to_string()
        );
        show_addresses(true);
        assert_eq!(logged(a).to_string(), "203.0.113.7:50000");
        show_addresses(false);
    }
}

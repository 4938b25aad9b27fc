//! The key per-address limits count by (the lobby's cap per address, sign-in
//! attempts, session reads, connections): one client's share, whichever of
//! its addresses it uses.

use std::net::{IpAddr, Ipv6Addr};

/// An IPv4 address (also when written IPv4-mapped), or the /64 network of
/// an IPv6 one (a single IPv6 client normally has a whole /64 to choose
/// addresses from).
pub fn address_group(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_clients_are_grouped_by_their_64_network() {
        assert_eq!(
            address_group(ip("2001:db8:1:2:aaaa::1")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            address_group(ip("2001:db8:1:2:bbbb::9")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(address_group(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(address_group(ip("192.0.2.1")), ip("192.0.2.1"));
    }
}

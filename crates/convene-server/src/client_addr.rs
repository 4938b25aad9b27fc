//! The real client's address. Behind a reverse proxy every connection comes
//! from the proxy, so limits keyed on the peer address would lock out everyone
//! at once; the proxy names the client in `Forwarded` (RFC 7239) or
//! `X-Forwarded-For`. Those headers are believed only from configured proxies,
//! and only as far back as the chain of trusted proxies goes: anyone can write
//! a made-up address at the start of the header.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use ipnet::IpNet;

pub use crate::config::ForwardedHeader;

/// The address every limit, lockout and audit row uses for this request.
pub fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
    header: ForwardedHeader,
) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    // Each proxy appends the address it received from; walk back from the
    // nearest hop and stop at the first address that is not one of ours.
    let hops = forwarded_for(headers, header);
    let mut client = peer;
    for hop in hops.iter().rev() {
        client = *hop;
        if !is_trusted(hop) {
            break;
        }
    }
    client
}

pub use convene_meeting::address::address_group;

/// The hops named by the chosen header, in order. A hop that is not an address
/// (`unknown`, an obfuscated name, bytes that are not text) ends the list
/// there: nothing before it can be attributed.
fn forwarded_for(headers: &HeaderMap, header: ForwardedHeader) -> Vec<IpAddr> {
    let name = match header {
        ForwardedHeader::XForwardedFor => "x-forwarded-for",
        ForwardedHeader::Forwarded => "forwarded",
    };
    let elements = headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|e| std::str::from_utf8(e).ok());
    let hops: Vec<Option<IpAddr>> = match header {
        ForwardedHeader::XForwardedFor => elements.map(|e| parse_node(e?.trim())).collect(),
        ForwardedHeader::Forwarded => elements
            .map(|element| {
                element?.split(';').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| parse_node(v.trim().trim_matches('"')))
                })?
            })
            .collect(),
    };
    // Keep the trailing run of parseable hops.
    let start = hops.iter().rposition(Option::is_none).map_or(0, |i| i + 1);
    hops[start..]
        .iter()
        .flatten()
        .map(|ip| ip.to_canonical())
        .collect()
}

/// `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]`, `[2001:db8::1]:4711`, `2001:db8::1`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[')
        .and_then(|r| r.split_once(']'))
        .and_then(|(ip, _)| ip.parse().ok())
}

/// Extractor: the real client address of a request (see [`client_ip`]).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<std::sync::Arc<crate::AppState>> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &std::sync::Arc<crate::AppState>,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
        Ok(ClientIp(client_ip(
            peer,
            &parts.headers,
            &state.trusted_proxies,
            state.forwarded_header,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    use ForwardedHeader::{Forwarded, XForwardedFor};

    #[test]
    fn headers_from_strangers_are_ignored() {
        let trusted: Vec<IpNet> = vec!["10.0.0.5/32".parse().unwrap()];
        let h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(
            client_ip(ip("198.51.100.7"), &h, &trusted, XForwardedFor),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(ip("198.51.100.7"), &h, &[], XForwardedFor),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client() {
        let trusted: Vec<IpNet> = vec![
            "10.0.0.5/32".parse().unwrap(),
            "10.1.0.0/16".parse().unwrap(),
        ];
        // The client wrote a fake first hop; our two proxies appended after it.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.1.2.3")]);
        assert_eq!(
            client_ip(ip("10.0.0.5"), &h, &trusted, XForwardedFor),
            ip("203.0.113.9")
        );
        // Split over several header lines, same order.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "203.0.113.9"),
        ]);
        assert_eq!(
            client_ip(ip("10.0.0.5"), &h, &trusted, XForwardedFor),
            ip("203.0.113.9")
        );
        // No header: the proxy itself.
        assert_eq!(
            client_ip(ip("10.0.0.5"), &HeaderMap::new(), &trusted, XForwardedFor),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn forwarded_is_read_with_ports_and_ipv6() {
        let trusted: Vec<IpNet> = vec!["10.0.0.5/32".parse().unwrap()];
        let h = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::1]:4711\";proto=https;by=10.0.0.5",
        )]);
        assert_eq!(
            client_ip(ip("10.0.0.5"), &h, &trusted, Forwarded),
            ip("2001:db8::1")
        );
        let h = headers(&[
            ("forwarded", "for=192.0.2.60:80"),
            ("x-forwarded-for", "6.6.6.6"),
        ]);
        assert_eq!(
            client_ip(ip("10.0.0.5"), &h, &trusted, Forwarded),
            ip("192.0.2.60")
        );
        // Only the configured header is read: the other one is the client's.
        assert_eq!(
            client_ip(ip("10.0.0.5"), &h, &trusted, XForwardedFor),
            ip("6.6.6.6")
        );
    }

    #[test]
    fn an_unknown_hop_stops_the_walk() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let h = headers(&[("x-forwarded-for", "203.0.113.9, unknown, 10.1.1.1")]);
        // Nothing past "unknown" can be attributed: the last trusted hop stands.
        assert_eq!(
            client_ip(ip("10.0.0.5"), &h, &trusted, XForwardedFor),
            ip("10.1.1.1")
        );
        // Bytes that are not text are a hop that is not an address, only there.
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"6.6.6.6, \xff, 203.0.113.9").unwrap(),
        );
        assert_eq!(
            client_ip(ip("10.0.0.5"), &h, &trusted, XForwardedFor),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn ipv4_arriving_on_a_dual_stack_socket_is_ipv4() {
        let trusted: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        let h = headers(&[("x-forwarded-for", "::ffff:203.0.113.9")]);
        assert_eq!(
            client_ip(ip("::ffff:127.0.0.1"), &h, &trusted, XForwardedFor),
            ip("203.0.113.9")
        );
    }
}

//! Which requests may act for a browser: cross-site WebSocket opens and POSTs
//! are refused, so no other page can use a visitor's browser against Convene.

use std::net::IpAddr;

use axum::http::{header, HeaderMap};

/// Browsers send Origin on WebSocket requests and POSTs; one from another site
/// is refused, so no other page can act with a visitor's browser. Allowed: the
/// public URL's origin, and this machine by a loopback name (a trial reached as
/// localhost or 127.0.0.1, over plain http or, when Convene serves TLS itself,
/// https). Comparing with `Host` alone would let a DNS-rebinding page pass.
pub fn same_origin(headers: &HeaderMap, public_url: &str) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true; // not a browser (the headless client, load tests)
    };
    if web_origin(origin).is_some() && web_origin(origin) == web_origin(public_url) {
        return true;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    is_loopback_host(host)
        && origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            == Some(host)
}

/// The origin of a URL as browsers write it (RFC 6454): scheme and host in
/// lower case, the port only when it is not the scheme's default, no path.
/// So `https://Meet.example.org:443/convene/` and `https://meet.example.org`
/// are one origin.
fn web_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    let authority = authority.strip_suffix(default).unwrap_or(&authority);
    if authority.is_empty() {
        return None;
    }
    Some(format!("{scheme}://{authority}"))
}

/// Whether a `Host` header names this machine by a loopback name: `localhost`
/// or a loopback address, parsed as an address (a name that merely begins
/// with "127." is somebody's domain).
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((ip, port)) if port.is_empty() || port.starts_with(':') => ip,
            _ => return false,
        },
        None => host.split_once(':').map_or(host, |(n, _)| n),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::same_origin;

    #[test]
    fn origins_are_compared_as_browsers_write_them() {
        use super::web_origin;
        let o = |s| web_origin(s);
        assert_eq!(
            o("https://Meet.Example.org:443/convene/"),
            o("https://meet.example.org")
        );
        assert_eq!(o("http://10.0.0.1:80"), o("http://10.0.0.1"));
        assert_ne!(
            o("https://meet.example.org:8443"),
            o("https://meet.example.org")
        );
        assert_ne!(o("http://meet.example.org"), o("https://meet.example.org"));
        assert_eq!(o("https://[::1]:443"), Some("https://[::1]".into()));
        assert_eq!(o("null"), None);
        assert_eq!(o("https://"), None);
    }
    use axum::http::{header, HeaderMap, HeaderValue};

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn only_the_public_origin_or_a_loopback_trial_passes() {
        let public = "https://meet.example.gov.uk";
        assert!(same_origin(
            &headers(Some(public), "meet.example.gov.uk"),
            public
        ));
        assert!(
            same_origin(&headers(None, "anything"), public),
            "not a browser"
        );
        // DNS rebinding: the attacker's name resolves here, Host matches Origin.
        assert!(!same_origin(
            &headers(Some("http://evil.example:8080"), "evil.example:8080"),
            public
        ));
        assert!(
            !same_origin(
                &headers(Some("http://meet.example.gov.uk"), "meet.example.gov.uk"),
                public
            ),
            "scheme counts"
        );
        let trial = "http://127.0.0.1:8080";
        assert!(same_origin(
            &headers(Some("http://localhost:8080"), "localhost:8080"),
            trial
        ));
        assert!(same_origin(&headers(Some(trial), "127.0.0.1:8080"), trial));
        assert!(!same_origin(
            &headers(Some("http://127.0.0.1:9999"), "127.0.0.1:8080"),
            trial
        ));
        assert!(same_origin(
            &headers(Some("http://[::1]:8080"), "[::1]:8080"),
            trial
        ));
        // Convene serving TLS itself, reached by another loopback name than
        // the public URL's.
        let tls = "https://127.0.0.1:8443";
        assert!(same_origin(
            &headers(Some("https://localhost:8443"), "localhost:8443"),
            tls
        ));
        assert!(same_origin(&headers(Some(tls), "127.0.0.1:8443"), tls));
        assert!(!same_origin(
            &headers(Some("https://localhost:9999"), "localhost:8443"),
            tls
        ));
        assert!(!same_origin(
            &headers(Some("https://evil.example:8443"), "evil.example:8443"),
            tls
        ));
        // A DNS name that looks like a loopback address is somebody's domain.
        for host in [
            "127.attacker.example",
            "127.0.0.1.attacker.example:8080",
            "[::1]x:80",
        ] {
            assert!(
                !same_origin(&headers(Some(&format!("http://{host}")), host), trial),
                "{host}"
            );
        }
    }
}

//! The deployment file's `[turn]` section: the TURN servers browsers may relay
//! media through when they cannot reach the media port directly, and the file
//! holding the secret Convene shares with them (coturn's `static-auth-secret`).
//! Convene never stores or hands out a TURN password: it makes short-lived
//! credentials from the secret per participant (convene-server `turn.rs`).
//! docs/configuration.md describes the section, with a coturn configuration
//! to match.
//!
//! A bad URL or lifetime is refused naming its line, as TOML syntax errors are.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// How long credentials last unless `ttl_seconds` says otherwise: an hour.
/// coturn checks a credential only when an allocation is made (a relayed call
/// goes on past its expiry), so the lifetime bounds how long a leaked
/// credential can open new relays, not how long a call may last. Participants
/// get fresh ones at 80 % of it, which leaves 12 minutes for clock skew
/// between Convene and the TURN server and for a slow ICE restart.
pub const DEFAULT_TTL_SECONDS: u32 = 3600;
/// Below a minute, clock skew between Convene and the TURN server alone can
/// make fresh credentials arrive expired.
pub const MIN_TTL_SECONDS: u32 = 60;
/// A day: credentials that outlive a working day are long-lived in all but name.
pub const MAX_TTL_SECONDS: u32 = 86_400;

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TurnConfig {
    /// As written, with where: a bad one is named with its line.
    #[serde(rename = "urls")]
    written_urls: Vec<toml::Spanned<String>>,
    /// The TURN servers, as browsers are to reach them (all share the secret);
    /// filled from `urls` by [`TurnConfig::check`].
    #[serde(skip)]
    pub urls: Vec<TurnUrl>,
    /// A file holding the secret shared with the TURN server (coturn's
    /// `static-auth-secret`). Relative to the deployment file's folder.
    pub secret_file: PathBuf,
    /// Lifetime of the credentials handed to each participant.
    #[serde(default)]
    pub ttl_seconds: Ttl,
    /// A secret written into the deployment file itself is refused: read here
    /// only so that the refusal does not quote it (an unknown field's error
    /// shows its line).
    #[serde(default)]
    secret: Option<Misplaced>,
    #[serde(default)]
    static_auth_secret: Option<Misplaced>,
}

/// A value read and thrown away unseen.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Misplaced;

impl<'de> Deserialize<'de> for Misplaced {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| Misplaced)
    }
}

impl TurnConfig {
    /// Checks the section read from `text` and reads its URLs.
    pub(crate) fn check(&mut self, text: &str) -> Result<(), String> {
        self.urls = Vec::with_capacity(self.written_urls.len());
        for u in &self.written_urls {
            let line = text[..u.span().start.min(text.len())].matches('\n').count() + 1;
            let url = TurnUrl::try_from(u.get_ref().clone())
                .map_err(|e| format!("turn.urls, line {line}: {e}"))?;
            self.urls.push(url);
        }
        if self.secret.is_some() || self.static_auth_secret.is_some() {
            return Err(
                "turn: the secret does not belong in the deployment file: put it in a file only \
                 Convene can read and name that file in secret_file (the TURN server has the \
                 same secret as its static-auth-secret)"
                    .into(),
            );
        }
        if self.urls.is_empty() {
            return Err(
                "turn.urls: list the TURN servers' URLs, e.g. [\"turn:turn.example.org:3478?transport=udp\"]"
                    .into(),
            );
        }
        for (i, u) in self.urls.iter().enumerate() {
            if self.urls[..i].contains(u) {
                return Err(format!("turn.urls: {u} is listed twice"));
            }
        }
        if self.secret_file.as_os_str().is_empty() {
            return Err(
                "turn.secret_file: name the file that holds the secret shared with the TURN server"
                    .into(),
            );
        }
        Ok(())
    }
}

/// A credential lifetime in seconds, from [`MIN_TTL_SECONDS`] to [`MAX_TTL_SECONDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "i64")]
pub struct Ttl(u32);

impl Ttl {
    pub fn seconds(self) -> u32 {
        self.0
    }
}

impl Default for Ttl {
    fn default() -> Self {
        Ttl(DEFAULT_TTL_SECONDS)
    }
}

impl TryFrom<i64> for Ttl {
    type Error = String;

    fn try_from(s: i64) -> Result<Self, String> {
        match u32::try_from(s) {
            Ok(s) if (MIN_TTL_SECONDS..=MAX_TTL_SECONDS).contains(&s) => Ok(Ttl(s)),
            _ => Err(format!(
                "ttl_seconds must be from {MIN_TTL_SECONDS} to {MAX_TTL_SECONDS}, not {s}"
            )),
        }
    }
}

/// How a browser reaches a TURN server (RFC 7065's `transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// A TURN server URL as RFC 7065 writes it and browsers take it:
/// `turn:<host>[:<port>][?transport=udp|tcp]`, or `turns:` for TURN over TLS
/// (TCP only: browsers do not speak TURN over DTLS). The host is a DNS name or
/// an IP address (IPv6 in brackets); the port defaults to 3478 (`turn:`) or
/// 5349 (`turns:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnUrl {
    text: String,
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub transport: Option<Transport>,
}

impl TurnUrl {
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for TurnUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl TryFrom<String> for TurnUrl {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        parse(&text).map_err(|why| format!("\"{text}\" is not a TURN URL: {why}"))
    }
}

impl std::str::FromStr for TurnUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        TurnUrl::try_from(s.to_string())
    }
}

fn parse(text: &str) -> Result<TurnUrl, String> {
    let (tls, rest) = if let Some(r) = text.strip_prefix("turns:") {
        (true, r)
    } else if let Some(r) = text.strip_prefix("turn:") {
        (false, r)
    } else {
        return Err("it must start with turn: or turns:".into());
    };
    if rest.starts_with("//") {
        return Err("write turn:host:port, without // (RFC 7065)".into());
    }
    let (hostport, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    let transport = match query {
        None => None,
        Some("transport=udp") => Some(Transport::Udp),
        Some("transport=tcp") => Some(Transport::Tcp),
        Some(_) => return Err("the only query is ?transport=udp or ?transport=tcp".into()),
    };
    if tls && transport == Some(Transport::Udp) {
        return Err(
            "turns: is TURN over TLS, which runs on TCP: use ?transport=tcp (browsers do not speak TURN over DTLS)"
                .into(),
        );
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or("an IPv6 address needs its closing ]")?;
        addr.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("[{addr}] is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or("a port follows the host after :")?,
            ),
        };
        (format!("[{addr}]"), port)
    } else {
        let (host, port) = match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        };
        if !is_host(host) {
            return Err(format!(
                "\"{host}\" is not a host name or IPv4 address (an IPv6 address goes in [ ])"
            ));
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port {
        None if tls => 5349,
        None => 3478,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                return Err(format!(
                    "the port must be a number from 1 to 65535, not \"{p}\""
                ))
            }
        },
    };
    Ok(TurnUrl {
        text: text.to_string(),
        tls,
        host,
        port,
        transport,
    })
}

/// A DNS name (letters, digits, dashes in dot-separated labels) or an IPv4 address.
fn is_host(host: &str) -> bool {
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    // Not an IPv4 address, so all-digit dotted names (a mistyped address) are not hosts either.
    let labels: Vec<&str> = host.strip_suffix('.').unwrap_or(host).split('.').collect();
    host.len() <= 253
        && !labels
            .last()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_browsers_take() {
        let u: TurnUrl = "turn:turn.example.org:3478?transport=udp".parse().unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.transport),
            (false, "turn.example.org", 3478, Some(Transport::Udp))
        );
        assert_eq!(u.as_str(), "turn:turn.example.org:3478?transport=udp");
        let u: TurnUrl = "turns:turn.example.org:443?transport=tcp".parse().unwrap();
        assert_eq!(
            (u.tls, u.port, u.transport),
            (true, 443, Some(Transport::Tcp))
        );
        let u: TurnUrl = "turns:turn.example.org".parse().unwrap();
        assert_eq!((u.port, u.transport), (5349, None));
        let u: TurnUrl = "turn:127.0.0.1".parse().unwrap();
        assert_eq!((u.host.as_str(), u.port), ("127.0.0.1", 3478));
        let u: TurnUrl = "turn:[2001:db8::1]:3478?transport=tcp".parse().unwrap();
        assert_eq!((u.host.as_str(), u.port), ("[2001:db8::1]", 3478));
    }

    #[test]
    fn bad_urls_say_why() {
        for (bad, why) in [
            ("stun:turn.example.org", "must start with turn: or turns:"),
            ("https://turn.example.org", "must start with turn:"),
            ("turn://turn.example.org:3478", "without //"),
            ("turn:turn.example.org:0", "from 1 to 65535"),
            ("turn:turn.example.org:65536", "from 1 to 65535"),
            ("turn:turn.example.org:+80", "from 1 to 65535"),
            ("turn:turn.example.org:", "from 1 to 65535"),
            ("turn:turn.example.org?transport=sctp", "?transport=udp or"),
            (
                "turn:turn.example.org?transport=udp&x=1",
                "?transport=udp or",
            ),
            ("turns:turn.example.org:443?transport=udp", "runs on TCP"),
            ("turn:", "not a host name"),
            ("turn:user@turn.example.org", "not a host name"),
            ("turn:turn.example.org/path", "not a host name"),
            ("turn:-bad-.example.org", "not a host name"),
            ("turn:10.0.0.300", "not a host name"),
            ("turn:2001:db8::1", "not a host name"),
            ("turn:[2001:db8::1", "closing ]"),
            ("turn:[not-v6]:3478", "not an IPv6 address"),
            ("turn:[2001:db8::1]3478", "a port follows"),
        ] {
            let e = bad.parse::<TurnUrl>().unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.contains(bad), "the error quotes the URL: {e}");
        }
    }

    #[test]
    fn lifetimes_are_bounded() {
        assert_eq!(Ttl::default().seconds(), 3600);
        assert_eq!(Ttl::try_from(60).unwrap().seconds(), 60);
        assert_eq!(Ttl::try_from(86_400).unwrap().seconds(), 86_400);
        for bad in [-1, 0, 59, 86_401, i64::MAX] {
            assert!(Ttl::try_from(bad).is_err(), "{bad}");
        }
    }
}

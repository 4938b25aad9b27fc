//! The addresses this node may send people to (`--node-urls`). Which node
//! hosts a meeting, and at what URL, comes from Redis: whoever could write
//! there could otherwise send every join to a site of their choosing. A
//! node's URL outside the list is refused (the join gets "try again") and
//! logged.

/// One allowed origin: a scheme, a host (or every host under a domain), and
/// a port (or any).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    scheme: String,
    host: Host,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Exact(String),
    /// Any name that ends in `.` and this.
    Under(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeUrls {
    patterns: Vec<Pattern>,
    /// How many of the patterns, from the first, may receive a sign-in
    /// code: all that were listed; of the default, only this node's own
    /// host. A default's domain may be a public suffix (`*.fly.dev`) whose
    /// other names belong to anyone.
    carry_signin: usize,
}

/// A URL's scheme, host (lower case) and port, if it has that shape.
fn origin(url: &str) -> Option<(String, String, Option<u16>)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.contains('@') || authority.is_empty() {
        return None;
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (inside, after) = v6.split_once(']')?;
        (format!("[{inside}]"), after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    // A plain name (letters, digits, dots, hyphens; `*` for a pattern) or a
    // bracketed IPv6 address: anything else (a `\`, which browsers read as
    // `/`, a `%`) could make a URL that passes here point somewhere else.
    let plain = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.'),
        None => host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '*'),
    };
    if !plain || host.is_empty() {
        return None;
    }
    Some((scheme, host.to_ascii_lowercase(), port))
}

/// `url`'s origin rebuilt from its parts (`scheme://host[:port]`), if it has
/// one: what a redirect goes to, never the text as it came.
pub fn canonical_origin(url: &str) -> Option<String> {
    let (scheme, host, port) = origin(url)?;
    Some(match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    })
}

impl NodeUrls {
    /// `https://meet-1.example.org, https://*.nodes.example.org:8443`: a
    /// comma-separated list of origins; `*.` before a domain allows every
    /// name under it; without a port, any port.
    pub fn parse(list: &str) -> Result<NodeUrls, String> {
        let mut patterns = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (scheme, host, port) = origin(item).ok_or_else(|| {
                format!("{item:?} is not an http(s) origin like https://meet-1.example.org")
            })?;
            let host = match host.strip_prefix("*.") {
                Some(domain) if !domain.is_empty() && !domain.contains('*') => {
                    Host::Under(domain.to_string())
                }
                _ if host.contains('*') => {
                    return Err(format!(
                        "{item:?}: a * only as the first label (https://*.example.org)"
                    ))
                }
                _ => Host::Exact(host),
            };
            patterns.push(Pattern { scheme, host, port });
        }
        if patterns.is_empty() {
            return Err("no node URLs given".into());
        }
        Ok(NodeUrls {
            carry_signin: patterns.len(),
            patterns,
        })
    }

    /// When none are given: this node's scheme, and the domain its host is
    /// in (`https://n1.meet.example.org` allows `https://*.meet.example.org`
    /// and `https://meet.example.org`), or its own host alone (an IP address
    /// or a one-label name), on any port.
    pub fn around(public_url: &str) -> NodeUrls {
        let Some((scheme, host, _)) = origin(public_url) else {
            return NodeUrls {
                patterns: Vec::new(),
                carry_signin: 0,
            };
        };
        let is_ip = host.starts_with('[') || host.parse::<std::net::Ipv4Addr>().is_ok();
        let mut patterns = vec![Pattern {
            scheme: scheme.clone(),
            host: Host::Exact(host.clone()),
            port: None,
        }];
        if let (false, Some((_, domain))) = (is_ip, host.split_once('.')) {
            if domain.contains('.') {
                patterns.push(Pattern {
                    scheme: scheme.clone(),
                    host: Host::Exact(domain.to_string()),
                    port: None,
                });
                patterns.push(Pattern {
                    scheme,
                    host: Host::Under(domain.to_string()),
                    port: None,
                });
            }
        }
        NodeUrls {
            patterns,
            carry_signin: 1,
        }
    }

    /// The origins that may receive a sign-in code (or a page's resume
    /// token), as Content-Security-Policy sources: what a meeting page may
    /// reach to find another node when its own is lost.
    pub fn csp_sources(&self) -> String {
        self.patterns[..self.carry_signin]
            .iter()
            .map(|p| {
                let host = match &p.host {
                    Host::Exact(h) => h.clone(),
                    Host::Under(d) => format!("*.{d}"),
                };
                let port = p.port.map_or(":*".to_string(), |p| format!(":{p}"));
                format!("{}://{host}{port}", p.scheme)
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Whether joins may be sent to `url`.
    pub fn allows(&self, url: &str) -> bool {
        matches(&self.patterns, url)
    }

    /// Whether a sign-in may follow a join to `url` (a one-time code that
    /// signs its bearer in): only to a node named by `--node-urls`, or, by
    /// default, to this node's own host.
    pub fn carries_signin(&self, url: &str) -> bool {
        matches(&self.patterns[..self.carry_signin], url)
    }
}

fn matches(patterns: &[Pattern], url: &str) -> bool {
    let Some((scheme, host, port)) = origin(url) else {
        return false;
    };
    patterns.iter().any(|p| {
        p.scheme == scheme
            && p.port.is_none_or(|want| port == Some(want))
            && match &p.host {
                Host::Exact(h) => *h == host,
                Host::Under(d) => host
                    .strip_suffix(d.as_str())
                    .is_some_and(|label| label.ends_with('.') && label.len() > 1),
            }
    })
}

#[cfg(test)]
mod tests {
    use super::NodeUrls;

    #[test]
    fn the_origins_that_carry_a_sign_in_as_csp_sources() {
        let listed =
            NodeUrls::parse("https://meet-1.example.org, https://*.nodes.example.org:8443")
                .unwrap();
        assert_eq!(
            listed.csp_sources(),
            "https://meet-1.example.org:* https://*.nodes.example.org:8443"
        );
        // By default only this node's own host (any port).
        let around = NodeUrls::around("https://n1.meet.example.org");
        assert_eq!(around.csp_sources(), "https://n1.meet.example.org:*");
    }

    #[test]
    fn a_listed_origin_or_a_name_under_a_listed_domain_is_allowed_and_nothing_else() {
        let l = NodeUrls::parse("https://meet-1.example.org, https://*.nodes.example.org:8443")
            .unwrap();
        assert!(l.allows("https://meet-1.example.org"));
        assert!(l.allows("https://MEET-1.example.org:444/"));
        assert!(l.allows("https://b.nodes.example.org:8443"));
        // A backslash (a browser reads it as `/`) or an escape is no name.
        assert!(!l.carries_signin("https://evil.com\\.nodes.example.org:8443"));
        assert!(!l.allows("https://evil.com%2F.nodes.example.org:8443"));
        assert!(!l.allows("https://evil.com\\@b.nodes.example.org:8443"));
        assert_eq!(
            super::canonical_origin("https://B.nodes.example.org:8443/x?y"),
            Some("https://b.nodes.example.org:8443".to_string())
        );
        assert!(
            !l.allows("https://b.nodes.example.org"),
            "port given: that port"
        );
        assert!(!l.allows("https://nodes.example.org:8443"));
        assert!(!l.allows("https://evil-nodes.example.org:8443"));
        assert!(!l.allows("https://nodes.example.org.evil.net:8443"));
        assert!(!l.allows("http://meet-1.example.org"), "another scheme");
        assert!(!l.allows("https://meet-1.example.org@evil.net"));
        assert!(!l.allows("https://evil.net/https://meet-1.example.org"));
        assert!(!l.allows("javascript:alert(1)"));
        assert!(NodeUrls::parse("https://*").is_err());
        assert!(NodeUrls::parse("https://a.*.org").is_err());
        assert!(NodeUrls::parse("ftp://x.org").is_err());
        assert!(NodeUrls::parse(" , ").is_err());
    }

    #[test]
    fn by_default_the_nodes_share_this_ones_scheme_and_domain() {
        let l = NodeUrls::around("https://n1.meet.example.org");
        assert!(l.allows("https://n2.meet.example.org"));
        assert!(l.allows("https://meet.example.org:8443"));
        assert!(!l.allows("https://example.org"));
        assert!(!l.allows("http://n2.meet.example.org"));
        assert!(!l.allows("https://n2.meet.example.org.evil.net"));
        let ip = NodeUrls::around("http://127.0.0.1:8080");
        assert!(ip.allows("http://127.0.0.1:9090"));
        assert!(!ip.allows("http://127.0.0.2:9090"));
        let short = NodeUrls::around("https://meet.example");
        assert!(short.allows("https://meet.example:444"));
        assert!(!short.allows("https://other.example"), "no domain to share");
    }

    #[test]
    fn a_sign_in_follows_a_join_only_to_a_listed_node_or_by_default_to_this_host() {
        let listed = NodeUrls::parse("https://*.nodes.example.org").unwrap();
        assert!(listed.carries_signin("https://b.nodes.example.org"));
        assert!(!listed.carries_signin("https://evil.example.org"));
        let default = NodeUrls::around("https://convene.fly.dev");
        assert!(default.allows("https://someone-else.fly.dev"));
        assert!(
            !default.carries_signin("https://someone-else.fly.dev"),
            "the default's domain may be a public suffix"
        );
        assert!(default.carries_signin("https://convene.fly.dev:8443"));
        let ip = NodeUrls::around("http://127.0.0.1:8080");
        assert!(ip.carries_signin("http://127.0.0.1:9090"));
    }
}

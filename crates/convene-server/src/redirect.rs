//! The plain-HTTP redirect listener (`--http-redirect-listen`): every request
//! is answered `308 Permanent Redirect` to the same path and query over
//! https, and nothing else is served there (no page, no API, no HSTS, which
//! browsers ignore over plain http anyway). 308 rather than 301 keeps the
//! method, so even a POST is not silently turned into a GET.

use axum::extract::{Request, State};
use axum::http::{header, uri::Authority, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// Where redirects point.
#[derive(Debug, Clone)]
pub enum Target {
    /// The origin of `--public-url` (`https://host[:port]`), whatever the
    /// request's `Host` said.
    Origin(String),
    /// The request's own host name, on the https listener's port.
    SameHost { https_port: u16 },
}

impl Target {
    /// From `--public-url` if given (its origin: scheme and authority, no
    /// path), else the request's host with `https_port`.
    pub fn new(public_url: Option<&str>, https_port: u16) -> Target {
        let origin = public_url.and_then(|u| {
            let uri: Uri = u.parse().ok()?;
            Some(format!("{}://{}", uri.scheme_str()?, uri.authority()?))
        });
        match origin {
            Some(o) => Target::Origin(o),
            None => Target::SameHost { https_port },
        }
    }

    /// The https origin for a request that named `host` (its `Host` header),
    /// or `None` if it named none that can be used.
    fn origin_for(&self, host: Option<&str>) -> Option<String> {
        match self {
            Target::Origin(o) => Some(o.clone()),
            Target::SameHost { https_port } => {
                let authority: Authority = host?.parse().ok()?;
                let name = authority.host();
                if name.is_empty() || authority.as_str().contains('@') {
                    return None;
                }
                Some(match https_port {
                    443 => format!("https://{name}"),
                    port => format!("https://{name}:{port}"),
                })
            }
        }
    }
}

pub fn router(target: Target) -> Router {
    Router::new().fallback(redirect).with_state(target)
}

async fn redirect(State(target): State<Target>, req: Request) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    // The connection is closed after the answer: the browser goes elsewhere.
    let close = (header::CONNECTION, HeaderValue::from_static("close"));
    let location = target
        .origin_for(host)
        .and_then(|origin| HeaderValue::from_str(&format!("{origin}{path}")).ok());
    match location {
        Some(location) => (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location), close],
        )
            .into_response(),
        None => (
            StatusCode::BAD_REQUEST,
            [close],
            "This address redirects to https; the request named no host to redirect to.\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::Target;

    #[test]
    fn the_target_is_the_public_origin_or_the_requested_host_on_the_https_port() {
        let public = Target::new(Some("https://meet.example.gov.uk/"), 8443);
        assert_eq!(
            public.origin_for(Some("10.0.0.5")).as_deref(),
            Some("https://meet.example.gov.uk")
        );
        assert_eq!(
            Target::new(Some("https://meet.example.gov.uk:8443/x"), 443)
                .origin_for(None)
                .as_deref(),
            Some("https://meet.example.gov.uk:8443")
        );
        let same = Target::new(None, 8443);
        assert_eq!(
            same.origin_for(Some("meet.example:80")).as_deref(),
            Some("https://meet.example:8443")
        );
        assert_eq!(
            same.origin_for(Some("[::1]:8080")).as_deref(),
            Some("https://[::1]:8443")
        );
        assert_eq!(
            Target::new(None, 443)
                .origin_for(Some("meet.example"))
                .as_deref(),
            Some("https://meet.example")
        );
        for bad in [
            None,
            Some(""),
            Some("a b"),
            Some("user@evil.example"),
            Some("x/y"),
        ] {
            assert_eq!(same.origin_for(bad), None, "{bad:?}");
        }
    }
}

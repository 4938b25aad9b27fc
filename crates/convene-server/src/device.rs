//! Recognising a browser again without an account: an HttpOnly cookie with a
//! random value, set on the first page load. Roles a host grants and bars a host
//! imposes attach to it (as a hash: the database never holds the cookie itself).
//! It is as strong as the browser's cookie jar: someone who clears cookies or
//! changes browser comes back unrecognised, which is why the lobby and
//! verified sign-in exist.

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

use convene_auth::store::{random_hex, sha256_hex};

use crate::{cookies, AppState};

pub const COOKIE: &str = "convene_device";
/// Over https the cookie carries the `__Host-` prefix: the browser then takes
/// it only from this exact host, over https, for the whole site, so a sibling
/// subdomain cannot plant a device identity (and with it someone's grants).
pub const HOST_COOKIE: &str = "__Host-convene_device";
const VALUE_LEN: usize = 32;

fn name(secure: bool) -> &'static str {
    if secure {
        HOST_COOKIE
    } else {
        COOKIE
    }
}

fn is_https(state: &AppState) -> bool {
    state.public_url.starts_with("https://")
}

/// The device cookie's value, if the request carries a well-formed one.
fn cookie(headers: &HeaderMap, secure: bool) -> Option<&str> {
    cookies::get(headers, name(secure))
        .filter(|v| v.len() == VALUE_LEN && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The key a meeting knows this browser by.
pub fn person_key(state: &AppState, headers: &HeaderMap) -> Option<String> {
    key_of(headers, is_https(state))
}

fn key_of(headers: &HeaderMap, secure: bool) -> Option<String> {
    let hash = sha256_hex(cookie(headers, secure)?);
    Some(format!("device:{}", &hash[..32]))
}

/// Give pages (not the API or assets) a device cookie when the browser has none.
pub async fn ensure_cookie(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    let is_page = path == "/" || path.starts_with("/m/");
    let secure = is_https(&state);
    let needs = is_page && cookie(req.headers(), secure).is_none();
    let mut res = next.run(req).await;
    if needs {
        let value = random_hex(VALUE_LEN / 2);
        cookies::set(
            &mut res,
            format!(
                "{}={value}; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax{}",
                name(secure),
                cookies::secure(&state)
            ),
        );
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{header, HeaderValue};

    fn headers(cookie: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
        h
    }

    #[test]
    fn finds_the_cookie_among_others_and_rejects_odd_values() {
        let v = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            cookie(&headers(&format!("a=b; {COOKIE}={v}; c=d")), false),
            Some(v)
        );
        assert_eq!(cookie(&headers(&format!("{COOKIE}=short")), false), None);
        assert_eq!(cookie(&headers(&format!("{COOKIE}={v}x")), false), None);
        assert_eq!(cookie(&headers("other=1"), false), None);
        // Over https only the prefixed cookie counts: a plain one could have
        // been planted by a sibling subdomain.
        assert_eq!(cookie(&headers(&format!("{COOKIE}={v}")), true), None);
        assert_eq!(
            cookie(&headers(&format!("{HOST_COOKIE}={v}")), true),
            Some(v)
        );
        let key = key_of(&headers(&format!("{COOKIE}={v}")), false).unwrap();
        assert!(key.starts_with("device:") && !key.contains(v));
        assert_eq!(key.len(), "device:".len() + 32);
    }
}

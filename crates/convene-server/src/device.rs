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
const VALUE_LEN: usize = 32;

/// The device cookie's value, if the request carries a well-formed one.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    cookies::get(headers, COOKIE)
        .filter(|v| v.len() == VALUE_LEN && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The key a meeting knows this browser by.
pub fn person_key(headers: &HeaderMap) -> Option<String> {
    let hash = sha256_hex(cookie(headers)?);
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
    let needs = is_page && cookie(req.headers()).is_none();
    let mut res = next.run(req).await;
    if needs {
        let value = random_hex(VALUE_LEN / 2);
        cookies::set(
            &mut res,
            format!(
                "{COOKIE}={value}; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax{}",
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
            cookie(&headers(&format!("a=b; {COOKIE}={v}; c=d"))),
            Some(v)
        );
        assert_eq!(cookie(&headers(&format!("{COOKIE}=short"))), None);
        assert_eq!(cookie(&headers(&format!("{COOKIE}={v}x"))), None);
        assert_eq!(cookie(&headers("other=1")), None);
        let key = person_key(&headers(&format!("{COOKIE}={v}"))).unwrap();
        assert!(key.starts_with("device:") && !key.contains(v));
        assert_eq!(key.len(), "device:".len() + 32);
    }
}

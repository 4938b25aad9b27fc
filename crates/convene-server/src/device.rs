//! Recognising a browser again without an account: an HttpOnly cookie with a
//! random value, set on the first page load. Roles a host grants and bars a host
//! imposes attach to it (as a hash: the database never holds the cookie itself).
//! It is as strong as the browser's cookie jar: someone who clears cookies or
//! changes browser comes back unrecognised, which is why the lobby and
//! verified sign-in exist.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use std::sync::Arc;

use crate::AppState;

pub const COOKIE: &str = "convene_device";
const VALUE_LEN: usize = 32;

/// The device cookie's value, if the request carries a well-formed one.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .filter(|v| v.len() == VALUE_LEN && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The key a meeting knows this browser by.
pub fn person_key(headers: &HeaderMap) -> Option<String> {
    let value = cookie(headers)?;
    let digest = Sha256::digest(value.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("device:{hex}"))
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
        let bytes: [u8; VALUE_LEN / 2] = rand::random();
        let value: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        // Secure whenever the public address is https (plain http only on a trial
        // or loopback, where browsers would drop a Secure cookie).
        let secure = if state.public_url.starts_with("https://") {
            "; Secure"
        } else {
            ""
        };
        let cookie =
            format!("{COOKIE}={value}; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax{secure}");
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

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

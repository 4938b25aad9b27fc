//! Reading and setting cookies, the same way for the device and session cookies.

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;

use crate::AppState;

/// The value of cookie `name` in the request, if it carries one.
pub fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// Cookies are `Secure` unless this server is reached over plain http (a trial
/// on this machine), where browsers would refuse to send them back.
pub fn secure(state: &AppState) -> &'static str {
    if state.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    }
}

/// A cookie's name: `__Host-` + `name` over https, so that no other site (a
/// sibling subdomain) can plant it; `name` over plain http, where browsers
/// refuse the prefix.
pub fn host_only(state: &AppState, name: &'static str) -> &'static str {
    if state.public_url.starts_with("https://") {
        name
    } else {
        name.strip_prefix("__Host-").unwrap_or(name)
    }
}

/// Add a `Set-Cookie` header (a value that is not a valid header is dropped).
pub fn set(res: &mut Response, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

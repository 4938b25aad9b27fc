//! Who may use the admin API: holders of the admin token (`--admin-token`),
//! sent as `Authorization: Bearer <token>`. Wrong tokens are counted per
//! client address group, and a client past its allowance is refused before
//! its token is even compared, so guessing runs at a few tries a minute.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;

use crate::client_addr::ClientIp;
use crate::http::{api_error, retry_later};
use crate::AppState;

/// Shortest admin token the server accepts: shorter ones are guessable.
pub const MIN_TOKEN_CHARS: usize = 16;
/// Wrong tokens a client may send in a burst, then one per this many seconds.
pub const WRONG_TOKENS_BURST: f64 = 10.0;
pub const WRONG_TOKEN_EVERY_SECS: f64 = 6.0;

/// A request from an admin. As an extractor it answers anyone else with the
/// refusal (404 when the admin API is off, 401, or 429 when throttled).
pub struct Admin;

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let Ok(ClientIp(client)) = ClientIp::from_request_parts(parts, state).await;
        check(state, &parts.headers, client)
            .map(|()| Admin)
            .map_err(Refusal::answer)
    }
}

/// Whether this request carries the admin token (for answers that say more
/// to an admin); counts a wrong token like any other.
pub fn is_admin(state: &AppState, headers: &HeaderMap, client: IpAddr) -> bool {
    check(state, headers, client).is_ok()
}

/// Why a request is not an admin's.
enum Refusal {
    Off,
    Throttled,
    WrongToken,
}

impl Refusal {
    fn answer(self) -> Response {
        match self {
            Refusal::Off => api_error(
                StatusCode::NOT_FOUND,
                "the admin API is off (no admin token configured)",
            ),
            Refusal::Throttled => retry_later(
                StatusCode::TOO_MANY_REQUESTS,
                "too many wrong admin tokens from this address; try again later",
                "60",
            ),
            Refusal::WrongToken => api_error(StatusCode::UNAUTHORIZED, "an admin token is needed"),
        }
    }
}

fn check(state: &AppState, headers: &HeaderMap, client: IpAddr) -> Result<(), Refusal> {
    let Some(token) = &state.admin_token else {
        return Err(Refusal::Off);
    };
    // Only a try at the token counts: a request with no bearer token at all
    // (a scanner, a proxy's Basic auth) is refused but costs nobody's
    // allowance, so it cannot lock the admin out.
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
    else {
        return Err(Refusal::WrongToken);
    };
    // A try is charged before the comparison and given back if right, so
    // simultaneous tries get no more comparisons than the allowance.
    let group = guessing_group(client);
    if !state.wrong_admin_tokens.allow(group) {
        return Err(Refusal::Throttled);
    }
    // Digests of equal length are compared, so the time taken says nothing
    // about the token's length either.
    let (given, wanted) = (
        convene_auth::store::sha256_hex(given),
        convene_auth::store::sha256_hex(token),
    );
    if bool::from(subtle::ConstantTimeEq::ct_eq(
        given.as_bytes(),
        wanted.as_bytes(),
    )) {
        state.wrong_admin_tokens.refund(group);
        return Ok(());
    }
    Err(Refusal::WrongToken)
}

/// Whom wrong tokens are counted against: an IPv4 address, or an IPv6 /48
/// (the most a single site is usually given: a /64 each would hand one
/// guesser 65 536 allowances).
fn guessing_group(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Examples from the shipped configuration files: never a real token.
const PLACEHOLDERS: &[&str] = &["a long random string"];

/// Refuses admin tokens too short to resist guessing (a configuration check),
/// and the examples' placeholder.
pub fn parse_token(s: &str) -> Result<String, String> {
    if PLACEHOLDERS.contains(&s.trim()) {
        return Err("the admin token is the example's placeholder: make a random one (e.g. `openssl rand -hex 32`)".into());
    }
    if s.chars().count() < MIN_TOKEN_CHARS {
        return Err(format!(
            "the admin token must be at least {MIN_TOKEN_CHARS} characters (a long random string)"
        ));
    }
    Ok(s.to_string())
}

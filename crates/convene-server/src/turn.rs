//! TURN credentials for browsers that cannot reach the media port directly:
//! the TURN REST API scheme coturn's `use-auth-secret` expects. The username
//! is `<expiry>:<id>` (Unix seconds, then an opaque random id that stands for
//! one participant, never a name or address) and the password is
//! base64(HMAC-SHA1(shared secret, username)); the TURN server recomputes it
//! from the same secret and refuses it once the expiry has passed. Nothing is
//! stored: whoever holds a credential may relay until it expires, so they are
//! made per participant, live `ttl_seconds`, and the meeting task sends fresh
//! ones at [`REFRESH_AT`] of that (meeting.rs). The connectivity check gets
//! its own, shorter-lived ones from `GET /api/check/ice-servers`.
//!
//! The deployment file's `[turn]` section is parsed in convene-auth
//! (config/turn.rs); this reads the secret file and issues.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use convene_auth::config::turn::TurnConfig;
use convene_meeting::protocol::IceServer;
use hmac::{Hmac, Mac};
use rand::Rng as _;
use serde::Serialize;
use sha1::Sha1;

use crate::client_addr::ClientIp;
use crate::rates::PerClient;
use crate::AppState;

/// Shorter secrets are refused: the HMAC is only as strong as the secret, and
/// anyone who learns it can make credentials for themselves.
pub const MIN_SECRET_BYTES: usize = 16;
/// Fresh credentials go out when this share of the lifetime has passed, so a
/// participant always holds some with a fifth of their lifetime left (clock
/// skew between Convene and the TURN server, a slow ICE restart).
pub const REFRESH_AT: f64 = 0.8;
/// Lifetime of the connectivity check's credentials: the page fetches them
/// and runs its relay test within its 15 s; a minute leaves room for clock
/// skew. Anyone may fetch them, so they are short: coturn checks a credential
/// when an allocation is made or refreshed, so an allocation made with one
/// lives at most its first lifetime (`max-allocate-lifetime`).
pub const CHECK_TTL: Duration = Duration::from_secs(60);
/// The check endpoint, per client address: a burst of 10, then 10 a minute.
const CHECKS_PER_MINUTE: f64 = 10.0;
const CHECKS_BURST: f64 = 10.0;
/// ... and from everyone together: anonymous credentials are what someone
/// farming the TURN server's allocation quota would collect. With the
/// documented coturn settings (`user-quota=4`, `max-allocate-lifetime=600`)
/// they can hold at most 20 a minute × 4 × 10 minutes = 800 allocations,
/// whatever addresses they come from; docs/configuration.md sizes
/// `total-quota` above that. Past it, the check page says the relay could not
/// be tested now.
const CHECKS_PER_MINUTE_ALL: f64 = 20.0;

/// Makes credentials for the configured TURN servers.
pub struct Issuer {
    urls: Vec<String>,
    secret: Vec<u8>,
    ttl: Duration,
}

/// Never shows the secret, in logs or panics.
impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("urls", &self.urls)
            .field("secret", &"(hidden)")
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl Issuer {
    /// Reads the secret file (relative paths from `base`, the deployment
    /// file's folder). `ttl` overrides the section's lifetime (tests only).
    pub fn load(config: &TurnConfig, base: &Path, ttl: Option<Duration>) -> Result<Issuer, String> {
        let path = base.join(&config.secret_file);
        let secret = read_secret(&path)?;
        Ok(Issuer {
            urls: config.urls.iter().map(|u| u.as_str().to_string()).collect(),
            secret,
            ttl: ttl.unwrap_or(Duration::from_secs(config.ttl_seconds.seconds().into())),
        })
    }

    /// How long each participant's credentials last.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// When a participant's credentials are to be replaced, after issuing.
    pub fn refresh_after(&self) -> Duration {
        self.ttl.mul_f64(REFRESH_AT)
    }

    /// The TURN servers with credentials for `id` that expire `ttl` after `now`.
    pub fn ice_servers(&self, id: &str, now: SystemTime, ttl: Duration) -> Vec<IceServer> {
        let expiry = now.duration_since(UNIX_EPOCH).unwrap_or_default() + ttl;
        let username = format!("{}:{id}", expiry.as_secs());
        vec![IceServer {
            urls: self.urls.clone(),
            credential: credential(&self.secret, &username),
            username,
        }]
    }
}

/// The password the TURN server expects for `username`:
/// base64(HMAC-SHA1(secret, username)).
pub fn credential(secret: &[u8], username: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A fresh opaque id for a username: 16 random hex digits (64 bits), which
/// tell the TURN server's logs apart without saying who anyone is.
pub fn new_id() -> String {
    let n: u64 = rand::rng().random();
    format!("{n:016x}")
}

/// The secret: the file's text without surrounding whitespace (a trailing
/// newline), at least [`MIN_SECRET_BYTES`] of printable ASCII, as coturn reads
/// `static-auth-secret` from a line of its configuration. Errors name the
/// file, never its content.
fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let place = format!("turn.secret_file {}", path.display());
    let bytes = std::fs::read(path).map_err(|e| format!("{place}: {e}"))?;
    let secret = bytes.trim_ascii();
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "{place}: the secret must be at least {MIN_SECRET_BYTES} characters \
             (make one with `openssl rand -hex 32`)"
        ));
    }
    if !secret.iter().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{place}: the secret must be printable ASCII without spaces, as the TURN \
             server's static-auth-secret (make one with `openssl rand -hex 32`)"
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o004 != 0 {
                tracing::warn!(
                    file = %path.display(),
                    "the TURN secret file can be read by every user of this machine: \
                     make it readable by Convene's user only (chmod 600)"
                );
            }
        }
    }
    Ok(secret.to_vec())
}

/// TURN as the server's edges see it: the issuer, if TURN is configured, and
/// the check endpoint's rate limit.
pub struct Turn {
    pub issuer: Option<Issuer>,
    checks: PerClient,
    checks_all: std::sync::Mutex<crate::rates::Rates<()>>,
}

impl Turn {
    pub fn new(issuer: Option<Issuer>) -> Turn {
        Turn {
            issuer,
            checks: PerClient::new(CHECKS_PER_MINUTE / 60.0, CHECKS_BURST),
            checks_all: std::sync::Mutex::new(crate::rates::Rates::new(
                CHECKS_PER_MINUTE_ALL / 60.0,
                CHECKS_PER_MINUTE_ALL,
            )),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IceServersView {
    ice_servers: Vec<IceServer>,
}

/// `GET /api/check/ice-servers`: the TURN servers with credentials for the
/// connectivity check, valid for [`CHECK_TTL`] (`[]` without TURN). Rate
/// limited per client address: each answer is a working credential.
pub async fn check_ice_servers(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
) -> Response {
    let turn = &state.turn;
    if !turn.checks.allow(client) {
        return crate::http::retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            "too many connectivity checks from your address: try again in a minute",
            "6",
        );
    }
    // Only credentials count against everyone's budget: `[]` costs nothing.
    let everyone = || {
        turn.checks_all
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allow(std::time::Instant::now(), &())
    };
    if turn.issuer.is_some() && !everyone() {
        return crate::http::retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many connectivity checks right now: try again in a minute",
            "10",
        );
    }
    let ice_servers = turn
        .issuer
        .as_ref()
        .map(|i| i.ice_servers(&new_id(), SystemTime::now(), CHECK_TTL))
        .unwrap_or_default();
    let mut res = Json(IceServersView { ice_servers }).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(secret: &str) -> Issuer {
        Issuer {
            urls: vec!["turn:turn.example.org:3478?transport=udp".into()],
            secret: secret.as_bytes().to_vec(),
            ttl: Duration::from_secs(3600),
        }
    }

    #[test]
    fn credentials_are_the_turn_rest_api_s() {
        // As the TURN REST API draft's reference (python: base64(hmac.new(
        // secret, username, sha1).digest())) computes it.
        assert_eq!(
            credential(b"north", "1433895918:alice"),
            "RqMvcGPYTJMGThVLSi4amT4zFtI="
        );
        // RFC 2202's HMAC-SHA1 test case 2, in base64.
        assert_eq!(
            credential(b"Jefe", "what do ya want for nothing?"),
            "7/zfauXrL6LSdBbV8YTfnCWafHk="
        );
    }

    #[test]
    fn usernames_carry_the_expiry_and_an_opaque_id() {
        let i = issuer("0123456789abcdef0123");
        let now = UNIX_EPOCH + Duration::from_secs(1_764_076_800);
        let s = &i.ice_servers("3f9a0c2e5b7d1f48", now, i.ttl())[0];
        assert_eq!(s.username, "1764080400:3f9a0c2e5b7d1f48");
        assert_eq!(
            s.credential,
            credential(b"0123456789abcdef0123", &s.username)
        );
        assert_eq!(s.urls, ["turn:turn.example.org:3478?transport=udp"]);
        let id = new_id();
        assert_eq!(id.len(), 16);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(id, new_id());
        assert_eq!(i.refresh_after(), Duration::from_secs(2880));
    }

    #[test]
    fn the_secret_is_never_shown() {
        let i = issuer("a-secret-nobody-sees");
        assert!(!format!("{i:?}").contains("nobody"));
        let dir = std::env::temp_dir().join(format!("convene-turn-{}", new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, "short-secret\n").unwrap();
        let e = read_secret(&file).unwrap_err();
        assert!(
            e.contains("at least 16") && !e.contains("short-secret"),
            "{e}"
        );
        std::fs::write(&file, "has a space in it, long enough\n").unwrap();
        let e = read_secret(&file).unwrap_err();
        assert!(
            e.contains("printable ASCII") && !e.contains("space in"),
            "{e}"
        );
        std::fs::write(&file, "  0123456789abcdef0123\r\n").unwrap();
        assert_eq!(read_secret(&file).unwrap(), b"0123456789abcdef0123");
        let e = read_secret(&dir.join("missing")).unwrap_err();
        assert!(
            e.contains("turn.secret_file") && e.contains("missing"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

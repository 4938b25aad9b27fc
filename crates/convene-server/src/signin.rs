//! Sign-in routes and the session cookie: `/auth/login`, `/auth/callback`,
//! `/auth/logout`, `/api/session`; and CSRF protection for every
//! state-changing request.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use convene_auth::store::Session;
use serde::{Deserialize, Serialize};

use crate::client_addr::ClientIp;
use crate::cookies::{get as cookie, secure, set as set_cookie};
use crate::words::Lang;
use crate::AppState;

/// Cookie names: with the `__Host-` prefix over https, so that no other site
/// (a sibling subdomain) can plant them.
fn session_cookie(state: &AppState) -> &'static str {
    crate::cookies::host_only(state, "__Host-convene_session")
}

fn login_cookie(state: &AppState) -> &'static str {
    crate::cookies::host_only(state, "__Host-convene_login")
}
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The signed-in session this request from `client` carries, if any; an
/// error when that cannot be known just now (shared sessions away, or this
/// client sent too many cookies this node never read): serving such a
/// request as signed out would take a signed-in person for a guest.
pub fn session(
    state: &AppState,
    headers: &HeaderMap,
    client: IpAddr,
) -> Result<Option<Session>, Unchecked> {
    let Some(token) = cookie(headers, session_cookie(state)) else {
        return Ok(None);
    };
    state.auth.checked_session(token, client).map_err(Unchecked)
}

/// Whether a request is signed in cannot be known now: `503` with
/// Retry-After.
#[derive(Debug)]
pub struct Unchecked(pub &'static str);

impl Unchecked {
    /// The same for a page the person opened: in words, and loaded again by
    /// the browser in a moment (`Refresh`; browsers ignore Retry-After on a
    /// page).
    pub fn page(self, headers: &HeaderMap) -> Response {
        let lang = Lang::of_request(None, headers);
        let mut res = problem(
            StatusCode::SERVICE_UNAVAILABLE,
            lang,
            &lang.t("signin.problem-unavailable", &[]),
            Some(self.0),
        );
        for (name, value) in [(header::RETRY_AFTER, "2"), (header::REFRESH, "2")] {
            res.headers_mut()
                .insert(name, HeaderValue::from_static(value));
        }
        crate::http::no_store(res)
    }
}

impl IntoResponse for Unchecked {
    fn into_response(self) -> Response {
        crate::http::retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("{}; try again in a moment", self.0),
            "2",
        )
    }
}

/// Set the session cookie to `token` on `res`.
pub fn set_session_cookie(state: &AppState, res: &mut Response, token: &str) {
    set_cookie(
        res,
        format!(
            "{}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{}",
            session_cookie(state),
            token,
            state.auth.session_lifetime().as_secs(),
            secure(state)
        ),
    );
}

/// The session cookie's value in this request, if it carries one.
pub fn session_token<'a>(state: &AppState, headers: &'a HeaderMap) -> Option<&'a str> {
    cookie(headers, session_cookie(state))
}

/// A plain page saying what went wrong with sign-in, with a way back, in the
/// person's language (words.rs). `detail`: the technical cause, in English,
/// for whoever they ask for help.
fn problem(status: StatusCode, lang: Lang, message: &str, detail: Option<&str>) -> Response {
    let detail = detail.map(|d| lang.t("signin.problem-detail", &[("detail", d)]));
    crate::problem_page::page(
        status,
        lang,
        &lang.t("signin.problem-title", &[]),
        &lang.t("signin.problem-heading", &[]),
        message,
        detail.as_deref(),
    )
}

/// A sign-in that did not work, in words for the person (and the cause for IT).
fn login_problem(lang: Lang, e: &convene_auth::LoginError) -> Response {
    use convene_auth::store::PendingError;
    use convene_auth::LoginError as E;
    let (status, message, detail) = match e {
        E::UnknownOrganisation(_) => (
            StatusCode::NOT_FOUND,
            lang.t("signin.problem-unknown-org", &[]),
            None,
        ),
        E::Pending(PendingError::Unknown) => (
            StatusCode::BAD_REQUEST,
            lang.t("signin.problem-unknown", &[]),
            None,
        ),
        E::Pending(PendingError::OtherBrowser) => (
            StatusCode::BAD_REQUEST,
            lang.t("signin.problem-other-browser", &[]),
            None,
        ),
        E::Pending(PendingError::Expired) => (
            StatusCode::BAD_REQUEST,
            lang.t("signin.problem-expired", &[]),
            None,
        ),
        E::Provider(org, _) => (
            StatusCode::BAD_GATEWAY,
            lang.t("signin.problem-unreachable", &[("org", org)]),
            Some(e.to_string()),
        ),
        E::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            lang.t("signin.problem-unavailable", &[]),
            Some(e.to_string()),
        ),
        E::Refused(_) | E::Token(_) => (
            StatusCode::BAD_REQUEST,
            lang.t("signin.problem-refused", &[]),
            Some(e.to_string()),
        ),
    };
    problem(status, lang, &message, detail.as_deref())
}

#[derive(Deserialize)]
pub struct LoginQuery {
    org: String,
    #[serde(default, rename = "return")]
    return_to: Option<String>,
    /// `mfa=1`: signing in again because a meeting needs a second factor.
    #[serde(default)]
    mfa: Option<String>,
}

/// A refusal if this address may not start another sign-in now: each one
/// costs a round trip to the organisation's provider.
fn refuse_try(state: &AppState, client: std::net::IpAddr, lang: Lang) -> Option<Response> {
    if state.logins.allow(client) {
        return None;
    }
    let mut res = problem(
        StatusCode::TOO_MANY_REQUESTS,
        lang,
        &lang.t("signin.problem-too-many", &[]),
        None,
    );
    res.headers_mut().insert(
        header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("60"),
    );
    Some(res)
}

pub async fn login(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let lang = Lang::of_request(None, &headers);
    if let Some(refused) = refuse_try(&state, client, lang) {
        return refused;
    }
    let return_to = q.return_to.as_deref().unwrap_or("/");
    let step_up = q.mfa.as_deref() == Some("1");
    match state.auth.begin(&q.org, return_to, step_up).await {
        Ok(started) => {
            let mut res =
                (StatusCode::SEE_OTHER, [(header::LOCATION, started.url)]).into_response();
            set_cookie(
                &mut res,
                format!(
                    "{}={}; Path=/; Max-Age=600; HttpOnly; SameSite=Lax{}",
                    login_cookie(&state),
                    started.binding,
                    secure(&state)
                ),
            );
            res
        }
        Err(e @ convene_auth::LoginError::UnknownOrganisation(_)) => login_problem(lang, &e),
        Err(e) => {
            let mut res = login_problem(lang, &e);
            *res.status_mut() = StatusCode::BAD_GATEWAY;
            res
        }
    }
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

pub async fn callback(
    State(state): State<Arc<AppState>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let lang = Lang::of_request(None, &headers);
    if let Some(error) = q.error {
        // Fixed words only: text from the query would let anyone put their
        // message on this server's page.
        let _ = q.error_description;
        let message = match error.as_str() {
            "access_denied" => lang.t("signin.problem-declined", &[]),
            code if code.len() <= 40
                && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') =>
            {
                lang.t("signin.problem-provider-code", &[("code", code)])
            }
            _ => lang.t("signin.problem-provider", &[]),
        };
        return problem(StatusCode::BAD_REQUEST, lang, &message, None);
    }
    let (Some(code), Some(st)) = (q.code, q.state) else {
        return problem(
            StatusCode::BAD_REQUEST,
            lang,
            &lang.t("signin.problem-incomplete", &[]),
            None,
        );
    };
    let binding = cookie(&headers, login_cookie(&state));
    match state
        .auth
        .finish(&org, &code, &st, q.iss.as_deref(), binding)
        .await
    {
        Ok(done) => {
            let mut res =
                (StatusCode::SEE_OTHER, [(header::LOCATION, done.return_to)]).into_response();
            set_session_cookie(&state, &mut res, &done.token);
            set_cookie(
                &mut res,
                format!(
                    "{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{}",
                    login_cookie(&state),
                    secure(&state)
                ),
            );
            res
        }
        Err(e) => {
            tracing::info!("sign-in refused: {e}");
            let mut res = login_problem(lang, &e);
            *res.status_mut() = StatusCode::BAD_REQUEST;
            res
        }
    }
}

pub async fn logout(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
) -> Response {
    if let Some(token) = cookie(&headers, session_cookie(&state)) {
        // Signed out everywhere or not at all: a cookie cleared here while
        // the sign-in lives on at the other nodes would only look signed out.
        if let Err(e) = state.auth.sign_out(token, client) {
            return crate::http::retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("{e}: you are still signed in; try again in a moment"),
                "2",
            );
        }
    }
    let mut res = StatusCode::NO_CONTENT.into_response();
    set_cookie(
        &mut res,
        format!(
            "{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{}",
            session_cookie(&state),
            secure(&state)
        ),
    );
    res
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Me {
    name: Option<String>,
    level: convene_meeting::identity::Level,
    organisation: Option<String>,
    mfa: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionView {
    /// The organisation that runs this server, and its address: shown first
    /// on every page so people can check a link is genuine.
    hosted_by: String,
    server: String,
    signed_in: Option<Me>,
    /// Send in the `X-CSRF-Token` header with every state-changing request.
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf_token: Option<String>,
    sign_in: Vec<convene_auth::SignInOption>,
    may_create_meetings: bool,
}

pub async fn session_view(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
) -> Response {
    let s = match session(&state, &headers, client) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let view = SessionView {
        hosted_by: state.auth.home_name().to_string(),
        server: state.public_url.clone(),
        may_create_meetings: may_create(&state, s.as_ref()),
        csrf_token: s.as_ref().map(|s| s.csrf.clone()),
        signed_in: s.map(|s| Me {
            name: s.identity.name.clone(),
            level: s.identity.level,
            organisation: s.identity.organisation.clone(),
            mfa: s.identity.mfa,
        }),
        sign_in: state.auth.options(),
    };
    let mut res = Json(view).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

pub fn may_create(state: &AppState, session: Option<&Session>) -> bool {
    match state.auth.who_creates() {
        convene_auth::config::WhoCreates::Anyone => true,
        convene_auth::config::WhoCreates::Members => {
            session.is_some_and(|s| s.identity.level == convene_meeting::identity::Level::Member)
        }
    }
}

/// Every state-changing request: one from another site's page is refused (by
/// `Origin`), and one that rides on a session cookie must also carry that
/// session's CSRF token in a header, which other sites cannot read or set.
pub async fn csrf(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    req: Request,
    next: Next,
) -> Response {
    let changes_state = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if changes_state {
        let headers = req.headers();
        if !crate::origin::same_origin(headers, &state.public_url) {
            return forbidden("cross-site requests are not allowed");
        }
        if let Some(token) = cookie(headers, session_cookie(&state)) {
            match state.auth.checked_session(token, client) {
                Ok(Some(s)) => {
                    let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
                    if !sent.is_some_and(|t| constant_time_eq(t, &s.csrf)) {
                        return forbidden("missing or wrong CSRF token");
                    }
                }
                Ok(None) => {}
                // Whether the cookie carries a session, and so whether the
                // request needs its token, cannot be known: the handler could
                // find the session in a moment and act on it unchecked.
                Err(e) => return Unchecked(e).into_response(),
            }
        }
    }
    next.run(req).await
}

fn forbidden(msg: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(serde_json::json!({ "error": msg })),
    )
        .into_response()
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

//! A sign-in carried to the node that hosts a meeting (cluster mode with
//! shared sessions): a cookie only goes to the name that set it, so a
//! browser signed in on node A that opens a meeting hosted on node B is
//! signed in on B by a one-time code, bound to that browser.
//!
//! 1. A sends the browser to `B/m/ID?…&signin-from=A` (only a browser
//!    signed in on A; no code yet).
//! 2. B, where the browser is not signed in, gives it a random nonce in a
//!    short-lived cookie and sends it to `A/auth/handoff/ID?…&nonce=N`.
//! 3. A makes a code for the browser's sign-in there, bound to N and the
//!    meeting, and sends it to `B/m/ID?…&signin=CODE`.
//! 4. B takes the code only with the nonce cookie it set in step 2, clears
//!    it, and sends the browser to `/m/ID?…` signed in.
//!
//! A code someone else made for themselves (and leads a browser to, a login
//! CSRF) is bound to their own nonce: no other browser holds it.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use crate::client_addr::ClientIp;
use crate::cookies::{get as cookie, secure, set as set_cookie};
use convene_storage::is_meeting_id;

use crate::http::{elsewhere, no_store};
use crate::{signin, AppState};

const CODE: &str = "signin";
const FROM: &str = "signin-from";
const NONCE: &str = "nonce";

fn nonce_cookie(state: &AppState) -> &'static str {
    crate::cookies::host_only(state, "__Host-convene_handoff")
}

/// Set the nonce cookie to `value` for `max_age` seconds (0: cleared).
fn set_nonce(state: &AppState, res: &mut Response, value: &str, max_age: u64) {
    set_cookie(
        res,
        format!(
            "{}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
            nonce_cookie(state),
            secure(state)
        ),
    );
}

/// Whether a sign-in may be carried to (or asked for from) the node at `url`.
pub(crate) fn carries(state: &AppState, url: &str) -> bool {
    state
        .cluster
        .as_ref()
        .is_some_and(|link| link.carries_signin(url))
}

/// A query split into its hand-off parameters and the rest (as `?…`, or
/// empty), which goes on unchanged.
struct Query<'a> {
    codes: Vec<&'a str>,
    from: Vec<&'a str>,
    nonce: Vec<&'a str>,
    rest: Vec<&'a str>,
}

impl<'a> Query<'a> {
    fn parse(query: Option<&'a str>) -> Query<'a> {
        let mut q = Query {
            codes: vec![],
            from: vec![],
            nonce: vec![],
            rest: vec![],
        };
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=').unwrap_or((pair, "")) {
                (CODE, v) => q.codes.push(v),
                (FROM, v) => q.from.push(v),
                (NONCE, v) => q.nonce.push(v),
                _ => q.rest.push(pair),
            }
        }
        q
    }

    /// The rest, with `extra` added.
    fn rest_with(&self, extra: Option<String>) -> String {
        let mut pairs: Vec<String> = self.rest.iter().map(|p| p.to_string()).collect();
        pairs.extend(extra);
        if pairs.is_empty() {
            String::new()
        } else {
            format!("?{}", pairs.join("&"))
        }
    }

    /// Exactly one value: two or more say nothing (a page that adds its own
    /// to a link cannot decide which is used).
    fn one(values: &[&'a str]) -> Option<&'a str> {
        match values {
            [v] => Some(v),
            _ => None,
        }
    }
}

/// Step 1, on the node a browser opened the meeting on: the query to send
/// it to `node` with. Any incoming hand-off parameter is dropped; a browser
/// signed in here is marked to come back for its code, if `node` may carry
/// a sign-in (`--node-urls`).
/// (An error response when whether it is signed in cannot be known now.)
pub fn leaving(
    state: &AppState,
    headers: &HeaderMap,
    client: IpAddr,
    node: &str,
    query: Option<&str>,
) -> Result<String, signin::Unchecked> {
    let q = Query::parse(query);
    let signed_in = carries(state, node) && signin::session(state, headers, client)?.is_some();
    Ok(
        q.rest_with(
            signed_in.then(|| format!("{FROM}={}", state.public_url.trim_end_matches('/'))),
        ),
    )
}

/// Steps 2 and 4, on the meeting's node: the answer to a meeting page
/// address that carries hand-off parameters, if it does.
pub fn arriving(
    state: &AppState,
    headers: &HeaderMap,
    client: IpAddr,
    id: &str,
    query: Option<&str>,
) -> Option<Response> {
    let q = Query::parse(query);
    if q.codes.is_empty() && q.from.is_empty() && q.nonce.is_empty() {
        return None;
    }
    if !is_meeting_id(id) {
        return Some(StatusCode::NOT_FOUND.into_response());
    }
    let here = format!("/m/{id}{}", q.rest_with(None));
    let signed_in = match signin::session(state, headers, client) {
        Ok(s) => s.is_some(),
        Err(e) => return Some(e.page(headers)),
    };
    if signed_in {
        // Signed in here already: a code (someone else's, perhaps) cannot
        // replace that sign-in.
        return Some(no_store(Redirect::to(&here).into_response()));
    }
    let held = cookie(headers, nonce_cookie(state)).map(str::to_string);
    if let (Some(code), Some(nonce)) = (Query::one(&q.codes), held.as_deref()) {
        // Step 4: the code, with the nonce this browser was given. If the
        // store does not answer, the page is asked again (nonce kept): not
        // let on as a guest.
        let token = match state.auth.take_handoff(code, nonce, id) {
            Ok(token) => token,
            Err(e) => return Some(signin::Unchecked(e).page(headers)),
        };
        let mut res = Redirect::to(&here).into_response();
        set_nonce(state, &mut res, "", 0);
        if let Some(token) = token {
            signin::set_session_cookie(state, &mut res, &token);
        }
        return Some(no_store(res));
    }
    let from = Query::one(&q.from)
        .filter(|from| q.codes.is_empty() && carries(state, from))
        .and_then(crate::node_urls::canonical_origin);
    let Some(from) = from else {
        return Some(no_store(Redirect::to(&here).into_response()));
    };
    // Step 2: a nonce for this browser, and back to the node it is
    // signed in on for a code bound to it.
    let nonce = convene_auth::store::random_hex(convene_auth::store::TOKEN_BYTES);
    let mut res = Redirect::to(&format!(
        "{}/auth/handoff/{id}{}",
        from,
        q.rest_with(Some(format!("{NONCE}={nonce}")))
    ))
    .into_response();
    set_nonce(
        state,
        &mut res,
        &nonce,
        convene_auth::shared::CODE_TTL.as_secs() * 2,
    );
    Some(no_store(res))
}

/// Step 3, `GET /auth/handoff/{id}` on the node the browser is signed in
/// on: a code for its sign-in, bound to the nonce it brings, and on to the
/// meeting's node. Without a sign-in, a nonce, or a node that may carry a
/// sign-in, the browser goes on to the meeting without a code.
pub async fn code_for(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    Path(id): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    if !is_meeting_id(&id) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let q = Query::parse(uri.query());
    // As the page was sent (an edge's: the same one, named moments ago).
    let newcomer = !crate::cascade::for_stage(uri.query());
    let node = match elsewhere(&state, &id, newcomer).await {
        Ok(Some(node)) => node,
        // Hosted here now: the page is here.
        Ok(None) => {
            return no_store(Redirect::to(&format!("/m/{id}{}", q.rest_with(None))).into_response())
        }
        Err(r) => return r,
    };
    if !carries(&state, &node) {
        // The meeting went to a node not trusted with a sign-in since step 1:
        // through this node's page, which decides what may follow there
        // (a page from a lost node carries its resume token in the fragment).
        return no_store(Redirect::to(&format!("/m/{id}{}", q.rest_with(None))).into_response());
    }
    let code = match (
        Query::one(&q.nonce),
        signin::session_token(&state, &headers),
    ) {
        (Some(nonce), Some(token)) => {
            match state.auth.handoff(token, nonce, &id, client) {
                Ok(code) => code,
                // Asked again in a moment: on without the code, the person
                // would arrive as a guest.
                Err(e) => return signin::Unchecked(e).page(&headers),
            }
        }
        _ => None,
    };
    no_store(
        Redirect::to(&format!(
            "{node}/m/{id}{}",
            q.rest_with(code.map(|c| format!("{CODE}={c}")))
        ))
        .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::Query;

    #[test]
    fn the_hand_off_parameters_are_taken_out_and_the_rest_goes_on() {
        let q = Query::parse(Some("lang=nl&signin=c1&x&signin-from=http://a:1&nonce=n"));
        assert_eq!(q.codes, ["c1"]);
        assert_eq!(q.from, ["http://a:1"]);
        assert_eq!(q.nonce, ["n"]);
        assert_eq!(q.rest_with(None), "?lang=nl&x");
        assert_eq!(
            q.rest_with(Some("signin=c2".into())),
            "?lang=nl&x&signin=c2"
        );
        let two = Query::parse(Some("signin=a&signin=b"));
        assert_eq!(Query::one(&two.codes), None);
        assert_eq!(Query::parse(None).rest_with(None), "");
    }
}

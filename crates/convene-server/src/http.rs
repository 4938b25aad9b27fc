//! HTTP routes: pages, the meeting API and the signalling socket.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Request, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use convene_meeting::access::Settings;
use convene_meeting::passcode;
use convene_storage::{is_meeting_id, Meeting};
use serde::{Deserialize, Serialize};

use crate::admin::Admin;
use crate::cascade::Placement;
use crate::client_addr::ClientIp;
use crate::origin::same_origin;
use crate::{assets, check, device, signin, ws, AppState};

const MAX_TITLE_CHARS: usize = 120;
/// Largest request body (the API takes small JSON objects).
pub const MAX_BODY: usize = 16 * 1024;

pub fn router(state: Arc<AppState>, request_timeout: Duration) -> Router {
    Router::new()
        .route("/", get(|| async { assets::serve("index.html") }))
        .route("/m/{id}", get(meeting_page))
        .route(
            "/assets/{*path}",
            get(|Path(path): Path<String>| async move { assets::serve(&path) }),
        )
        .route("/api/meetings", post(create_meeting))
        .route("/api/meetings/{id}", get(get_meeting))
        .route("/api/meetings/{id}/ws", get(signalling))
        .route(
            "/api/meetings/{id}/invitation",
            get(crate::invitation::json),
        )
        .route(
            "/api/meetings/{id}/invitation.ics",
            get(crate::invitation::ics),
        )
        .route("/check", get(|| async { assets::serve("check.html") }))
        .route("/api/check/ws", get(check::socket))
        .route("/api/check/download", get(check::download))
        .route("/api/check/upload", post(check::upload))
        .route(
            "/api/check/ice-servers",
            get(crate::turn::check_ice_servers),
        )
        .route("/api/admin/audit", get(admin_audit))
        .route("/api/admin/stats", get(admin_stats))
        .route(
            "/api/admin/export/meeting/{id}",
            get(crate::export::admin_meeting),
        )
        .route("/api/admin/export/person", get(crate::export::admin_person))
        .route("/api/session", get(signin::session_view))
        .route("/api/policy", get(policy_view))
        .route("/auth/login", get(signin::login))
        .route("/auth/callback/{org}", get(signin::callback))
        .route("/auth/logout", post(signin::logout))
        .route("/auth/handoff/{id}", get(crate::handoff::code_for))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(crate::readiness::readyz))
        .route("/metrics", get(metrics_for_admins))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            device::ensure_cookie,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            signin::csrf,
        ))
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            security_headers,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(move |req, next| {
            within(request_timeout, req, next)
        }))
        .with_state(state)
}

/// A request (reading its body included) that takes longer than `limit` is
/// answered 408 and its connection freed: a body sent a byte at a time cannot
/// hold a connection open. A WebSocket's handshake answers at once; the socket
/// that follows is not a request any more.
async fn within(limit: Duration, req: Request, next: axum::middleware::Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            let mut res = api_error(StatusCode::REQUEST_TIMEOUT, "the request took too long");
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            res
        }
    }
}

/// HSTS when Convene serves TLS itself: browsers then use https for this host
/// for a year, whatever link they were given. Without `includeSubDomains`:
/// the names below Convene's host may belong to the department's other hosts
/// (or Convene may run on the department's own domain), and forcing https on
/// all of them for a year is for whoever runs the domain to decide, not a
/// meeting server. Not sent over plain http (browsers ignore it there).
const HSTS: &str = "max-age=31536000";

const CSP: &str = "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; \
     connect-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The pages' policy, with `connect` added to where they may connect.
pub(crate) fn csp(connect: &str) -> String {
    if connect.is_empty() {
        return CSP.to_string();
    }
    CSP.replace(
        "connect-src 'self';",
        &format!("connect-src 'self' {connect};"),
    )
}

async fn security_headers(State(state): State<Arc<AppState>>, mut res: Response) -> Response {
    let h = res.headers_mut();
    if state.serves_tls {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    // Nothing from another origin, no inline script or style. `data:` only
    // for images: the pages' empty favicon (`data:,`), so browsers ask for
    // none. Cameras and screens play through `srcObject`, which CSP does not
    // govern; `blob:` media is a video file a sharer picked, played from a
    // URL the page made of it (web/videofile.js).
    // A route that set a policy of its own (the records report) keeps it.
    // In a cluster, pages may also reach the other nodes (only to see
    // which answers when their own is lost).
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(match &state.cluster {
            Some(link) => link.csp.clone(),
            None => HeaderValue::from_static(CSP),
        });
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Join links carry the meeting id: never leak them to other sites.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(self), microphone=(self), display-capture=(self)"),
    );
    res
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MeetingView {
    id: String,
    title: String,
    join_url: String,
    /// Whether joining needs the passcode (shared apart from the link).
    passcode_required: bool,
    ended: bool,
    settings: Settings,
    /// The handling level: its name and banner, shown at every stage.
    level: convene_meeting::policy::LevelView,
    /// The organisation that runs this server, and the server's address.
    hosted_by: String,
    server: String,
    /// Only in the answer to creating the meeting: the host key is stored as a
    /// hash and cannot be shown again.
    #[serde(skip_serializing_if = "Option::is_none")]
    host_key: Option<String>,
    /// The join link with the host key in its fragment (never sent to a server).
    #[serde(skip_serializing_if = "Option::is_none")]
    host_url: Option<String>,
    /// In a cluster, when another node hosts the meeting: where to open
    /// its socket (and its page).
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    /// In a cluster: the nodes a page may go to, resuming, if the one it
    /// is on is lost.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    nodes: Vec<String>,
    /// In a cluster, on an edge of the meeting (cascading): the meeting's
    /// node, where a host's page goes (`?stage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    edge_of: Option<String>,
}

#[derive(Serialize)]
struct ApiError {
    error: String,
}

pub(crate) fn api_error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(ApiError { error: msg.into() })).into_response()
}

/// An error that says when to come back (`Retry-After`, in seconds).
pub(crate) fn retry_later(status: StatusCode, msg: &str, seconds: &'static str) -> Response {
    let mut res = api_error(status, msg);
    res.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
    res
}

/// A redirect that carries or sets a sign-in is not kept by any cache.
pub(crate) fn no_store(mut res: Response) -> Response {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The hashing threads were all taken for longer than a caller waits.
fn busy() -> Response {
    retry_later(
        StatusCode::SERVICE_UNAVAILABLE,
        "the server is busy; try again in a few seconds",
        "5",
    )
}

fn view(state: &AppState, m: Meeting, host_key: Option<String>) -> MeetingView {
    let join_url = format!("{}/m/{}", state.public_url, m.id);
    MeetingView {
        host_url: host_key.as_ref().map(|k| format!("{join_url}#host={k}")),
        host_key,
        join_url,
        passcode_required: m.passcode_hash.is_some(),
        ended: m.ended_at.is_some(),
        settings: serde_json::from_str(&m.settings).unwrap_or_default(),
        level: state.limits.policy.level_or_lowest(&m.level).view(),
        hosted_by: state.auth.home_name().to_string(),
        server: state.public_url.clone(),
        id: m.id,
        title: m.title,
        node: None,
        nodes: Vec::new(),
        edge_of: None,
    }
}

/// In a cluster: `None` when this node hosts the meeting (or has just taken
/// it), the URL of the node that does otherwise; an answer saying "try
/// again" when the cluster cannot tell (Redis unreachable, or every node
/// draining).
pub(crate) async fn elsewhere(
    state: &AppState,
    id: &str,
    newcomer: bool,
) -> Result<Option<String>, Response> {
    Ok(match placement(state, id, newcomer).await? {
        Placement::There(url) => Some(url),
        Placement::Here | Placement::Edge { .. } => None,
    })
}

/// Where people who come for meeting `id` go: here (it is hosted here, or
/// this node is its edge), or the URL of another node (the one that hosts
/// it, or the edge it sends a `newcomer` to: a page being loaded, which is
/// where a newcomer is placed; a socket or a lookup comes from a page
/// already placed, maybe a host's). An answer saying "try again" when the
/// cluster cannot tell.
pub(crate) async fn placement(
    state: &AppState,
    id: &str,
    newcomer: bool,
) -> Result<Placement, Response> {
    let Some(link) = &state.cluster else {
        return Ok(Placement::Here);
    };
    match link.route(id).await {
        Ok(convene_cluster::Route::Here) if newcomer => Ok(
            match crate::cascade::newcomers_edge(state, link, id).await {
                Some(url) => Placement::There(url),
                None => Placement::Here,
            },
        ),
        Ok(convene_cluster::Route::Here) => Ok(Placement::Here),
        Ok(convene_cluster::Route::There(url)) => {
            Ok(match crate::cascade::hosted_by(state, link, id).await {
                Some(host) => Placement::Edge { host, url },
                None => Placement::There(url),
            })
        }
        Err(e) => {
            tracing::warn!(meeting = id, "cluster: {e}");
            Err(retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "the meeting cannot be reached just now; try again in a moment",
                "2",
            ))
        }
    }
}

pub(crate) async fn find(state: &Arc<AppState>, id: &str) -> Result<Meeting, Response> {
    if !is_meeting_id(id) {
        return Err(api_error(StatusCode::NOT_FOUND, "no such meeting"));
    }
    let st = state.clone();
    let id = id.to_string();
    match tokio::task::spawn_blocking(move || st.storage.meeting(&id)).await {
        Ok(Ok(Some(m))) => Ok(m),
        Ok(Ok(None)) => Err(api_error(StatusCode::NOT_FOUND, "no such meeting")),
        // The database is away (or failing): the join may work in a moment.
        Ok(Err(e)) => {
            tracing::error!("storage: {e}");
            Err(retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "the meeting cannot be reached just now; try again in a moment",
                "2",
            ))
        }
        Err(_) => Err(api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage error",
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    meeting: Option<String>,
    format: Option<String>,
}

/// Prometheus metrics on the web port: for holders of the admin token
/// (`--metrics-listen` serves them on an address of their own instead).
async fn metrics_for_admins(_: Admin, State(state): State<Arc<AppState>>) -> Response {
    crate::metrics::answer(&state)
}

/// Load and media counters for monitoring. Counters run from the server's start;
/// rates are differences between two reads.
async fn admin_stats(_: Admin, State(state): State<Arc<AppState>>) -> Response {
    let meetings_running = state.registry.lock().meetings.len();
    let m = state.sfu.stats();
    let c = &state.connections;
    let w = state.writer.stats();
    let n = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    Json(serde_json::json!({
        "meetingsRunning": meetings_running,
        "connections": {
            "open": n(&c.open),
            "accepted": n(&c.accepted),
            "refusedAtTotalCap": n(&c.refused_total_cap),
            "refusedAtAddressCap": n(&c.refused_address_cap),
        },
        "audit": {
            "commits": n(&w.commits),
            "writes": n(&w.writes),
            "queueFull": n(&w.queue_full),
            "refusalsTallied": n(&w.refusals_tallied),
            "refusalsDropped": n(&w.refusals_dropped),
        },
        "media": {
            "workers": state.sfu.handles().count(),
            "connections": m.connections,
            "tracks": m.tracks,
            "datagramsIn": m.datagrams_in,
            "unroutable": m.unroutable,
            "rtpIn": m.rtp_in,
            "rtpForwarded": m.rtp_forwarded,
            "rtpRelayed": m.rtp_relayed,
            "rtpDroppedLate": m.rtp_dropped_late,
            "rtpDroppedPaused": m.rtp_dropped_paused,
            "rtpDroppedUnpublished": m.rtp_dropped_unpublished,
            "tcpConnections": m.tcp_connections,
            "tcpFramesDropped": m.tcp_frames_dropped,
        },
    }))
    .into_response()
}

/// Audit export for records management.
async fn admin_audit(
    _: Admin,
    State(state): State<Arc<AppState>>,
    query: Result<axum::extract::Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(axum::extract::Query(q)) = query else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "query: meeting=<id>&format=jsonl|csv",
        );
    };
    let format = q.format.unwrap_or_else(|| "jsonl".into());
    if format != "jsonl" && format != "csv" {
        return api_error(StatusCode::BAD_REQUEST, "format is jsonl or csv");
    }
    let st = state.clone();
    let result = tokio::task::spawn_blocking(move || {
        let records = st.storage.audit_records(q.meeting.as_deref())?;
        if format == "csv" {
            Ok((
                "text/csv; charset=utf-8",
                convene_storage::audit::to_csv(&records)?,
            ))
        } else {
            Ok((
                "application/x-ndjson",
                convene_storage::audit::to_jsonl(&records),
            ))
        }
    })
    .await;
    match result {
        Ok(Ok((mime, body))) => ([(header::CONTENT_TYPE, mime)], body).into_response(),
        Ok(Err::<_, convene_storage::StorageError>(e)) => {
            tracing::error!("audit export: {e}");
            api_error(StatusCode::INTERNAL_SERVER_ERROR, "export failed")
        }
        Err(_) => api_error(StatusCode::INTERNAL_SERVER_ERROR, "export failed"),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateMeeting {
    title: String,
    /// Optional; digits or a phrase.
    #[serde(default)]
    passcode: Option<String>,
    #[serde(default)]
    settings: Option<Settings>,
    /// Handling level id (default: the policy's lowest).
    #[serde(default)]
    level: Option<String>,
    /// Raise the settings to what the level requires instead of refusing.
    #[serde(default)]
    raise: bool,
}

async fn create_meeting(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    body: Result<Json<CreateMeeting>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let session = match signin::session(&state, &headers, client) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    if !signin::may_create(&state, session.as_ref()) {
        return api_error(
            StatusCode::UNAUTHORIZED,
            format!("sign in with {} to create meetings", state.auth.home_name()),
        );
    }
    let anonymous = session.as_ref().is_none_or(|s| !s.identity.is_verified());
    if anonymous && !state.anonymous_creations.allow(client) {
        return retry_later(
            StatusCode::TOO_MANY_REQUESTS,
            "too many meetings created from your address: try again in a minute",
            "60",
        );
    }
    let req = match body {
        Ok(Json(req)) => req,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return api_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a request body is at most {MAX_BODY} bytes"),
            )
        }
        Err(_) => return api_error(StatusCode::BAD_REQUEST, "expected JSON: {\"title\": \"…\"}"),
    };
    let title = req.title.split_whitespace().collect::<Vec<_>>().join(" ");
    if title.is_empty() || title.chars().any(char::is_control) {
        return api_error(StatusCode::BAD_REQUEST, "please give the meeting a title");
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return api_error(
            StatusCode::BAD_REQUEST,
            format!("a title is at most {MAX_TITLE_CHARS} characters"),
        );
    }
    let st = state.clone();
    let settings = req.settings.unwrap_or_default();
    if settings.max_participants == 0 {
        return api_error(
            StatusCode::BAD_REQUEST,
            "maxParticipants must be at least 1",
        );
    }
    let passcode = req.passcode.filter(|p| !p.is_empty());
    let policy = state.limits.policy.clone();
    let level = match req.level.as_deref() {
        None => policy.lowest(),
        Some(id) => match policy.level(id) {
            Some(l) => l,
            None => {
                let ids: Vec<&str> = policy.levels().iter().map(|l| l.id.as_str()).collect();
                return api_error(
                    StatusCode::BAD_REQUEST,
                    format!("no such level; this server's levels are {}", ids.join(", ")),
                );
            }
        },
    };
    let settings = if req.raise {
        level.raise(&settings)
    } else {
        settings
    };
    if let Some(why) = settings.conflict() {
        return api_error(StatusCode::BAD_REQUEST, why);
    }
    let unmet = level.unmet(&convene_meeting::policy::Proposal {
        settings: &settings,
        has_passcode: passcode.is_some(),
        sign_in_available: state.limits.sign_in_available,
    });
    if !unmet.is_empty() {
        let list: Vec<String> = unmet.into_iter().map(|u| u.0).collect();
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({
                "error": format!("this meeting does not meet {}: {}", level.name, list.join("; ")),
                "unmet": list,
            })),
        )
            .into_response();
    }
    let level_id = level.id.clone();
    let creator_name = session
        .as_ref()
        .and_then(|s| s.identity.subject.clone())
        .unwrap_or_else(|| "anonymous".into());
    let settings = serde_json::to_string(&settings).unwrap_or_else(|_| "{}".into());
    // A signed-in creator is the meeting's host on any device they sign in on,
    // not only through the host link.
    let creator = session
        .as_ref()
        .filter(|s| s.identity.is_verified())
        .map(|s| s.key.clone());
    // Argon2 runs on the bounded hashing threads, never more at once.
    let hash = match passcode {
        None => None,
        Some(p) => match state
            .hashers
            .run(move |scratch| passcode::hash_with(scratch, &p))
            .await
        {
            Ok(Ok(h)) => Some(h),
            Ok(Err(e)) => return api_error(StatusCode::BAD_REQUEST, e.to_string()),
            Err(crate::hashing::Busy) => return busy(),
        },
    };
    let created = tokio::task::spawn_blocking(move || {
        let (m, key) =
            st.storage
                .create_meeting_at(&title, hash.as_deref(), &settings, &level_id)?;
        if let Some(creator) = creator {
            st.storage.set_grant(&m.id, &creator, Some("host"))?;
        }
        Ok::<_, convene_storage::StorageError>((m, key))
    })
    .await;
    match created {
        Ok(Ok((m, host_key))) => {
            // On disk before anyone hears of the meeting, as host actions are.
            state
                .writer
                .commit(vec![crate::writer::Item::Audit(
                    crate::writer::AuditEntry {
                        meeting: m.id.clone(),
                        actor: creator_name,
                        subject: "-".into(),
                        event: "create".into(),
                        outcome: "created".into(),
                        detail: format!("level: {}", m.level),
                    },
                )])
                .await;
            // The answer carries the host key: no cache may keep it.
            (
                StatusCode::CREATED,
                [(header::CACHE_CONTROL, "no-store")],
                Json(view(&state, m, Some(host_key))),
            )
                .into_response()
        }
        _ => api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not create the meeting",
        ),
    }
}

/// The deployment's handling levels, lowest first, with their requirements.
async fn policy_view(State(state): State<Arc<AppState>>) -> Response {
    let levels: Vec<serde_json::Value> = state
        .limits
        .policy
        .levels()
        .iter()
        .map(|l| {
            let view = l.view();
            serde_json::json!({
                "id": view.id, "name": view.name, "banner": view.banner,
                // The name and banner text per language, where the policy gives them.
                "translations": view.translations,
                // Why meetings at this level can never be held here (null when they can).
                "unavailable": l.unavailable(state.limits.sign_in_available),
                "requires": {
                    "passcode": l.passcode_required, "lobby": l.lobby_required,
                    "lobbyBypass": l.lobby_bypass, "guestsAllowed": l.guests_allowed,
                    "mfa": l.mfa_required, "e2ee": l.e2ee_required,
                    "recordingAllowed": l.recording_allowed, "chatAllowed": l.chat_allowed,
                    "chatRetentionDays": l.chat_retention_days, "screenShare": l.screen_share,
                    "maxParticipants": l.max_participants,
                },
            })
        })
        .collect();
    Json(serde_json::json!({ "levels": levels })).into_response()
}

async fn get_meeting(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match find(&state, &id).await {
        Ok(m) => match placement(&state, &id, false).await {
            Ok(placed) => Json(MeetingView {
                node: match &placed {
                    Placement::There(url) => Some(url.clone()),
                    _ => None,
                },
                // A page on an edge that holds a host key goes to the
                // meeting's node (the fragment carries the key): only to a
                // node trusted with one.
                edge_of: match placed {
                    Placement::Edge { url, .. } if crate::handoff::carries(&state, &url) => {
                        Some(url)
                    }
                    _ => None,
                },
                nodes: match &state.cluster {
                    Some(link) => link.fallbacks().await,
                    None => Vec::new(),
                },
                ..view(&state, m, None)
            })
            .into_response(),
            Err(r) => r,
        },
        Err(r) => r,
    }
}

async fn meeting_page(
    State(state): State<Arc<AppState>>,
    ClientIp(client): ClientIp,
    Path(id): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    // On the way in from another node with a sign-in (handoff.rs).
    if let Some(res) = crate::handoff::arriving(&state, &headers, client, &id, uri.query()) {
        return res;
    }
    match find(&state, &id).await {
        // The page, and so its socket, belongs on the meeting's node; a
        // signed-in person stays signed in there.
        // A page that says it is for the stage (`?stage`: a host's, sent
        // from an edge) is not sent to an edge.
        Ok(_) => match elsewhere(&state, &id, !crate::cascade::for_stage(uri.query())).await {
            Ok(None) => assets::serve("meeting.html"),
            Ok(Some(node)) => {
                let query =
                    match crate::handoff::leaving(&state, &headers, client, &node, uri.query()) {
                        Ok(q) => q,
                        Err(e) => return e.page(&headers),
                    };
                // A redirect keeps the address's fragment, where a host key
                // or a resume token travels: only to a node trusted with a
                // sign-in (--node-urls). An empty fragment replaces it on the
                // way to a node that is merely allowed.
                let cut = if crate::handoff::carries(&state, &node) {
                    ""
                } else {
                    "#"
                };
                no_store(
                    axum::response::Redirect::temporary(&format!("{node}/m/{id}{query}{cut}"))
                        .into_response(),
                )
            }
            Err(r) => page_error(&headers, r),
        },
        Err(r) if r.status() == StatusCode::NOT_FOUND => {
            let mut page = assets::serve("not-found.html");
            *page.status_mut() = StatusCode::NOT_FOUND;
            page
        }
        Err(r) => page_error(&headers, r),
    }
}

/// An API's error where a person opened a page: "try again" in words.
fn page_error(headers: &HeaderMap, r: Response) -> Response {
    if r.status() == StatusCode::SERVICE_UNAVAILABLE {
        crate::problem_page::meeting_unavailable(headers)
    } else {
        r
    }
}

async fn signalling(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ClientIp(client): ClientIp,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !same_origin(&headers, &state.public_url) {
        return api_error(
            StatusCode::FORBIDDEN,
            "cross-origin signalling is not allowed",
        );
    }
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        // Clients back off and try again: the next process takes them.
        return api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is restarting; try again in a moment",
        );
    }
    let meeting = match find(&state, &id).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let edge = match placement(&state, &id, false).await {
        Ok(Placement::Here) => None,
        // This node serves part of the meeting's audience: its edge task
        // takes the socket.
        Ok(Placement::Edge { host, .. }) => match crate::cascade::ensure_edge(&state, &id, &host) {
            Some(edge) => Some(edge),
            None => {
                return api_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the meeting cannot be reached just now; try again in a moment",
                )
            }
        },
        // 421: this node is not the one for this meeting; `node` is.
        Ok(Placement::There(node)) => {
            return (
                StatusCode::MISDIRECTED_REQUEST,
                Json(serde_json::json!({
                    "error": "the meeting is on another node",
                    "node": node,
                })),
            )
                .into_response()
        }
        Err(r) => return r,
    };
    // Known before the upgrade: a person whose sign-in cannot be checked
    // just now is asked to try again, not let in as a guest.
    let session = match signin::session(&state, &headers, client) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    upgrade
        .max_message_size(ws::MAX_FRAME)
        .max_frame_size(ws::MAX_FRAME)
        // Signalling is mostly small messages: tungstenite's 128 KiB default buffers
        // were most of a participant's memory. Buffers still grow for a large SDP.
        .read_buffer_size(ws::READ_BUFFER)
        .write_buffer_size(0)
        .on_upgrade(move |socket| {
            // A signed-in person is known by their account; anyone else by
            // their browser's device cookie.
            let (key, identity) = match session {
                Some(s) => (Some(s.key), s.identity),
                None => (
                    device::person_key(&state, &headers),
                    convene_meeting::identity::Identity::guest(),
                ),
            };
            // Every log line about this socket names its meeting, and its
            // participant once joined (ws::run records it).
            let span = tracing::info_span!(
                "socket",
                meeting = %crate::logging::meeting_tag(&meeting.id),
                participant = tracing::field::Empty
            );
            tracing::Instrument::instrument(
                ws::run(socket, state, meeting, client, key, identity, edge),
                span,
            )
        })
}

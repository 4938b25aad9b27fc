//! Exports for records management and subject access requests: `convene
//! export meeting ID` / `convene export person NAME-OR-EMAIL`, and the same
//! through the admin API. JSON Lines for records systems (one object per
//! line, each with a `kind`), or one self-contained HTML report to read,
//! print or file. What is in them is the storage's [`MeetingExport`] and
//! [`PersonExport`]; this is their form.

use std::fmt::Write as _;
use std::process::ExitCode;

use convene_storage::{
    AuditRecord, ChatKey, MeetingExport, MeetingFacts, Participation, PersonExport, Storage,
};
use serde_json::json;

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::admin::Admin;
use crate::config::{Config, RecordsFormat};
use crate::http::api_error;
use crate::utc::utc;
use crate::AppState;

/// What every export says about chat.
const CHAT: &str = "kept only in meetings whose handling level keeps chat (chat_retention_days), \
                    until then; elsewhere it lives only in the participants' browsers";

/// Kept chat of `meeting` as JSON (each a chat message as the meeting sent
/// it), oldest first; or why it cannot be read.
fn kept_chat(
    storage: &Storage,
    key: Option<&ChatKey>,
    meeting: &str,
    now_ms: i64,
) -> Result<Vec<serde_json::Value>, convene_storage::StorageError> {
    let Some(key) = key else {
        return Ok(Vec::new());
    };
    let (kept, _) = storage.kept_chat(key, meeting, now_ms, None)?;
    Ok(kept
        .into_iter()
        .filter_map(|k| serde_json::from_slice(&k.message).ok())
        .collect())
}

pub fn meeting_jsonl(
    e: &MeetingExport,
    chat: &[serde_json::Value],
    id: &str,
    now_ms: i64,
) -> String {
    let header = json!({
        "kind": "export", "of": "meeting", "id": id, "logTag": crate::logging::meeting_tag(id), "generatedAt": utc(now_ms), "chat": CHAT,
        "meetingPurged": e.meeting.is_none(),
    });
    jsonl(&header, e.meeting.iter(), &e.participants, &e.audit, chat)
}

pub fn person_jsonl(e: &PersonExport, chat: &[serde_json::Value], now_ms: i64) -> String {
    let header = json!({
        "kind": "export", "of": "person", "query": e.query, "generatedAt": utc(now_ms), "chat": CHAT,
    });
    jsonl(
        &header,
        e.meetings.iter(),
        &e.participations,
        &e.audit,
        chat,
    )
}

/// One export as JSON Lines: the header, then each object tagged with its kind.
fn jsonl<'a>(
    header: &serde_json::Value,
    meetings: impl Iterator<Item = &'a MeetingFacts>,
    participants: &[Participation],
    audit: &[AuditRecord],
    chat: &[serde_json::Value],
) -> String {
    let mut out = line(header);
    for m in meetings {
        out += &line(&tagged("meeting", m));
    }
    for p in participants {
        out += &line(&tagged("participant", p));
    }
    for r in audit {
        out += &line(&tagged("audit", r));
    }
    for c in chat {
        out += &line(&tagged("chat", c));
    }
    out
}

fn tagged(kind: &str, v: &impl serde::Serialize) -> serde_json::Value {
    let mut v = serde_json::to_value(v).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("kind".into(), kind.into());
    }
    v
}

fn line(v: &serde_json::Value) -> String {
    format!("{v}\n")
}

pub fn meeting_html(
    e: &MeetingExport,
    chat: &[serde_json::Value],
    id: &str,
    now_ms: i64,
) -> String {
    let title = match &e.meeting {
        Some(m) => format!("Meeting record: {}", m.title),
        None => format!("Meeting record: {id}"),
    };
    let mut body = String::new();
    match &e.meeting {
        Some(m) => meeting_facts(&mut body, m),
        None => {
            let _ = write!(
                body,
                "<p>The meeting <code>{}</code> itself was purged under the retention policy; \
                 what the audit log still holds about it follows.</p>",
                esc(id)
            );
        }
    }
    participants(&mut body, "People who took part", &e.participants);
    chat_rows(&mut body, chat);
    audit_rows(&mut body, &e.audit);
    page(&title, now_ms, &body)
}

pub fn person_html(e: &PersonExport, chat: &[serde_json::Value], now_ms: i64) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<p>Every meeting and audit row kept on this server that names <strong>{}</strong> \
         (as the name shown in a meeting or as a verified sign-in, ignoring case).</p>",
        esc(&e.query)
    );
    if e.audit.is_empty() {
        body += "<p>Nothing kept names them.</p>";
    }
    for m in &e.meetings {
        meeting_facts(&mut body, m);
    }
    participants(&mut body, "Where they took part", &e.participations);
    chat_rows(&mut body, chat);
    audit_rows(&mut body, &e.audit);
    page(&format!("Records about {}", e.query), now_ms, &body)
}

fn chat_rows(out: &mut String, chat: &[serde_json::Value]) {
    if chat.is_empty() {
        out.push_str("<section><h2>Chat</h2><p>No chat is kept.</p></section>");
        return;
    }
    out.push_str(
        "<section><h2>Chat</h2><table><thead><tr><th scope=\"col\">Sent (UTC)</th>\
         <th scope=\"col\">Participant</th><th scope=\"col\">Name</th>\
         <th scope=\"col\">Message</th></tr></thead><tbody>",
    );
    for c in chat {
        let s = |k: &str| c[k].as_str().unwrap_or("").to_string();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            utc(c["sentAt"].as_i64().unwrap_or(0)),
            esc(&s("participantId")),
            esc(&s("name")),
            esc(&s("text")),
        );
    }
    out.push_str("</tbody></table></section>");
}

fn meeting_facts(out: &mut String, m: &MeetingFacts) {
    let _ = write!(
        out,
        "<section><h2>{title}</h2><dl>\
         <dt>Meeting</dt><dd><code>{id}</code></dd>\
         <dt>Created</dt><dd>{created}</dd>\
         <dt>Ended</dt><dd>{ended}</dd>\
         <dt>Handling level</dt><dd>{level}</dd>\
         <dt>Passcode</dt><dd>{passcode}</dd>\
         <dt>Locked</dt><dd>{locked}</dd>\
         <dt>Settings</dt><dd><code>{settings}</code></dd>\
         </dl></section>",
        title = esc(&m.title),
        id = esc(&m.id),
        created = utc(m.created_at),
        ended = m.ended_at.map_or("not ended".into(), utc),
        level = if m.level.is_empty() {
            "(the lowest)".to_string()
        } else {
            esc(&m.level)
        },
        passcode = if m.has_passcode {
            "set (kept only as a hash, not exported)"
        } else {
            "none"
        },
        locked = if m.locked { "yes" } else { "no" },
        settings = esc(&m.settings.to_string()),
    );
}

fn participants(out: &mut String, heading: &str, people: &[Participation]) {
    let _ = write!(
        out,
        "<section><h2>{}</h2><table><thead><tr><th scope=\"col\">Meeting</th>\
         <th scope=\"col\">Participant</th><th scope=\"col\">Name</th>\
         <th scope=\"col\">Identity</th><th scope=\"col\">First joined</th>\
         <th scope=\"col\">Last left</th></tr></thead><tbody>",
        esc(heading)
    );
    for p in people {
        let _ = write!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&p.meeting),
            esc(&p.participant),
            esc(&p.name),
            esc(&p.identity),
            utc(p.first_joined),
            p.last_left.map_or("(no leave recorded)".into(), |t| format!(
                "{} ({})",
                utc(t),
                esc(p.left_as.as_deref().unwrap_or(""))
            )),
        );
    }
    out.push_str("</tbody></table></section>");
}

fn audit_rows(out: &mut String, rows: &[AuditRecord]) {
    let _ = write!(
        out,
        "<section><h2>Audit log ({} rows)</h2><table><thead><tr><th scope=\"col\">Row</th>\
         <th scope=\"col\">Time (UTC)</th><th scope=\"col\">Meeting</th><th scope=\"col\">Actor</th>\
         <th scope=\"col\">Subject</th><th scope=\"col\">Event</th><th scope=\"col\">Outcome</th>\
         <th scope=\"col\">Detail</th></tr></thead><tbody>",
        rows.len()
    );
    for r in rows {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.seq,
            utc(r.at),
            esc(&r.meeting),
            esc(&r.actor),
            esc(&r.subject),
            esc(&r.event),
            esc(&r.outcome),
            esc(&r.detail),
        );
    }
    out.push_str(
        "</tbody></table><p>Each row's hash (in the JSON Lines export) chains it to the one \
         before; <code>convene audit verify</code> checks the whole log.</p></section>",
    );
}

/// The report's one style sheet, inline so that a saved report stands alone.
const REPORT_STYLE: &str =
    "body{font-family:system-ui,sans-serif;margin:2rem;color:#1a1a1a;background:#fff}\
table{border-collapse:collapse;width:100%;margin-bottom:1rem}\
th,td{border:1px solid #767676;padding:.3rem .5rem;text-align:left;vertical-align:top}\
dt{font-weight:bold}dd{margin:0 0 .5rem 0}";

/// The Content-Security-Policy a report is served with: nothing but its own
/// style sheet, allowed by its hash (the site's policy allows no inline
/// style, which would leave the report unstyled).
pub(crate) fn report_csp() -> String {
    use base64::Engine;
    use sha2::Digest;
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(REPORT_STYLE));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

fn page(title: &str, now_ms: i64, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title><style>{style}</style></head><body><main><h1>{t}</h1>\
         <p>Exported by Convene at {at}. Chat: {chat}.</p>{body}</main></body></html>\n",
        t = esc(title),
        style = REPORT_STYLE,
        at = utc(now_ms),
        chat = CHAT,
    )
}

/// HTML text and attribute escaping.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What an export command or request asked for, checked.
pub enum Subject {
    Meeting(String),
    Person(String),
}

/// The export's text and media type, or why there is none (the error says
/// which input was wrong).
pub enum Outcome {
    Done { body: String, mime: &'static str },
    NotFound(String),
    Invalid(String),
}

pub fn run(
    storage: &Storage,
    what: Subject,
    format: RecordsFormat,
    now_ms: i64,
    chat_key: Option<&ChatKey>,
) -> Result<Outcome, convene_storage::StorageError> {
    let html = format == RecordsFormat::Html;
    let mime = if html {
        "text/html; charset=utf-8"
    } else {
        "application/x-ndjson"
    };
    match what {
        Subject::Meeting(id) => {
            if !convene_storage::is_meeting_id(&id) {
                return Ok(Outcome::Invalid(format!(
                    "{id:?} is not a meeting id (like hq4t-8mzc-w2nb)"
                )));
            }
            Ok(match storage.export_meeting(&id)? {
                None => Outcome::NotFound(format!("nothing is kept about a meeting {id} here")),
                Some(e) => {
                    let chat = kept_chat(storage, chat_key, &id, now_ms)?;
                    Outcome::Done {
                        body: if html {
                            meeting_html(&e, &chat, &id, now_ms)
                        } else {
                            meeting_jsonl(&e, &chat, &id, now_ms)
                        },
                        mime,
                    }
                }
            })
        }
        Subject::Person(q) => {
            let q = q.trim().to_string();
            if q.chars().count() < 2 || q.len() > 320 {
                return Ok(Outcome::Invalid(
                    "give the person's name as shown in meetings, or their sign-in (email), 2 to 320 characters".into(),
                ));
            }
            let e = storage.export_person(&q)?;
            // What they said, where it is kept.
            let mut chat = Vec::new();
            for p in &e.participations {
                chat.extend(
                    kept_chat(storage, chat_key, &p.meeting, now_ms)?
                        .into_iter()
                        .filter(|c| c["participantId"] == p.participant.as_str())
                        .map(|mut c| {
                            c["meeting"] = p.meeting.clone().into();
                            c
                        }),
                );
            }
            Ok(Outcome::Done {
                body: if html {
                    person_html(&e, &chat, now_ms)
                } else {
                    person_jsonl(&e, &chat, now_ms)
                },
                mime,
            })
        }
    }
}

/// `convene export meeting ID` / `convene export person QUERY`.
pub fn command(config: &Config, what: Subject, format: RecordsFormat) -> ExitCode {
    let storage = match config.open_storage() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("convene: {e}");
            return ExitCode::FAILURE;
        }
    };
    let key = match config.chat_key(false) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("convene: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(
        &storage,
        what,
        format,
        convene_storage::unix_millis(),
        key.as_ref(),
    ) {
        Ok(Outcome::Done { body, .. }) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Ok(Outcome::NotFound(why)) => {
            eprintln!("convene: {why}");
            ExitCode::FAILURE
        }
        Ok(Outcome::Invalid(why)) => {
            eprintln!("convene: {why}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("convene: export failed: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(serde::Deserialize)]
pub(crate) struct FormatQuery {
    format: Option<String>,
    q: Option<String>,
}

fn format_of(q: &FormatQuery) -> Option<RecordsFormat> {
    match q.format.as_deref() {
        None | Some("jsonl") => Some(RecordsFormat::Jsonl),
        Some("html") => Some(RecordsFormat::Html),
        Some(_) => None,
    }
}

/// `GET /api/admin/export/meeting/{id}?format=jsonl|html`.
pub(crate) async fn admin_meeting(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    query: Result<Query<FormatQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    answer(state, query, |_| Ok(Subject::Meeting(id))).await
}

/// `GET /api/admin/export/person?q=NAME-OR-EMAIL&format=jsonl|html`.
pub(crate) async fn admin_person(
    _: Admin,
    State(state): State<Arc<AppState>>,
    query: Result<Query<FormatQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    answer(state, query, |q| {
        q.q.clone()
            .map(Subject::Person)
            .ok_or("q=<name or email> is needed")
    })
    .await
}

async fn answer(
    state: Arc<AppState>,
    query: Result<Query<FormatQuery>, axum::extract::rejection::QueryRejection>,
    subject: impl FnOnce(&FormatQuery) -> Result<Subject, &'static str>,
) -> Response {
    let Ok(Query(q)) = query else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "query: format=jsonl|html (and q= for a person)",
        );
    };
    let Some(format) = format_of(&q) else {
        return api_error(StatusCode::BAD_REQUEST, "format is jsonl or html");
    };
    let what = match subject(&q) {
        Ok(w) => w,
        Err(why) => return api_error(StatusCode::BAD_REQUEST, why),
    };
    let st = state.clone();
    let done = tokio::task::spawn_blocking(move || {
        run(
            &st.storage,
            what,
            format,
            convene_storage::unix_millis(),
            Some(&st.chat_key),
        )
    })
    .await;
    match done {
        Ok(Ok(Outcome::Done { body, mime })) => {
            let mut res = (
                [
                    (header::CONTENT_TYPE, mime),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                body,
            )
                .into_response();
            if mime.starts_with("text/html") {
                if let Ok(csp) = HeaderValue::from_str(&report_csp()) {
                    res.headers_mut()
                        .insert(header::CONTENT_SECURITY_POLICY, csp);
                }
            }
            res
        }
        Ok(Ok(Outcome::NotFound(why))) => api_error(StatusCode::NOT_FOUND, &why),
        Ok(Ok(Outcome::Invalid(why))) => api_error(StatusCode::BAD_REQUEST, &why),
        Ok(Err(e)) => {
            tracing::error!("export: {e}");
            api_error(StatusCode::INTERNAL_SERVER_ERROR, "export failed")
        }
        Err(_) => api_error(StatusCode::INTERNAL_SERVER_ERROR, "export failed"),
    }
}

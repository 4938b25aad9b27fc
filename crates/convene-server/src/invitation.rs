//! Invitations: a text to copy (or send by `mailto:`) and an iCalendar file
//! (RFC 5545) with the join link, the meeting's handling level and how to
//! join from a browser. Never the passcode: an invitation is forwarded,
//! pasted into calendars and mailboxes, so it says that the passcode comes
//! apart from it, and the host is told to send it by another channel.
//!
//! Convene meetings have no scheduled time (the link works until a host ends
//! the meeting), so the event is an all-day one on the day the meeting was
//! created: RFC 5545 needs a DTSTART when no METHOD is given, and a date the
//! host moves to the real time in their calendar is truer than a made-up hour.
//!
//! Both are worded in the language asked for (`?lang=`, which the page sends
//! as its own), else the browser's, from the client's catalogues (words.rs):
//! the calendar file says what the page's invitation text says.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use convene_storage::Meeting;

use crate::words::Lang;
use crate::AppState;

/// `?lang=en|nl|sv`: the language of the page that asks.
#[derive(serde::Deserialize)]
pub(crate) struct LangQuery {
    lang: Option<String>,
}

/// What an invitation says, from the meeting and the server.
#[derive(Debug, Clone)]
pub struct Invitation {
    pub id: String,
    pub title: String,
    pub join_url: String,
    pub level: String,
    pub hosted_by: String,
    pub server: String,
    pub passcode_required: bool,
    /// When the meeting was created (seconds since the Unix epoch).
    pub created_at: i64,
    pub lang: Lang,
}

impl Invitation {
    pub fn of(state: &AppState, m: &Meeting, lang: Lang) -> Self {
        let hosted_by = state.auth.home_name();
        Invitation {
            join_url: format!("{}/m/{}", state.public_url, m.id),
            level: state
                .limits
                .policy
                .level_or_lowest(&m.level)
                .name_in(lang.code())
                .to_string(),
            // A server without an organisation says so in the reader's language.
            hosted_by: if hosted_by == Lang::En.t("common.trial-host", &[]) {
                lang.t("common.trial-host", &[])
            } else {
                hosted_by.to_string()
            },
            lang,
            server: state.public_url.clone(),
            passcode_required: m.passcode_hash.is_some(),
            created_at: m.created_at,
            id: m.id.clone(),
            title: m.title.clone(),
        }
    }

    fn subject(&self) -> String {
        if self.title.is_empty() {
            self.lang.t("invite.subject-untitled", &[])
        } else {
            self.lang.t("invite.subject", &[("title", &self.title)])
        }
    }

    /// The invitation as plain text (lines end in `\n`).
    pub fn text(&self) -> String {
        let mut t = String::new();
        if !self.title.is_empty() {
            t += &format!("{}\n\n", self.title);
        }
        t += &format!(
            "{}\n",
            self.lang.t("invite.join", &[("url", &self.join_url)])
        );
        t += &format!(
            "{}\n",
            self.lang.t("invite.level", &[("level", &self.level)])
        );
        if !self.hosted_by.is_empty() {
            t += &format!(
                "{}\n",
                self.lang.t("invite.hosted-by", &[("org", &self.hosted_by)])
            );
        }
        t += &format!("\n{}\n", self.lang.t("invite.how", &[]));
        if self.passcode_required {
            t += &format!("\n{}\n", self.lang.t("invite.passcode", &[]));
        }
        let check = format!("{}/check", self.server);
        t += &format!("\n{}\n", self.lang.t("invite.check", &[("url", &check)]));
        t
    }

    /// A `mailto:` link with the subject and the text (no recipient).
    pub fn mailto(&self) -> String {
        format!(
            "mailto:?subject={}&body={}",
            percent(&self.subject()),
            percent(&self.text().replace('\n', "\r\n"))
        )
    }

    /// The iCalendar file; `now_ms` is its DTSTAMP.
    pub fn ics(&self, now_ms: i64) -> String {
        let host = self
            .server
            .split_once("://")
            .map_or(self.server.as_str(), |(_, rest)| rest)
            .trim_end_matches('/');
        let stamp = chrono::DateTime::from_timestamp_millis(now_ms)
            .unwrap_or_default()
            .format("%Y%m%dT%H%M%SZ");
        let day = chrono::DateTime::from_timestamp(self.created_at, 0)
            .unwrap_or_default()
            .date_naive();
        let summary = if self.title.is_empty() {
            self.lang.t("invite.ics-untitled", &[])
        } else {
            self.title.clone()
        };
        let lines = [
            "BEGIN:VCALENDAR".to_string(),
            "VERSION:2.0".into(),
            "PRODID:-//Convene//Convene invitation//EN".into(),
            "CALSCALE:GREGORIAN".into(),
            "BEGIN:VEVENT".into(),
            format!("UID:{}@{}", self.id, escape(host)),
            format!("DTSTAMP:{stamp}"),
            format!("DTSTART;VALUE=DATE:{}", day.format("%Y%m%d")),
            format!("SUMMARY:{}", escape(&summary)),
            format!(
                "DESCRIPTION;LANGUAGE={}:{}",
                self.lang.code(),
                escape(&self.text())
            ),
            format!("LOCATION:{}", escape(&self.join_url)),
            format!("URL:{}", self.join_url),
            "TRANSP:TRANSPARENT".into(),
            "END:VEVENT".into(),
            "END:VCALENDAR".into(),
        ];
        lines.iter().map(|l| fold(l)).collect()
    }
}

/// RFC 5545 3.3.11: backslash, semicolon, comma and newlines escaped in TEXT.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// RFC 5545 3.1: a content line of at most 75 octets, longer ones folded
/// (CRLF and a space), never inside a UTF-8 character; ends in CRLF.
fn fold(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + line.len() / 70 * 3 + 2);
    let mut used = 0;
    for c in line.chars() {
        let n = c.len_utf8();
        if used + n > 75 {
            out.push_str("\r\n ");
            used = 1;
        }
        out.push(c);
        used += n;
    }
    out.push_str("\r\n");
    out
}

/// Percent-encoding for a `mailto:` query value (RFC 6068: all but unreserved).
fn percent(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET /api/meetings/{id}/invitation`: the text, its subject and a `mailto:`.
pub(crate) async fn json(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Response {
    match crate::http::find(&state, &id).await {
        Ok(m) => {
            let inv = Invitation::of(&state, &m, Lang::of_request(q.lang.as_deref(), &headers));
            Json(serde_json::json!({
                "subject": inv.subject(),
                "text": inv.text(),
                "mailto": inv.mailto(),
                "passcodeRequired": inv.passcode_required,
            }))
            .into_response()
        }
        Err(r) => r,
    }
}

/// `GET /api/meetings/{id}/invitation.ics`: the calendar file, to download.
pub(crate) async fn ics(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<LangQuery>,
    headers: HeaderMap,
) -> Response {
    match crate::http::find(&state, &id).await {
        Ok(m) => {
            let lang = Lang::of_request(q.lang.as_deref(), &headers);
            let body = Invitation::of(&state, &m, lang).ics(convene_storage::unix_millis());
            let mut res = body.into_response();
            let h = res.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/calendar; charset=utf-8"),
            );
            if let Ok(v) =
                HeaderValue::from_str(&format!("attachment; filename=\"convene-{}.ics\"", m.id))
            {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            res
        }
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Invitation {
        Invitation {
            id: "abcd-efgh-jkmn".into(),
            title: "Budget; review, part 2 \\ draft — «Årsplan» ".repeat(3),
            join_url: "https://meet.example.org/m/abcd-efgh-jkmn".into(),
            level: "Official-Sensitive".into(),
            hosted_by: "Example Council".into(),
            server: "https://meet.example.org".into(),
            passcode_required: true,
            created_at: 1_764_806_400, // 2025-12-04
            lang: Lang::En,
        }
    }

    #[test]
    fn lines_are_folded_at_75_octets_with_crlf_and_never_inside_a_character() {
        let ics = sample().ics(1_764_820_800_000);
        assert!(ics.ends_with("END:VCALENDAR\r\n"));
        assert!(!ics.replace("\r\n", "").contains('\n'), "a bare LF");
        for line in ics.split("\r\n") {
            assert!(line.len() <= 75, "{} octets: {line}", line.len());
        }
        let unfolded = ics.replace("\r\n ", "");
        let summary = unfolded
            .lines()
            .find_map(|l| l.strip_prefix("SUMMARY:"))
            .unwrap();
        assert_eq!(summary, escape(&sample().title));
        assert!(summary.contains("Budget\\; review\\, part 2 \\\\ draft"));
        assert!(unfolded.contains("DTSTART;VALUE=DATE:20251204\r\n"));
        assert!(unfolded.contains("DTSTAMP:20251204T040000Z\r\n"));
    }

    #[test]
    fn the_text_and_file_come_in_the_language_asked() {
        let mut nl = sample();
        nl.lang = Lang::Nl;
        let t = nl.text();
        assert!(t.contains("Rubricering: Official-Sensitive\n"), "{t}");
        assert!(t.contains("Zo neemt u deel"), "{t}");
        assert!(nl.subject().starts_with("Uitnodiging: Budget"));
        let ics = nl.ics(0).replace("\r\n ", "");
        assert!(ics.contains("DESCRIPTION;LANGUAGE=nl:"), "{ics}");
        let mut sv = sample();
        sv.lang = Lang::Sv;
        sv.title.clear();
        assert!(sv.ics(0).contains("\r\nSUMMARY:Möte\r\n"));
        assert!(sv.text().contains("Skyddsnivå: Official-Sensitive"));
    }

    #[test]
    fn the_text_names_link_and_level_and_keeps_the_passcode_apart() {
        let t = sample().text();
        assert!(t.contains("https://meet.example.org/m/abcd-efgh-jkmn"));
        assert!(t.contains("Handling level: Official-Sensitive"));
        assert!(t.contains("no account"));
        assert!(t.contains("It is not in this invitation"));
        let mut open = sample();
        open.passcode_required = false;
        assert!(!open.text().contains("passcode"));
        assert!(sample()
            .mailto()
            .starts_with("mailto:?subject=Invitation%3A%20Budget%3B"));
        assert!(sample().mailto().contains("%0D%0A"));
    }
}

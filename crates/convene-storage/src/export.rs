//! What a records officer or a subject access request gets: a meeting's
//! metadata, who took part (with the identity each was verified as, and
//! when), and its audit rows; or, for one person, every meeting they took
//! part in and every row about them.
//!
//! People are found through the audit log: a `join` row names the
//! participant (`name: …; identity: …`), and every later row about them
//! carries their participant id, which is unique within the meeting. Chat is
//! not kept by the server, so no export holds any. Never exported: the
//! passcode's and host key's hashes (only whether there is a passcode).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::audit::{self, AuditRecord};
use crate::{Storage, StorageError};

/// A meeting's stored facts, without its secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MeetingFacts {
    pub id: String,
    pub title: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub ended_at: Option<i64>,
    /// The handling level's id (empty: the policy's lowest).
    pub level: String,
    pub locked: bool,
    pub has_passcode: bool,
    /// The settings as the meeting stored them (JSON).
    pub settings: serde_json::Value,
}

/// One participant of a meeting, as the audit log knows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Participation {
    pub meeting: String,
    /// The participant id within the meeting (`p1`, `p2`, …).
    pub participant: String,
    /// The name shown in the meeting (for a verified person, from their provider).
    pub name: String,
    /// What they were verified as: `guest (unverified)`, or `member|partner
    /// of ORG: SUBJECT, single-factor|multi-factor`.
    pub identity: String,
    pub first_joined: i64,
    /// Their last `leave` row (none: the log has none, e.g. still in it).
    pub last_left: Option<i64>,
    /// How they last left (`left`, `removed`, `ended`, …).
    pub left_as: Option<String>,
}

/// Everything kept about one meeting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MeetingExport {
    /// `None` when the meeting itself was purged and only audit rows remain.
    pub meeting: Option<MeetingFacts>,
    pub participants: Vec<Participation>,
    pub audit: Vec<AuditRecord>,
}

/// Everything kept that names one person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PersonExport {
    pub query: String,
    /// The meetings they took part in or created.
    pub meetings: Vec<MeetingFacts>,
    pub participations: Vec<Participation>,
    /// The rows about them: their own (as actor or subject), in log order.
    pub audit: Vec<AuditRecord>,
}

impl Storage {
    /// The export of meeting `id`; `None` when nothing at all is kept about it.
    pub fn export_meeting(&self, id: &str) -> Result<Option<MeetingExport>, StorageError> {
        let meeting = self.meeting(id)?.map(|m| MeetingFacts {
            id: m.id,
            title: m.title,
            created_at: m.created_at * 1000,
            ended_at: m.ended_at,
            level: m.level,
            locked: m.locked,
            has_passcode: m.passcode_hash.is_some(),
            settings: serde_json::from_str(&m.settings).unwrap_or(serde_json::Value::Null),
        });
        let rows = self.audit_records(Some(id))?;
        if meeting.is_none() && rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(MeetingExport {
            meeting,
            participants: participations(&rows),
            audit: rows,
        }))
    }

    /// Everything that names `query`: a participant whose shown name or
    /// verified subject (e.g. an email address) equals it, ignoring case and
    /// surrounding spaces; and the meetings they created (a meeting created
    /// but never joined is found by its creator's sign-in name only).
    pub fn export_person(&self, query: &str) -> Result<PersonExport, StorageError> {
        let wanted = query.trim().to_lowercase();
        // Candidates: meetings whose join or create rows mention the query,
        // compared in Rust (SQLite's lower() folds ASCII only: "ÉMILE" would
        // never find "Émile"); each is then matched exactly below.
        let candidates: Vec<String> = {
            let rows = self.with(|c| {
                c.rows(
                    "SELECT meeting, event, actor, detail FROM audit_log
                     WHERE event IN ('join', 'create') ORDER BY meeting",
                    &[],
                )
            })?;
            let mut ids: Vec<String> = Vec::new();
            for row in rows {
                let (meeting, event, actor, detail) =
                    (row.text(0)?, row.text(1)?, row.text(2)?, row.text(3)?);
                let hit = if event == "create" {
                    actor.trim().to_lowercase() == wanted
                } else {
                    detail.to_lowercase().contains(&wanted)
                };
                if hit && ids.last() != Some(&meeting) {
                    ids.push(meeting);
                }
            }
            ids
        };
        let mut out = PersonExport {
            query: query.trim().to_string(),
            meetings: Vec::new(),
            participations: Vec::new(),
            audit: Vec::new(),
        };
        for id in candidates {
            let rows = self.with(|c| audit::records(c, Some(&id)))?;
            let theirs: Vec<Participation> = participations(&rows)
                .into_iter()
                .filter(|p| names(p, &wanted))
                .collect();
            let ids: Vec<&str> = theirs.iter().map(|p| p.participant.as_str()).collect();
            // A meeting's creator is named by their sign-in (e.g. email): the
            // query, or the verified subject of a participation found by name.
            let mut creators: Vec<String> = theirs
                .iter()
                .filter_map(|p| subject_of(&p.identity))
                .map(str::to_lowercase)
                .collect();
            creators.push(wanted.clone());
            let about: Vec<AuditRecord> = rows
                .into_iter()
                .filter(|r| {
                    ids.contains(&r.actor.as_str())
                        || ids.contains(&r.subject.as_str())
                        || (r.event == "create"
                            && creators.contains(&r.actor.trim().to_lowercase()))
                })
                .collect();
            if about.is_empty() {
                continue;
            }
            if let Some(Some(m)) = self.export_meeting(&id)?.map(|e| e.meeting) {
                out.meetings.push(m);
            }
            out.participations.extend(theirs);
            out.audit.extend(about);
        }
        out.audit.sort_by_key(|r| r.seq);
        Ok(out)
    }
}

/// Whether participation `p` names the person `wanted` (lower case).
fn names(p: &Participation, wanted: &str) -> bool {
    p.name.trim().to_lowercase() == wanted
        || subject_of(&p.identity).is_some_and(|s| s.to_lowercase() == wanted)
}

/// SUBJECT of `member|partner of ORG: SUBJECT, single-factor|multi-factor`.
fn subject_of(identity: &str) -> Option<&str> {
    let (_, rest) = identity.split_once(": ")?;
    Some(rest.rsplit_once(", ")?.0)
}

/// The participants a meeting's rows show, in order of first joining.
fn participations(rows: &[AuditRecord]) -> Vec<Participation> {
    let mut by_id: BTreeMap<&str, Participation> = BTreeMap::new();
    for r in rows {
        match r.event.as_str() {
            // A participant's first admission or wait in the lobby:
            // `name: NAME; identity: IDENTITY` (a name may hold "; ", the
            // identity never holds "; identity: "). Refused joins (subject
            // "-") and resumes name no one new.
            "join" if r.subject != "-" => {
                let Some((name, identity)) = r
                    .detail
                    .strip_prefix("name: ")
                    .and_then(|d| d.rsplit_once("; identity: "))
                else {
                    continue;
                };
                by_id
                    .entry(r.subject.as_str())
                    .or_insert_with(|| Participation {
                        meeting: r.meeting.clone(),
                        participant: r.subject.clone(),
                        name: name.to_string(),
                        identity: identity.to_string(),
                        first_joined: r.at,
                        last_left: None,
                        left_as: None,
                    });
            }
            "leave" => {
                if let Some(p) = by_id.get_mut(r.subject.as_str()) {
                    p.last_left = Some(r.at);
                    p.left_as = Some(r.outcome.clone());
                }
            }
            _ => {}
        }
    }
    let mut all: Vec<Participation> = by_id.into_values().collect();
    all.sort_by_key(|p| (p.first_joined, p.participant.clone()));
    all
}

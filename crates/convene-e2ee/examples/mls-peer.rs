//! A Rust MLS member on stdin/stdout, for tests/e2e/e2ee-rust-interop.test.mjs:
//! the test relays the signalling messages between this member (openmls) and
//! browser code (web/e2ee/mls.js on ts-mls) in Node, with no server.
//!
//! One JSON command a line in; for each, the events it caused (one JSON a
//! line), then `{"event":"done"}`:
//!
//! - `{"cmd":"start","participantId":"r","name":"Rusty","roster":["a","r"]}`
//! - `{"cmd":"roster","ids":[...]}`: who the meeting's roster has (guests)
//! - `{"cmd":"server","msg":{...}}`: a server message (mls-*)
//! - `{"cmd":"chat","text":"..."}`
//! - `{"cmd":"seal","kind":"video"|"audio","context":0,"frame":hex}`: SFrame
//!   with this member's newest epoch key
//! - `{"cmd":"open","kind":"video"|"audio","data":hex}`
//!
//! Events: `send` (a message for the server), `epoch`, `chat`, `warning`,
//! `sealed`, `opened`, `refused`, `error`.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::time::Instant;

use convene_e2ee::{Claims, Event, FrameKeys, MediaKind, Member};
use serde_json::{json, Value};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

fn kind(v: &Value) -> MediaKind {
    if v["kind"] == "video" {
        MediaKind::Video
    } else {
        MediaKind::Audio
    }
}

struct Peer {
    member: Option<Member>,
    roster: BTreeSet<String>,
    keys: FrameKeys,
}

impl Peer {
    fn events(&mut self, events: Vec<Event>, out: &mut Vec<Value>) {
        for e in events {
            out.push(match e {
                Event::Send(msg) => json!({"event": "send", "msg": msg}),
                Event::Epoch(e) => {
                    self.keys.add_epoch(e.epoch, &e.sframe_secret, e.own_leaf, !e.removed.is_empty(), Instant::now());
                    json!({
                        "event": "epoch", "epoch": e.epoch,
                        "code": {"emoji": e.code.emoji, "digits": e.code.digits},
                        "members": e.members.iter().map(|m| json!({"leaf": m.leaf, "participantId": m.participant_id, "name": m.name})).collect::<Vec<_>>(),
                        "sframeSecret": hex(&e.sframe_secret), "ownLeaf": e.own_leaf,
                        "added": e.added, "removed": e.removed,
                    })
                }
                Event::Chat { from, text } => json!({"event": "chat", "from": from, "text": text}),
                Event::Warning(w) => {
                    if matches!(w.code, "removed" | "behind" | "rejoin" | "group-replaced") {
                        self.keys.clear();
                    }
                    json!({"event": "warning", "code": w.code, "detail": w.detail})
                }
            });
        }
    }

    fn command(&mut self, cmd: &Value, out: &mut Vec<Value>) -> Result<(), String> {
        let now = Instant::now();
        match cmd["cmd"].as_str().unwrap_or("") {
            "start" => {
                let pid = cmd["participantId"].as_str().ok_or("participantId")?;
                let name = cmd["name"].as_str().unwrap_or(pid);
                self.roster =
                    serde_json::from_value(cmd["roster"].clone()).map_err(|e| e.to_string())?;
                let (m, events) =
                    Member::start(Claims::guest(pid, name), now).map_err(|e| e.to_string())?;
                self.member = Some(m);
                self.events(events, out);
            }
            "roster" => {
                self.roster =
                    serde_json::from_value(cmd["ids"].clone()).map_err(|e| e.to_string())?
            }
            "server" => {
                let roster = self.roster.clone();
                let has = move |p: &str, c: &Claims| roster.contains(p) && c.l.is_none();
                let m = self.member.as_mut().ok_or("not started")?;
                let events = m.handle(&cmd["msg"], &has, now);
                self.events(events, out);
            }
            "chat" => {
                let m = self.member.as_mut().ok_or("not started")?;
                let msg = m
                    .send_chat(cmd["text"].as_str().unwrap_or(""))
                    .map_err(|e| e.to_string())?;
                out.push(json!({"event": "send", "msg": msg}));
            }
            "seal" => {
                let frame = unhex(cmd["frame"].as_str().unwrap_or("")).ok_or("frame: hex")?;
                let context = cmd["context"].as_u64().unwrap_or(0);
                let sealed = self
                    .keys
                    .encrypt(kind(cmd), context, &frame)
                    .ok_or("no key yet")?;
                out.push(json!({"event": "sealed", "data": hex(&sealed)}));
            }
            "open" => {
                let data = unhex(cmd["data"].as_str().unwrap_or("")).ok_or("data: hex")?;
                out.push(match self.keys.decrypt(kind(cmd), &data, now) {
                    Ok((frame, leaf)) => {
                        json!({"event": "opened", "frame": hex(&frame), "leaf": leaf})
                    }
                    Err(e) => json!({"event": "refused", "reason": e.to_string()}),
                });
            }
            other => return Err(format!("unknown command {other:?}")),
        }
        Ok(())
    }
}

fn main() {
    let mut peer = Peer {
        member: None,
        roster: BTreeSet::new(),
        keys: FrameKeys::new(),
    };
    let stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let mut out = Vec::new();
        match serde_json::from_str::<Value>(&line) {
            Ok(cmd) => {
                if let Err(e) = peer.command(&cmd, &mut out) {
                    out.push(json!({"event": "error", "message": e}));
                }
            }
            Err(e) => out.push(json!({"event": "error", "message": e.to_string()})),
        }
        out.push(json!({"event": "done"}));
        let mut w = stdout.lock();
        for v in out {
            let _ = writeln!(w, "{v}");
        }
        let _ = w.flush();
    }
}

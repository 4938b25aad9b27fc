//! A broadcast crosses to an edge once, not once per attendee there.
//!
//! The room sends a broadcast (someone speaking, the meeting locked) to each
//! member's socket; for sockets on an edge that is one message through Redis
//! each, thousands for a large webinar. The sending task coalesces what waits
//! for it: the same text to several sockets of one meeting on one node goes
//! as one [`Wire::Texts`]. Each socket still gets its messages in the order
//! they were sent: a group goes out before any later message for one of its
//! sockets, and every message that is not a socket's text (a join's answer,
//! a media action, a close, a relay's answer) goes after every group opened
//! before it. A broadcast's copies share one text (the room's `Arc<str>`):
//! they are told apart from other texts by that, without reading them.

use std::collections::HashMap;
use std::sync::Arc;

use super::wire::Wire;

/// Sockets in one [`Wire::Texts`], at most.
const GROUP_MAX: usize = 2000;
/// A [`Wire::Texts`]'s JSON stays within this (a message between nodes may
/// hold 256 KiB: convene_cluster's `MAX_MESSAGE`), counting each socket's
/// number at [`SOCKET_BYTES`]: a long text goes to fewer sockets at once,
/// and one too long for any company alone, as it would have.
const GROUP_BYTES: usize = 192 << 10;
const SOCKET_BYTES: usize = 21;

/// How many sockets a group of `text` may hold: the text counted as it is
/// written in JSON (quotes and control characters escaped).
fn capacity(text: &str) -> usize {
    let written = serde_json::to_string(text).map_or(usize::MAX, |t| t.len());
    (GROUP_BYTES.saturating_sub(written) / SOCKET_BYTES).clamp(1, GROUP_MAX)
}

/// The same text: its allocation's address, unique while a group holds
/// the text (so no other text can take it).
fn text_key(text: &Arc<str>) -> usize {
    Arc::as_ptr(text) as *const u8 as usize
}

/// A group being gathered: its node, meeting, text and sockets, and how
/// many sockets it may take ([`capacity`]).
struct Group {
    to: String,
    meeting: String,
    text: Arc<str>,
    sockets: Vec<u64>,
    capacity: usize,
}

impl Group {
    fn into_wire(self) -> (String, Wire) {
        let Group {
            to,
            meeting,
            text,
            mut sockets,
            ..
        } = self;
        let wire = if sockets.len() == 1 {
            Wire::Text {
                meeting,
                socket: sockets.pop().unwrap_or_default(),
                text,
            }
        } else {
            Wire::Texts {
                meeting,
                sockets,
                text,
            }
        };
        (to, wire)
    }
}

/// `batch` (destination node, message), in order, with the same text to
/// several sockets of a meeting on a node merged; per socket, the order
/// stays.
pub fn coalesce(batch: Vec<(String, Wire)>) -> Vec<(String, Wire)> {
    let mut out = Vec::with_capacity(batch.len());
    // Open groups, oldest first (`None`: sent); by key, the open one's
    // index; by (node, meeting, socket), the group the socket is in.
    let mut groups: Vec<Option<Group>> = Vec::new();
    let mut open: HashMap<(String, String, usize), usize> = HashMap::new();
    let mut member: HashMap<(String, String, u64), usize> = HashMap::new();
    fn close(
        i: usize,
        groups: &mut [Option<Group>],
        open: &mut HashMap<(String, String, usize), usize>,
        member: &mut HashMap<(String, String, u64), usize>,
        out: &mut Vec<(String, Wire)>,
    ) {
        let Some(g) = groups[i].take() else { return };
        open.remove(&(g.to.clone(), g.meeting.clone(), text_key(&g.text)));
        for s in &g.sockets {
            member.remove(&(g.to.clone(), g.meeting.clone(), *s));
        }
        out.push(g.into_wire());
    }
    fn close_all(
        groups: &mut Vec<Option<Group>>,
        open: &mut HashMap<(String, String, usize), usize>,
        member: &mut HashMap<(String, String, u64), usize>,
        out: &mut Vec<(String, Wire)>,
    ) {
        for i in 0..groups.len() {
            close(i, groups, open, member, out);
        }
        groups.clear();
    }
    for (to, wire) in batch {
        match wire {
            Wire::Text {
                meeting,
                socket,
                text,
            } => {
                // The socket's earlier text, in another group: that group
                // goes first (or this one would overtake it).
                let at = (to.clone(), meeting.clone(), socket);
                if let Some(&i) = member.get(&at) {
                    close(i, &mut groups, &mut open, &mut member, &mut out);
                }
                let key = (to.clone(), meeting.clone(), text_key(&text));
                let i = match open.get(&key) {
                    Some(&i) => i,
                    None => {
                        groups.push(Some(Group {
                            capacity: capacity(&text),
                            to,
                            meeting,
                            text,
                            sockets: Vec::new(),
                        }));
                        open.insert(key, groups.len() - 1);
                        groups.len() - 1
                    }
                };
                let full = {
                    let g = groups[i].as_mut().expect("open groups are kept");
                    g.sockets.push(socket);
                    g.sockets.len() >= g.capacity
                };
                member.insert(at, i);
                if full {
                    close(i, &mut groups, &mut open, &mut member, &mut out);
                }
            }
            other => {
                close_all(&mut groups, &mut open, &mut member, &mut out);
                out.push((to, other));
            }
        }
    }
    close_all(&mut groups, &mut open, &mut member, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Texts by content, each made once: a broadcast's copies share theirs.
    #[derive(Default)]
    struct Texts(HashMap<String, Arc<str>>);

    impl Texts {
        fn text(&mut self, to: &str, socket: u64, text: &str) -> (String, Wire) {
            let text = self
                .0
                .entry(text.to_string())
                .or_insert_with(|| text.into())
                .clone();
            (
                to.into(),
                Wire::Text {
                    meeting: "m".into(),
                    socket,
                    text,
                },
            )
        }
    }

    /// What each (node, socket) is sent, in order, once expanded.
    fn per_socket(batch: &[(String, Wire)]) -> HashMap<(String, u64), Vec<String>> {
        let mut got: HashMap<(String, u64), Vec<String>> = HashMap::new();
        for (to, w) in batch {
            match w {
                Wire::Text { socket, text, .. } => got
                    .entry((to.clone(), *socket))
                    .or_default()
                    .push(text.to_string()),
                Wire::Texts { sockets, text, .. } => {
                    for s in sockets {
                        got.entry((to.clone(), *s))
                            .or_default()
                            .push(text.to_string());
                    }
                }
                Wire::Close { socket, .. } => got
                    .entry((to.clone(), *socket))
                    .or_default()
                    .push("<close>".into()),
                _ => {}
            }
        }
        got
    }

    /// `recipe` as messages: (node, socket, text or None for a close).
    fn batch(texts: &mut Texts, recipe: &[(&str, u64, Option<String>)]) -> Vec<(String, Wire)> {
        recipe
            .iter()
            .map(|(to, socket, text)| match text {
                Some(t) => texts.text(to, *socket, t),
                None => (
                    to.to_string(),
                    Wire::Close {
                        meeting: "m".into(),
                        socket: *socket,
                    },
                ),
            })
            .collect()
    }

    #[test]
    fn a_broadcast_to_an_edges_sockets_goes_once() {
        let mut texts = Texts::default();
        let batch: Vec<_> = (0..500)
            .map(|s| texts.text("edge", s, "speaking"))
            .collect();
        let out = coalesce(batch);
        assert_eq!(out.len(), 1);
        assert!(matches!(&out[0].1, Wire::Texts { sockets, .. } if sockets.len() == 500));
        // Two edges, two messages; a lone text stays a text.
        let mut batch: Vec<_> = (0..3).map(|s| texts.text("a", s, "x")).collect();
        batch.extend((0..3).map(|s| texts.text("b", s, "x")));
        batch.push(texts.text("a", 9, "only for nine"));
        let out = coalesce(batch);
        assert_eq!(out.len(), 3);
        assert!(matches!(&out[2].1, Wire::Text { socket: 9, .. }));
        // The same words from two sources (two broadcasts) are not merged:
        // only a broadcast's own copies are.
        let twice: Vec<_> = (0..4)
            .map(|s| {
                (
                    "edge".to_string(),
                    Wire::Text {
                        meeting: "m".into(),
                        socket: s,
                        text: "same".into(),
                    },
                )
            })
            .collect();
        assert_eq!(coalesce(twice).len(), 4);
    }

    #[test]
    fn a_long_text_goes_to_fewer_sockets_at_once_each_message_within_bounds() {
        let mut texts = Texts::default();
        let long = "x".repeat(150 << 10);
        let recipe: Vec<_> = (0..3000u64)
            .map(|s| ("edge", 1_000_000_000_000 + s, Some(long.clone())))
            .collect();
        let out = coalesce(batch(&mut texts, &recipe));
        assert!(out.len() > 1);
        for (_, w) in &out {
            let json = serde_json::to_vec(w).unwrap();
            assert!(json.len() < 256 << 10, "{} bytes", json.len());
        }
        assert_eq!(per_socket(&out), per_socket(&batch(&mut texts, &recipe)));
        // Quotes take two bytes each in JSON: counted so.
        let quoted = "\"".repeat(120 << 10);
        let out = coalesce((0..100).map(|s| texts.text("edge", s, &quoted)).collect());
        for (_, w) in &out {
            assert!(serde_json::to_vec(w).unwrap().len() < 256 << 10);
        }
        let longest = "y".repeat(200 << 10);
        let out = coalesce((0..3).map(|s| texts.text("edge", s, &longest)).collect());
        assert_eq!(out.len(), 3, "too long for company: alone, as before");
    }

    #[test]
    fn each_socket_gets_its_messages_in_order_whatever_is_merged() {
        // Random interleavings of broadcasts, lone texts and closes over a
        // few sockets on two nodes: expanded, each socket's sequence is as
        // sent.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut texts = Texts::default();
        for _ in 0..500 {
            let mut recipe = Vec::new();
            for _ in 0..next(60) {
                let to = if next(2) == 0 { "a" } else { "b" };
                let socket = next(5);
                match next(10) {
                    0 => recipe.push((to, socket, None)),
                    k => recipe.push((to, socket, Some(format!("t{}", k % 4)))),
                }
            }
            let sent = batch(&mut texts, &recipe);
            let out = coalesce(batch(&mut texts, &recipe));
            assert_eq!(per_socket(&out), per_socket(&sent));
            assert!(out.len() <= sent.len());
        }
    }
}

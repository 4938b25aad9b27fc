//! Across a server restart. At a graceful stop the edge asks the room who is
//! in it ([`Room::returning`]) and keeps that until the meeting starts again,
//! when [`Room::expect_returning`] holds their places: each shows as
//! reconnecting, and comes back as the same participant (id, name, role,
//! identity; past a lock and the lobby, as any resume) by resuming with the
//! token their client holds, within [`RoomLimits::restart_grace`]. Only a hash
//! of the token leaves the room, so what is kept cannot be used to resume.

use serde::{Deserialize, Serialize};

use super::*;

/// One person to expect back after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Returning {
    pub id: String,
    pub name: String,
    pub role: Role,
    /// What recognises them (account or device cookie, hashed), as at join.
    pub key: Option<String>,
    pub identity: Identity,
    /// SHA-256 (hex) of their resume token.
    pub resume_hash: String,
    pub muted_by_host: bool,
    /// Their raised hand's place in the queue, if raised (absent in places
    /// held by an older version).
    #[serde(default)]
    pub hand: Option<u64>,
}

/// SHA-256 (hex) of a resume token.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Room {
    /// Everyone admitted now, present or away, as they should come back.
    /// Those waiting in the lobby are not kept: they wait again.
    pub fn returning(&self) -> Vec<Returning> {
        self.participants
            .iter()
            .filter(|(_, p)| p.admitted)
            .map(|(id, p)| Returning {
                id: id.0.clone(),
                name: p.name.clone(),
                role: p.role,
                key: p.key.clone(),
                identity: p.identity.clone(),
                resume_hash: p
                    .returning
                    .clone()
                    .unwrap_or_else(|| token_hash(&p.resume_token)),
                muted_by_host: p.muted_by_host,
                hand: p.hand,
            })
            .collect()
    }

    /// Hold places for those who were here before a restart: away since
    /// `now`, until they resume or the restart grace runs out. A meeting
    /// ended meanwhile expects no one. The rules may have changed while the
    /// server was down (a new policy file, a stricter level): a place is held
    /// only for someone who could join now, and a host's bar still holds.
    /// Returns those not held, with why; they can join again as anyone does.
    /// `vouched` says whether the deployment still stands behind a verified
    /// identity (its sign-in configuration may have changed).
    pub fn expect_returning(
        &mut self,
        now: Instant,
        people: Vec<Returning>,
        vouched: impl Fn(&Identity) -> bool,
    ) -> Vec<(String, String)> {
        let mut refused = Vec::new();
        if self.ended {
            return refused;
        }
        for r in people {
            // Ids are p1, p2, …: new joiners must not take one that was in
            // use, held or not (clients and the audit log know them).
            if let Some(n) = r.id.strip_prefix('p').and_then(|n| n.parse::<u64>().ok()) {
                self.next_participant = self.next_participant.max(n + 1);
            }
            let barred =
                r.role != Role::Host && r.key.as_ref().is_some_and(|k| self.barred.contains(k));
            // Identity rules spare hosts, as a join with the host key does.
            let rules = if r.role == Role::Host {
                Ok(())
            } else {
                self.meets_rules(&r.identity).map_err(|e| e.message)
            };
            let why = if barred {
                Some("a host barred them".to_string())
            } else if !vouched(&r.identity) {
                Some("their organisation's sign-in is not configured as it was".to_string())
            } else if let Err(e) = self.level().admits(&r.identity) {
                Some(e)
            } else {
                rules.err()
            };
            if let Some(why) = why {
                refused.push((r.id, why));
                continue;
            }
            let id = ParticipantId(r.id);
            if self.participants.contains_key(&id) {
                continue;
            }
            // A raised hand keeps its place in the queue.
            if let Some(h) = r.hand {
                self.next_hand = self.next_hand.max(h + 1);
            }
            self.participants.insert(
                id,
                Participant {
                    name: r.name,
                    role: r.role,
                    key: r.key,
                    identity: r.identity,
                    admitted: true,
                    waiting_since: None,
                    address: None,
                    muted_by_host: r.muted_by_host,
                    // Unusable until they resume: the token is known only by its hash.
                    resume_token: random_token(),
                    returning: Some(r.resume_hash),
                    away_since: Some(now),
                    sources: BTreeSet::new(),
                    muted: BTreeSet::new(),
                    media_path: None,
                    last_ice_restart: None,
                    video_sizes: Default::default(),
                    hand: r.hand,
                    last_reaction: None,
                    last_question: None,
                    last_hand_change: None,
                },
            );
        }
        refused
    }

    /// The held participant whose token this is, now back: their token is
    /// the one they gave, and the restart grace no longer applies.
    pub(super) fn returning_with(&mut self, token: &str) -> Option<ParticipantId> {
        let hash = token_hash(token);
        let (id, p) = self.participants.iter_mut().find(|(_, p)| {
            p.returning
                .as_deref()
                .is_some_and(|h| constant_time_eq(h.as_bytes(), hash.as_bytes()))
        })?;
        p.returning = None;
        p.resume_token = token.to_string();
        Some(id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ClientMessage as C;

    fn join(name: &str, resume: Option<String>) -> C {
        C::Join {
            protocol: PROTOCOL_VERSION,
            name: name.into(),
            resume,
            passcode: None,
            host_key: None,
            e2ee: false,
        }
    }

    fn token_of(r: &mut Room, who: &ParticipantId) -> String {
        std::iter::from_fn(|| r.poll_effect())
            .find_map(|e| match e {
                Effect::Send {
                    to,
                    message: ServerMessage::Welcome { resume_token, .. },
                } if &to == who => Some(resume_token),
                _ => None,
            })
            .expect("a welcome")
    }

    /// A meeting stopped for a restart and started again from what was kept.
    fn restarted(before: &Room, now: Instant, limits: RoomLimits) -> Room {
        let kept = serde_json::to_string(&before.returning()).unwrap();
        let mut r = Room::new("m1".into(), "Budget".into(), limits);
        r.expect_returning(now, serde_json::from_str(&kept).unwrap(), |_| true);
        r
    }

    #[test]
    fn after_a_restart_everyone_resumes_as_themselves_past_the_lock() {
        let t0 = Instant::now();
        let mut r = Room::new("m1".into(), "Budget".into(), RoomLimits::default());
        let host = r.join_as(t0, join("Hana", None), Role::Host).unwrap();
        let host_token = token_of(&mut r, &host);
        let gil = r.join(t0, join("Gil", None)).unwrap();
        let gil_token = token_of(&mut r, &gil);
        r.handle(t0, &host, C::Lock { locked: true }).unwrap();
        let kept = r.returning();
        assert_eq!(kept.len(), 2);
        // Only hashes of the tokens are kept.
        let text = serde_json::to_string(&kept).unwrap();
        assert!(
            !text.contains(&host_token) && !text.contains(&gil_token),
            "{text}"
        );

        let limits = RoomLimits {
            restart_grace: Duration::from_secs(30),
            ..RoomLimits::default()
        };
        let mut r2 = restarted(&r, t0, limits);
        r2.info.locked = true; // as storage restores it
                               // A held token is not a way in for someone else's guess.
        let e = r2.join(t0, join("Eve", Some("0".repeat(32)))).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        // New people are still kept out by the lock.
        assert_eq!(
            r2.join(t0, join("Eve", None)).unwrap_err().code,
            ErrorCode::Locked
        );
        // Longer than a reconnect, within the restart grace: back as themselves.
        let t1 = t0 + Duration::from_secs(20);
        r2.tick(t1);
        let back = r2
            .join(t1, join("ignored", Some(gil_token.clone())))
            .unwrap();
        assert_eq!(back, gil);
        let welcome = std::iter::from_fn(|| r2.poll_effect()).find_map(|e| match e {
            Effect::Send {
                message:
                    ServerMessage::Welcome {
                        participant_id,
                        participants,
                        resume_token,
                        ..
                    },
                ..
            } => Some((participant_id, participants, resume_token)),
            _ => None,
        });
        let (you, participants, token) = welcome.expect("welcomed");
        assert_eq!(you, gil.0);
        assert_eq!(token, gil_token, "the same token goes on working");
        let hana = participants
            .iter()
            .find(|p| p.id == host.0)
            .expect("the host is held");
        assert!(!hana.connected, "shown reconnecting until back");
        assert_eq!(hana.role, Role::Host);
        let back = r2.join(t1, join("ignored", Some(host_token))).unwrap();
        assert_eq!(back, host);
        assert_eq!(r2.participants[&host].role, Role::Host);
        // A newcomer gets a fresh id, not a held one.
        let co = r2.join_as(t1, join("Cy", None), Role::CoHost).unwrap();
        assert!(co != host && co != gil, "{co}");
        // Back once, it is an ordinary resume from then on.
        r2.connection_lost(t1, &gil);
        r2.tick(t1 + Duration::from_secs(6));
        assert!(
            !r2.participants.contains_key(&gil),
            "the usual grace applies again"
        );
    }

    #[test]
    fn those_not_back_within_the_restart_grace_leave() {
        let t0 = Instant::now();
        let mut r = Room::new("m1".into(), "Budget".into(), RoomLimits::default());
        let gil = r.join(t0, join("Gil", None)).unwrap();
        let mut r2 = restarted(&r, t0, RoomLimits::default());
        r2.tick(t0 + Duration::from_secs(59));
        assert!(r2.participants.contains_key(&gil));
        r2.tick(t0 + Duration::from_secs(60));
        assert!(!r2.participants.contains_key(&gil));
    }

    /// The rules may change while the server is down: places are held only
    /// for those who could join now, and never past a host's bar.
    #[test]
    fn places_are_held_only_for_those_the_rules_still_admit() {
        let t0 = Instant::now();
        let mut r = Room::new("m1".into(), "Budget".into(), RoomLimits::default());
        let gil = r.join(t0, join("Gil", None)).unwrap();
        let mia = r.join(t0, join("Mia", None)).unwrap();
        let bo = r.join(t0, join("Bo", None)).unwrap();
        let mut kept = r.returning();
        for k in &mut kept {
            if k.id == mia.0 {
                k.identity = Identity {
                    level: Level::Member,
                    organisation: Some("Home".into()),
                    name: Some("Mia".into()),
                    mfa: true,
                    subject: Some("mia@home.example".into()),
                };
            }
            if k.id == bo.0 {
                k.key = Some("device-bo".into());
            }
        }
        // Restarted where sign-in no longer vouches for Mia's organisation:
        // no place for her, and her id is still not given to a newcomer.
        let mut r3 = Room::new("m1".into(), "Budget".into(), RoomLimits::default());
        let refused = r3.expect_returning(t0, kept.clone(), |i| !i.is_verified());
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].0, mia.0);
        assert!(refused[0].1.contains("sign-in"), "{refused:?}");
        let cy = r3.join(t0, join("Cy", None)).unwrap();
        assert!(![&gil, &mia, &bo].contains(&&cy), "{cy}");
        // Restarted with guests no longer allowed, and Bo barred.
        let mut r2 = Room::new("m1".into(), "Budget".into(), RoomLimits::default());
        r2.settings.guests_allowed = false;
        r2.barred.insert("device-bo".into());
        let refused = r2.expect_returning(t0, kept, |_| true);
        let ids: Vec<&str> = refused.iter().map(|(id, _)| id.as_str()).collect();
        assert!(ids.contains(&gil.0.as_str()), "{refused:?}");
        assert!(ids.contains(&bo.0.as_str()), "{refused:?}");
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(r2.participants.contains_key(&mia));
        assert!(!r2.participants.contains_key(&gil));
        assert!(!r2.participants.contains_key(&bo));
        // Held ids are still never given to newcomers.
        let newcomer = r2
            .enter(
                t0,
                join("Cy", None),
                Entrant {
                    identity: Identity {
                        level: Level::Member,
                        organisation: Some("Home".into()),
                        name: Some("Cy".into()),
                        mfa: true,
                        subject: Some("cy@home.example".into()),
                    },
                    ..Entrant::participant()
                },
            )
            .unwrap();
        assert!(![&gil, &mia, &bo].contains(&&newcomer), "{newcomer}");
    }

    /// Raised hands come back in their places in the queue; a hand raised
    /// after the restart goes behind them.
    #[test]
    fn raised_hands_keep_their_places_across_a_restart() {
        let t0 = Instant::now();
        let mut r = Room::new("m1".into(), "Budget".into(), RoomLimits::default());
        let ann = r.join(t0, join("Ann", None)).unwrap();
        let bob = r.join(t0, join("Bob", None)).unwrap();
        let cy = r.join(t0, join("Cy", None)).unwrap();
        r.handle(t0, &bob, C::RaiseHand {}).unwrap();
        r.handle(t0, &ann, C::RaiseHand {}).unwrap();
        let mut r2 = restarted(&r, t0, RoomLimits::default());
        let (hb, ha) = (r2.participants[&bob].hand, r2.participants[&ann].hand);
        assert!(hb.is_some() && ha.is_some() && hb < ha, "{hb:?} {ha:?}");
        assert_eq!(r2.participants[&cy].hand, None);
        // Cy back (as a resume would), then raising a hand.
        r2.participants.get_mut(&cy).unwrap().away_since = None;
        r2.handle(t0, &cy, C::RaiseHand {}).unwrap();
        assert!(
            r2.participants[&cy].hand > ha,
            "behind those already waiting"
        );
    }
}

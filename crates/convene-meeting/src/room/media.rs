//! Media quality, as the room sees it: the sizes at which a participant shows
//! the videos it receives (`video-sizes`, checked here and handed to the media
//! layer, at a bounded rate), and connection quality told to everyone.

use std::time::Instant;

use super::{err, webinar, Effect, MediaAction, ParticipantId, Room, RoomError};
use crate::protocol::{ErrorCode, ParticipantQuality, ServerMessage, VideoSize};

/// `video-sizes` handed on per second, per participant, and in a burst. A
/// client debouncing its layout changes (~300 ms) stays under it; beyond it
/// the latest list waits (replacing any that waited before it) and is handed
/// on at the next tick with a token: a flood costs the media layer nothing
/// more, and the last layout a client sent always applies.
const SIZES_PER_SECOND: f64 = 5.0;
const SIZES_BURST: f64 = 5.0;

/// One participant's `video-sizes` budget.
#[derive(Debug, Default)]
pub(super) struct SizesGate {
    /// Tokens left, and when they were counted (`None`: a full bucket).
    tokens: Option<(f64, Instant)>,
    /// The latest list refused a token, to hand on when one comes.
    pending: Option<Vec<VideoSize>>,
}

impl SizesGate {
    fn take(&mut self, now: Instant) -> bool {
        let (tokens, at) = self.tokens.unwrap_or((SIZES_BURST, now));
        let tokens = (tokens + now.saturating_duration_since(at).as_secs_f64() * SIZES_PER_SECOND)
            .min(SIZES_BURST);
        let allowed = tokens >= 1.0;
        self.tokens = Some((if allowed { tokens - 1.0 } else { tokens }, now));
        allowed
    }
}

/// The protocol's limits on one `video-sizes`, as a clear refusal.
fn check(sizes: &[VideoSize]) -> Result<(), RoomError> {
    if sizes.len() > VideoSize::MAX_ENTRIES {
        return Err(err(
            ErrorCode::Invalid,
            format!(
                "video-sizes lists at most {} videos, not {}",
                VideoSize::MAX_ENTRIES,
                sizes.len()
            ),
        ));
    }
    for (i, s) in sizes.iter().enumerate() {
        if s.source.is_audio() {
            return Err(err(
                ErrorCode::Invalid,
                format!("video-sizes entry {i}: only camera and screen videos have a size"),
            ));
        }
        if s.width > VideoSize::MAX_PIXELS || s.height > VideoSize::MAX_PIXELS {
            return Err(err(
                ErrorCode::Invalid,
                format!(
                    "video-sizes entry {i}: {}x{} is larger than {max}x{max} device pixels",
                    s.width,
                    s.height,
                    max = VideoSize::MAX_PIXELS
                ),
            ));
        }
    }
    Ok(())
}

impl Room {
    /// `who` says how it shows the videos it receives. Entries for people
    /// not in the meeting (they may just have left) and for its own videos
    /// are dropped; the rest go to the media layer, which sends nothing of a
    /// video not listed.
    pub(super) fn video_sizes(
        &mut self,
        now: Instant,
        who: &ParticipantId,
        sizes: Vec<VideoSize>,
    ) -> Result<(), RoomError> {
        check(&sizes)?;
        let sizes: Vec<VideoSize> = sizes
            .into_iter()
            .filter(|s| {
                s.participant_id != who.0
                    && self
                        .participants
                        .get(&ParticipantId(s.participant_id.clone()))
                        .is_some_and(|p| p.admitted)
            })
            .collect();
        let Some(p) = self.participants.get_mut(who) else {
            return Ok(());
        };
        if p.video_sizes.take(now) {
            p.video_sizes.pending = None;
            self.effects
                .push_back(Effect::Media(MediaAction::VideoSizes {
                    who: who.clone(),
                    sizes,
                }));
        } else {
            p.video_sizes.pending = Some(sizes);
        }
        Ok(())
    }

    /// Hand on the lists that waited for a token, where one has come.
    pub(super) fn flush_video_sizes(&mut self, now: Instant) {
        for (who, p) in &mut self.participants {
            if p.video_sizes.pending.is_none()
                || !p.admitted
                || p.away_since.is_some()
                || !p.video_sizes.take(now)
            {
                continue;
            }
            if let Some(sizes) = p.video_sizes.pending.take() {
                self.effects
                    .push_back(Effect::Media(MediaAction::VideoSizes {
                        who: who.clone(),
                        sizes,
                    }));
            }
        }
    }

    /// Connection quality measured by the media layer, told to everyone in
    /// the meeting (not the lobby); entries for people no longer in it are
    /// dropped.
    /// In a webinar an attendee's goes to the hosts and to them alone.
    pub fn connection_quality(&mut self, participants: Vec<ParticipantQuality>) {
        let (mut everyone, mut attendees) = (Vec::new(), Vec::new());
        for q in participants {
            let id = ParticipantId(q.participant_id.clone());
            match self.participants.get(&id) {
                Some(p) if webinar::in_audience(&self.settings, p) => attendees.push((id, q)),
                Some(p) if p.admitted => everyone.push(q),
                _ => {}
            }
        }
        if !everyone.is_empty() {
            self.broadcast(ServerMessage::ConnectionQuality {
                participants: everyone,
            });
        }
        if attendees.is_empty() {
            return;
        }
        let hosts = self.host_ids();
        if !hosts.is_empty() {
            let participants = attendees.iter().map(|(_, q)| q.clone()).collect();
            self.effects.push_back(Effect::Broadcast {
                to: hosts,
                message: ServerMessage::ConnectionQuality { participants },
            });
        }
        for (id, q) in attendees {
            let participants = vec![q];
            self.send(&id, ServerMessage::ConnectionQuality { participants });
        }
    }

    /// Whether `who` is in the meeting proper (admitted; away or not).
    pub fn is_admitted(&self, who: &ParticipantId) -> bool {
        self.participants.get(who).is_some_and(|p| p.admitted)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{Entrant, RoomLimits};
    use super::*;
    use crate::access::Settings;
    use crate::protocol::{ClientMessage as C, Quality, Source, PROTOCOL_VERSION};

    fn join(r: &mut Room, now: Instant, name: &str) -> ParticipantId {
        r.enter(
            now,
            crate::room::testkit::join_msg(name),
            Entrant::participant(),
        )
        .unwrap()
    }

    fn size(who: &ParticipantId, source: Source, width: u32, height: u32) -> VideoSize {
        VideoSize {
            participant_id: who.0.clone(),
            source,
            width,
            height,
        }
    }

    /// The `video-sizes` handed to the media layer, in order.
    fn handed_on(r: &mut Room) -> Vec<(ParticipantId, Vec<VideoSize>)> {
        std::iter::from_fn(|| r.poll_effect())
            .filter_map(|e| match e {
                Effect::Media(MediaAction::VideoSizes { who, sizes }) => Some((who, sizes)),
                _ => None,
            })
            .collect()
    }

    fn errors_to(r: &mut Room, who: &ParticipantId) -> usize {
        std::iter::from_fn(|| r.poll_effect())
            .filter(|e| {
                matches!(e, Effect::Send { to, message: ServerMessage::Error { .. } } if to == who)
            })
            .count()
    }

    #[test]
    fn sizes_go_to_the_media_layer_without_unknown_people_or_oneself() {
        let now = Instant::now();
        let mut r = Room::new("m".into(), "t".into(), RoomLimits::default());
        let ann = join(&mut r, now, "Ann");
        let bob = join(&mut r, now, "Bob");
        handed_on(&mut r);
        let sizes = vec![
            size(&bob, Source::Camera, 320, 180),
            size(&bob, Source::Screen, 0, 0),
            size(&ann, Source::Camera, 640, 360),
            size(&ParticipantId("p99".into()), Source::Camera, 640, 360),
        ];
        r.handle(now, &ann, C::VideoSizes { sizes }).unwrap();
        assert_eq!(
            handed_on(&mut r),
            vec![(
                ann.clone(),
                vec![
                    size(&bob, Source::Camera, 320, 180),
                    size(&bob, Source::Screen, 0, 0)
                ]
            )]
        );
        // An empty list is a list: nothing is on screen.
        r.handle(now, &ann, C::VideoSizes { sizes: vec![] })
            .unwrap();
        assert_eq!(handed_on(&mut r), vec![(ann, vec![])]);
    }

    #[test]
    fn sizes_over_the_limits_are_refused_clearly() {
        let now = Instant::now();
        let mut r = Room::new("m".into(), "t".into(), RoomLimits::default());
        let ann = join(&mut r, now, "Ann");
        let bob = join(&mut r, now, "Bob");
        handed_on(&mut r);
        let refused = |r: &mut Room, sizes: Vec<VideoSize>| {
            let e = r.handle(now, &ann, C::VideoSizes { sizes }).unwrap_err();
            assert_eq!(e.code, ErrorCode::Invalid);
            assert!(handed_on(r).is_empty(), "nothing reaches the media layer");
            e.message
        };
        let many = vec![size(&bob, Source::Camera, 1, 1); 65];
        let m = refused(&mut r, many);
        assert!(m.contains("at most 64"), "{m}");
        let m = refused(&mut r, vec![size(&bob, Source::Camera, 16_385, 10)]);
        assert!(m.contains("16384"), "{m}");
        refused(&mut r, vec![size(&bob, Source::Camera, 10, u32::MAX)]);
        let m = refused(&mut r, vec![size(&bob, Source::Microphone, 10, 10)]);
        assert!(m.contains("camera and screen"), "{m}");
        // At the limits: taken.
        let edge = vec![size(&bob, Source::Camera, 16_384, 16_384); 64];
        r.handle(now, &ann, C::VideoSizes { sizes: edge }).unwrap();
        assert_eq!(handed_on(&mut r).len(), 1);
    }

    #[test]
    fn the_lobby_cannot_send_sizes() {
        let now = Instant::now();
        let settings = Settings {
            lobby: true,
            ..Settings::default()
        };
        let mut r = Room::with_settings("m".into(), "t".into(), RoomLimits::default(), settings);
        let waiting = join(&mut r, now, "Wes");
        handed_on(&mut r);
        let e = r
            .handle(now, &waiting, C::VideoSizes { sizes: vec![] })
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::WrongState);
        assert!(handed_on(&mut r).is_empty());
        // Nor is anyone in the lobby a video one can size.
        let ann = {
            let id = r
                .enter(
                    now,
                    C::Join {
                        protocol: PROTOCOL_VERSION,
                        name: "Ann".into(),
                        resume: None,
                        passcode: None,
                        host_key: None,
                        e2ee: false,
                    },
                    Entrant {
                        role: crate::access::Role::Host,
                        ..Entrant::participant()
                    },
                )
                .unwrap();
            handed_on(&mut r);
            id
        };
        let sizes = vec![size(&waiting, Source::Camera, 10, 10)];
        r.handle(now, &ann, C::VideoSizes { sizes }).unwrap();
        assert_eq!(handed_on(&mut r), vec![(ann, vec![])]);
    }

    #[test]
    fn a_flood_of_sizes_is_coalesced_and_the_last_applies() {
        let t0 = Instant::now();
        let mut r = Room::new("m".into(), "t".into(), RoomLimits::default());
        let ann = join(&mut r, t0, "Ann");
        let bob = join(&mut r, t0, "Bob");
        handed_on(&mut r);
        for w in 1..=1000 {
            let sizes = vec![size(&bob, Source::Camera, w, w)];
            r.handle(t0, &ann, C::VideoSizes { sizes }).unwrap();
        }
        // A burst of five, no errors (nothing is lost: the last one waits).
        let first = handed_on(&mut r);
        assert_eq!(first.len(), 5);
        assert_eq!(errors_to(&mut r, &ann), 0);
        r.tick(t0 + Duration::from_millis(100));
        assert!(handed_on(&mut r).is_empty(), "no token yet");
        r.tick(t0 + Duration::from_millis(250));
        assert_eq!(
            handed_on(&mut r),
            vec![(ann.clone(), vec![size(&bob, Source::Camera, 1000, 1000)])],
            "the latest list, once"
        );
        r.tick(t0 + Duration::from_secs(2));
        assert!(handed_on(&mut r).is_empty(), "handed on once");
        // Sustained: at most five a second go through, whatever is sent.
        let mut through = 0;
        for i in 0..1000u64 {
            let now = t0 + Duration::from_secs(10) + Duration::from_millis(i * 2);
            let sizes = vec![size(&bob, Source::Camera, 10, 10)];
            r.handle(now, &ann, C::VideoSizes { sizes }).unwrap();
            r.tick(now);
            through += handed_on(&mut r).len();
        }
        assert!((5..=16).contains(&through), "{through} in 2 s");
    }

    #[test]
    fn quality_goes_to_everyone_in_the_meeting_but_not_the_lobby() {
        let now = Instant::now();
        let settings = Settings {
            lobby: true,
            ..Settings::default()
        };
        let mut r = Room::with_settings("m".into(), "t".into(), RoomLimits::default(), settings);
        let host = r
            .enter(
                now,
                C::Join {
                    protocol: PROTOCOL_VERSION,
                    name: "Hana".into(),
                    resume: None,
                    passcode: None,
                    host_key: None,
                    e2ee: false,
                },
                Entrant {
                    role: crate::access::Role::Host,
                    ..Entrant::participant()
                },
            )
            .unwrap();
        let waiting = join(&mut r, now, "Wes");
        while r.poll_effect().is_some() {}
        let entry = |who: &ParticipantId| ParticipantQuality {
            participant_id: who.0.clone(),
            quality: Quality::Fair,
            video_paused: false,
        };
        r.connection_quality(vec![entry(&host), entry(&waiting)]);
        let fx: Vec<Effect> = std::iter::from_fn(|| r.poll_effect()).collect();
        assert_eq!(
            fx,
            vec![Effect::Broadcast {
                to: vec![host.clone()],
                message: ServerMessage::ConnectionQuality {
                    participants: vec![entry(&host)]
                }
            }]
        );
        r.connection_quality(vec![entry(&waiting)]);
        assert!(r.poll_effect().is_none(), "nothing to tell");
        assert!(r.is_admitted(&host) && !r.is_admitted(&waiting));
    }
}

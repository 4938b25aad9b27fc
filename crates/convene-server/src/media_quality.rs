//! One meeting's media-quality bookkeeping, between the room and the SFU:
//! the sizes at which each participant shows the videos it receives (turned
//! into the SFU's views, given only when one changed), the order videos get
//! bandwidth in (screens, then the camera of whoever spoke last), and each
//! participant's connection quality and stalled camera, told to everyone in
//! batches. No I/O: it returns SFU commands and messages for the meeting task
//! to send.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use convene_meeting::protocol::{ParticipantQuality, Quality, Source, VideoSize};
use convene_meeting::ParticipantId;
use convene_sfu::driver::Command;
use convene_sfu::{ConnId, Priority, QualityLevel, TrackId, View};

/// `connection-quality` goes out at most this often per meeting, with what
/// changed since the last one.
pub const QUALITY_EVERY: Duration = Duration::from_secs(2);

#[derive(Default)]
pub struct MediaQuality {
    /// Those who sent `video-sizes` at least once (the others have no limit).
    viewers: HashMap<ParticipantId, Viewer>,
    /// Whoever spoke last: their camera goes before other cameras.
    speaker: Option<ParticipantId>,
    people: BTreeMap<ParticipantId, Person>,
    /// Whose entry changed since the last `connection-quality`.
    changed: BTreeSet<ParticipantId>,
    last_told: Option<Instant>,
}

#[derive(Default)]
struct Viewer {
    /// As last listed, by (whose, which source): width and height.
    sizes: HashMap<(ParticipantId, Source), (u32, u32)>,
    /// The connection `sent` was given to; a new one starts afresh.
    conn: Option<ConnId>,
    /// The views last given to the SFU for this viewer's connection.
    sent: HashMap<TrackId, View>,
}

impl Viewer {
    fn view_of(&self, owner: &ParticipantId, source: Source) -> View {
        match self.sizes.get(&(owner.clone(), source)) {
            Some(&(width, height)) if width > 0 && height > 0 => View::Size { width, height },
            _ => View::Hidden,
        }
    }

    /// A command if the SFU does not have this view already.
    fn give(&mut self, conn: ConnId, track: TrackId, view: View) -> Option<Command> {
        if self.conn != Some(conn) {
            self.conn = Some(conn);
            self.sent.clear();
        }
        if self.sent.get(&track) == Some(&view) {
            return None;
        }
        self.sent.insert(track, view);
        Some(Command::SetView { conn, track, view })
    }
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
struct Person {
    /// `None` until measured.
    quality: Option<QualityLevel>,
    /// They publish a camera and nothing of it arrives.
    video_paused: bool,
}

impl Person {
    /// What others are told; nothing until there is something to tell.
    fn entry(&self, who: &ParticipantId) -> Option<ParticipantQuality> {
        let quality = match (self.quality, self.video_paused) {
            (Some(level), _) => level,
            // A camera nobody receives anything of, before any figures: its
            // uplink cannot carry even the lowest layer.
            (None, true) => QualityLevel::Poor,
            (None, false) => return None,
        };
        Some(ParticipantQuality {
            participant_id: who.0.clone(),
            quality: match quality {
                QualityLevel::Good => Quality::Good,
                QualityLevel::Fair => Quality::Fair,
                QualityLevel::Poor => Quality::Poor,
            },
            video_paused: self.video_paused,
        })
    }
}

fn is_video(source: Source) -> bool {
    matches!(source, Source::Camera | Source::Screen)
}

impl MediaQuality {
    /// `viewer` listed the videos it shows (already checked by the room):
    /// every video it receives gets the listed size, or none (hidden).
    pub fn video_sizes(
        &mut self,
        viewer: &ParticipantId,
        conn: Option<ConnId>,
        sizes: Vec<VideoSize>,
        tracks: &HashMap<(ParticipantId, Source), TrackId>,
    ) -> Vec<Command> {
        let v = self.viewers.entry(viewer.clone()).or_default();
        v.sizes = sizes
            .into_iter()
            .map(|s| {
                (
                    (ParticipantId(s.participant_id), s.source),
                    (s.width, s.height),
                )
            })
            .collect();
        let Some(conn) = conn else {
            return Vec::new();
        };
        let mut commands = Vec::new();
        for ((owner, source), &track) in tracks {
            if owner == viewer || !is_video(*source) {
                continue;
            }
            let view = v.view_of(owner, *source);
            commands.extend(v.give(conn, track, view));
        }
        commands
    }

    /// `viewer`'s connection now receives `owner`'s `source`: the size it
    /// listed for it applies (none: hidden), once it has listed any.
    pub fn subscribed(
        &mut self,
        viewer: &ParticipantId,
        conn: ConnId,
        owner: &ParticipantId,
        source: Source,
        track: TrackId,
    ) -> Option<Command> {
        let v = self.viewers.get_mut(viewer)?;
        if !is_video(source) {
            return None;
        }
        let view = v.view_of(owner, source);
        v.give(conn, track, view)
    }

    /// Where a new (or moved) track comes in the order bandwidth is shared.
    pub fn published(
        &mut self,
        owner: &ParticipantId,
        source: Source,
        track: TrackId,
    ) -> Option<Command> {
        let priority = match source {
            Source::Screen => Priority::Screen,
            Source::Camera if self.speaker.as_ref() == Some(owner) => Priority::Speaker,
            _ => return None,
        };
        Some(Command::SetPriority { track, priority })
    }

    pub fn unpublished(&mut self, owner: &ParticipantId, source: Source, track: TrackId) {
        for v in self.viewers.values_mut() {
            v.sent.remove(&track);
        }
        if source == Source::Camera {
            self.video_paused(owner, false);
        }
    }

    /// `who`'s microphone is heard: their camera goes first among cameras,
    /// and the previous speaker's goes back among the rest.
    pub fn speaking(
        &mut self,
        who: &ParticipantId,
        tracks: &HashMap<(ParticipantId, Source), TrackId>,
    ) -> Vec<Command> {
        if self.speaker.as_ref() == Some(who) {
            return Vec::new();
        }
        let camera = |p: &ParticipantId| tracks.get(&(p.clone(), Source::Camera)).copied();
        let mut commands = Vec::new();
        if let Some(track) = self.speaker.as_ref().and_then(camera) {
            commands.push(Command::SetPriority {
                track,
                priority: Priority::Normal,
            });
        }
        if let Some(track) = camera(who) {
            commands.push(Command::SetPriority {
                track,
                priority: Priority::Speaker,
            });
        }
        self.speaker = Some(who.clone());
        commands
    }

    /// The SFU measured `who`'s connection at a new level.
    pub fn quality(&mut self, who: &ParticipantId, level: QualityLevel) {
        self.update(who, |p| p.quality = Some(level));
    }

    /// `who`'s camera stopped arriving, or arrives again.
    pub fn video_paused(&mut self, who: &ParticipantId, paused: bool) {
        if paused || self.people.contains_key(who) {
            self.update(who, |p| p.video_paused = paused);
        }
    }

    fn update(&mut self, who: &ParticipantId, change: impl FnOnce(&mut Person)) {
        let p = self.people.entry(who.clone()).or_default();
        let before = *p;
        change(p);
        if *p != before {
            self.changed.insert(who.clone());
        }
    }

    /// The entries that changed, if there are any and the last were told
    /// long enough ago.
    pub fn due(&mut self, now: Instant) -> Option<Vec<ParticipantQuality>> {
        if self.changed.is_empty()
            || self
                .last_told
                .is_some_and(|t| now.saturating_duration_since(t) < QUALITY_EVERY)
        {
            return None;
        }
        self.last_told = Some(now);
        let changed = std::mem::take(&mut self.changed);
        let entries: Vec<ParticipantQuality> = changed
            .iter()
            .filter_map(|who| self.people.get(who)?.entry(who))
            .collect();
        (!entries.is_empty()).then_some(entries)
    }

    /// Everyone's current entry, for someone just welcomed.
    pub fn snapshot(&self) -> Vec<ParticipantQuality> {
        self.people
            .iter()
            .filter_map(|(who, p)| p.entry(who))
            .collect()
    }

    /// Forget whoever is no longer in the meeting.
    pub fn retain(&mut self, present: impl Fn(&ParticipantId) -> bool) {
        self.viewers.retain(|who, _| present(who));
        self.people.retain(|who, _| present(who));
        self.changed.retain(|who| present(who));
        if self.speaker.as_ref().is_some_and(|s| !present(s)) {
            self.speaker = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u32) -> ParticipantId {
        ParticipantId(format!("p{n}"))
    }

    fn size(who: &ParticipantId, source: Source, width: u32, height: u32) -> VideoSize {
        VideoSize {
            participant_id: who.0.clone(),
            source,
            width,
            height,
        }
    }

    fn views(commands: &[Command]) -> Vec<(TrackId, View)> {
        let mut v: Vec<(TrackId, View)> = commands
            .iter()
            .filter_map(|c| match c {
                Command::SetView { track, view, .. } => Some((*track, *view)),
                _ => None,
            })
            .collect();
        v.sort_by_key(|(t, _)| t.0);
        v
    }

    fn tracks() -> HashMap<(ParticipantId, Source), TrackId> {
        HashMap::from([
            ((p(1), Source::Camera), TrackId(1)),
            ((p(1), Source::Microphone), TrackId(2)),
            ((p(2), Source::Camera), TrackId(3)),
            ((p(2), Source::Screen), TrackId(4)),
            ((p(3), Source::Camera), TrackId(5)),
        ])
    }

    #[test]
    fn sizes_become_views_and_unlisted_videos_are_hidden() {
        let mut m = MediaQuality::default();
        let conn = ConnId(7);
        let listed = vec![
            size(&p(2), Source::Camera, 320, 180),
            size(&p(2), Source::Screen, 1920, 0),
            size(&p(3), Source::Camera, 1280, 720),
        ];
        let c = m.video_sizes(&p(1), Some(conn), listed.clone(), &tracks());
        assert_eq!(
            views(&c),
            vec![
                (
                    TrackId(3),
                    View::Size {
                        width: 320,
                        height: 180
                    }
                ),
                (TrackId(4), View::Hidden),
                (
                    TrackId(5),
                    View::Size {
                        width: 1280,
                        height: 720
                    }
                ),
            ],
            "not its own camera, not audio; a zero size is hidden"
        );
        // The same again: nothing for the SFU to do.
        assert!(m
            .video_sizes(&p(1), Some(conn), listed, &tracks())
            .is_empty());
        // One video off screen.
        let c = m.video_sizes(
            &p(1),
            Some(conn),
            vec![size(&p(2), Source::Camera, 320, 180)],
            &tracks(),
        );
        assert_eq!(views(&c), vec![(TrackId(5), View::Hidden)]);
        // A new connection (a resume) gets every view again as it subscribes.
        let again = m.subscribed(&p(1), ConnId(8), &p(2), Source::Camera, TrackId(3));
        assert!(again.is_some());
        let hidden = m.subscribed(&p(1), ConnId(8), &p(3), Source::Camera, TrackId(5));
        assert_eq!(
            views(&hidden.into_iter().collect::<Vec<_>>()),
            vec![(TrackId(5), View::Hidden)]
        );
    }

    #[test]
    fn no_limit_until_the_first_sizes_and_sizes_wait_for_a_connection() {
        let mut m = MediaQuality::default();
        assert!(m
            .subscribed(&p(1), ConnId(1), &p(2), Source::Camera, TrackId(3))
            .is_none());
        // Listed before the video exists, or before a connection: kept.
        let listed = vec![size(&p(4), Source::Camera, 640, 360)];
        assert!(m.video_sizes(&p(1), None, listed, &tracks()).is_empty());
        let c = m.subscribed(&p(1), ConnId(1), &p(4), Source::Camera, TrackId(9));
        assert_eq!(
            views(&c.into_iter().collect::<Vec<_>>()),
            vec![(
                TrackId(9),
                View::Size {
                    width: 640,
                    height: 360
                }
            )]
        );
        assert!(m
            .subscribed(&p(1), ConnId(1), &p(4), Source::Microphone, TrackId(10))
            .is_none());
    }

    #[test]
    fn screens_and_the_last_speakers_camera_go_first() {
        let mut m = MediaQuality::default();
        let prio = |c: Option<Command>| match c {
            Some(Command::SetPriority { track, priority }) => Some((track, priority)),
            _ => None,
        };
        assert_eq!(
            prio(m.published(&p(2), Source::Screen, TrackId(4))),
            Some((TrackId(4), Priority::Screen))
        );
        assert_eq!(prio(m.published(&p(2), Source::Camera, TrackId(3))), None);
        let all = |c: Vec<Command>| {
            c.into_iter()
                .map(|c| prio(Some(c)).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            all(m.speaking(&p(1), &tracks())),
            vec![(TrackId(1), Priority::Speaker)]
        );
        assert!(
            m.speaking(&p(1), &tracks()).is_empty(),
            "no change, no command"
        );
        assert_eq!(
            all(m.speaking(&p(2), &tracks())),
            vec![
                (TrackId(1), Priority::Normal),
                (TrackId(3), Priority::Speaker)
            ]
        );
        // The speaker's camera published later (or moved) keeps its place.
        assert_eq!(
            prio(m.published(&p(2), Source::Camera, TrackId(3))),
            Some((TrackId(3), Priority::Speaker))
        );
    }

    #[test]
    fn quality_is_told_in_batches_of_what_changed() {
        let mut m = MediaQuality::default();
        let t0 = Instant::now();
        assert!(m.due(t0).is_none());
        m.quality(&p(1), QualityLevel::Good);
        let first = m.due(t0).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].quality, Quality::Good);
        // Changes within two seconds wait, and go together.
        m.quality(&p(1), QualityLevel::Poor);
        m.quality(&p(2), QualityLevel::Fair);
        m.quality(&p(1), QualityLevel::Good);
        m.video_paused(&p(2), true);
        assert!(m.due(t0 + Duration::from_millis(1500)).is_none());
        let batch = m.due(t0 + QUALITY_EVERY).unwrap();
        assert_eq!(
            batch,
            vec![
                ParticipantQuality {
                    participant_id: "p1".into(),
                    quality: Quality::Good,
                    video_paused: false
                },
                ParticipantQuality {
                    participant_id: "p2".into(),
                    quality: Quality::Fair,
                    video_paused: true
                }
            ]
        );
        assert!(m.due(t0 + Duration::from_secs(10)).is_none(), "nothing new");
        // Unpublishing a stalled camera clears it.
        m.unpublished(&p(2), Source::Camera, TrackId(3));
        let b = m.due(t0 + Duration::from_secs(10)).unwrap();
        assert!(!b[0].video_paused);
        assert_eq!(m.snapshot().len(), 2);
        m.retain(|w| *w == p(1));
        assert_eq!(m.snapshot().len(), 1);
        // A stall before any figures still shows.
        m.video_paused(&p(5), true);
        assert_eq!(m.snapshot()[1].quality, Quality::Poor);
        // Recovering from a stall unknown here is nothing to tell.
        m.video_paused(&p(6), false);
        assert_eq!(m.snapshot().len(), 2);
    }
}

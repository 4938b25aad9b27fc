//! Simulcast: what a publisher's layers carry, and which layer each subscriber gets.
//!
//! A camera is published in up to three layers (rids `l`, `m`, `h`: a quarter,
//! half and full size). For every video a subscriber receives, the SFU picks
//! one layer from three things: the subscriber's downlink estimate (str0m's
//! bandwidth estimation from transport-wide congestion feedback), the size at
//! which the subscriber shows that video, and a priority order (audio is
//! reserved first, then screen shares, the active speaker, the rest). The
//! choice is a pure function ([`allocate`]) so it is tested without sockets.

use std::time::{Duration, Instant};

use str0m::media::Rid;

/// The rids offered for a simulcast camera, lowest layer first.
pub const SIMULCAST_RIDS: [&str; 3] = ["l", "m", "h"];
/// What a layer is assumed to cost before it has been measured (bits/s):
/// the browser client's `maxBitrate` for each layer.
pub const NOMINAL_BITRATE: [u64; 3] = [100_000, 500_000, 1_500_000];
/// What a layer is assumed to show before a keyframe has said (width, height).
pub(crate) const NOMINAL_SIZE: [(u32, u32); 3] = [(320, 180), (640, 360), (1280, 720)];
/// Reserved on a subscriber's downlink for each audio stream it receives
/// before that stream has been measured (Opus at 32 kbit/s sent with RED, as
/// browsers do, with RTP, SRTP, UDP and IP overhead), before any video.
pub const AUDIO_RESERVE: u64 = 90_000;
/// Headers of one audio packet on the wire beyond its payload (IPv4, UDP,
/// RTP with two header extensions, the SRTP tag).
const AUDIO_PACKET_OVERHEAD: u64 = 62;
/// A layer not heard from for this long is not being sent (the publisher's
/// uplink cannot carry it, or its camera stopped).
pub const LAYER_GONE_AFTER: Duration = Duration::from_millis(1000);
/// A layer asked for again is given this long to arrive before the
/// allocation stops counting on it.
const RESUME_GRACE: Duration = Duration::from_secs(2);
/// How long a resumed layer is counted at no less than its rate before the
/// pause (a video encoder climbs back within a few seconds).
const RAMP_UP: Duration = Duration::from_secs(4);
/// Moving up a layer needs this much headroom over its cost (percent), so a
/// subscriber does not climb and fall back at every small change of estimate.
pub const UPGRADE_HEADROOM_PCT: u64 = 115;
/// A video already being sent keeps its lowest layer while the budget falls
/// short of it by at most this share of its cost (percent): estimates dip for
/// a moment under a steady link, and a video stopped and started again costs
/// a keyframe and a frozen tile ([`allocate_holding`]).
const HOLD_LOWEST_SLACK_PCT: u64 = 25;
/// A tile is served by the smallest layer at least this share of its size
/// (percent): a slight upscale is invisible, the next layer costs three times.
const SIZE_SLACK_PCT: u32 = 85;

/// How the subscriber shows a video (sizes in device pixels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Shown at this size.
    Size { width: u32, height: u32 },
    /// Not on screen: nothing is sent.
    Hidden,
}

impl View {
    /// Whether a video the subscriber shows this way is on screen at all
    /// (`None`: not said yet, shown; a tile of no size is not).
    pub fn on_screen(view: Option<View>) -> bool {
        match view {
            None => true,
            Some(View::Hidden) => false,
            Some(View::Size { width, height }) => width > 0 && height > 0,
        }
    }
}

/// Which videos get bandwidth first, after audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Priority {
    #[default]
    Normal,
    /// The camera of whoever spoke last.
    Speaker,
    /// A shared screen.
    Screen,
}

/// What one published audio track costs on the wire (bits/s): a silent
/// microphone (DTX) almost nothing, a talker with RED about 90 kbit/s. It
/// is measured over each layer tick and follows a rise at once, so a new
/// talker's room is made at the next choice of layers.
#[derive(Debug, Default)]
pub(crate) struct AudioRate {
    window_bits: u64,
    /// The same without RED's redundant blocks (what a subscriber sent the
    /// primary alone receives).
    window_plain_bits: u64,
    /// `None` until a first window was measured.
    pub bitrate: Option<u64>,
    plain_bitrate: Option<u64>,
}

impl AudioRate {
    /// One packet: its payload, and of that its primary block (all of it
    /// when it is not RED).
    pub fn on_packet(&mut self, payload: usize, primary: usize) {
        self.window_bits += (payload as u64 + AUDIO_PACKET_OVERHEAD) * 8;
        self.window_plain_bits += (primary as u64 + AUDIO_PACKET_OVERHEAD) * 8;
    }

    pub fn on_window(&mut self, elapsed: Duration) {
        let ms = elapsed.as_millis().max(1) as u64;
        let follow = |old: Option<u64>, rate: u64| match old {
            Some(old) if old > rate => (old * 3 + rate) / 4,
            _ => rate,
        };
        let rate = std::mem::take(&mut self.window_bits) * 1000 / ms;
        self.bitrate = Some(follow(self.bitrate, rate));
        let plain = std::mem::take(&mut self.window_plain_bits) * 1000 / ms;
        self.plain_bitrate = Some(follow(self.plain_bitrate, plain));
    }

    /// What to reserve for it on a subscriber's downlink: as it comes, or
    /// (`plain`) its primary blocks alone.
    pub fn reserve(&self, plain: bool) -> u64 {
        let rate = if plain {
            self.plain_bitrate
        } else {
            self.bitrate
        };
        rate.unwrap_or(AUDIO_RESERVE)
    }
}

/// One layer of a published video, as the SFU receives it.
#[derive(Debug)]
pub(crate) struct LayerIn {
    pub rid: Option<Rid>,
    /// Bytes received in the current measuring window.
    window_bytes: u64,
    /// Smoothed bit rate (bits/s); 0 until measured.
    pub bitrate: u64,
    /// Size of its last keyframe, when the payload said.
    pub size: Option<(u32, u32)>,
    pub last_packet: Option<Instant>,
    /// When a keyframe was last asked for and has not arrived since.
    pub keyframe_asked: Option<Instant>,
    /// When a keyframe was last asked for.
    pub last_request: Option<Instant>,
    /// Since when nobody needs it (it is paused after a while).
    pub unneeded_since: Option<Instant>,
    /// It did not come when last asked for: not counted on until then.
    pub retry_at: Option<Instant>,
    /// The publisher was told to stop sending it (nobody needs it).
    pub paused: bool,
    /// When the publisher was last told to send it again.
    pub resumed_at: Option<Instant>,
    /// Its rate when last resumed: what it is counted at, at least, while
    /// its encoder ramps back up.
    ramp_floor: u64,
}

impl LayerIn {
    pub fn new(rid: Option<Rid>) -> Self {
        LayerIn {
            rid,
            window_bytes: 0,
            bitrate: 0,
            size: None,
            last_packet: None,
            keyframe_asked: None,
            last_request: None,
            unneeded_since: None,
            retry_at: None,
            paused: false,
            resumed_at: None,
            ramp_floor: 0,
        }
    }

    /// The publisher is told to stop sending it.
    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// The publisher is told, at `now`, to send it again.
    pub fn resume(&mut self, now: Instant) {
        self.paused = false;
        self.resumed_at = Some(now);
        self.ramp_floor = self.bitrate;
    }

    pub fn on_packet(&mut self, now: Instant, bytes: usize) {
        self.window_bytes += bytes as u64;
        self.last_packet = Some(now);
    }

    /// Close a measuring window of `elapsed`, at `now`.
    pub fn on_window(&mut self, elapsed: Duration, now: Instant) {
        let ms = elapsed.as_millis().max(1) as u64;
        let rate = self.window_bytes * 8 * 1000 / ms;
        self.window_bytes = 0;
        // Paused, it costs what it cost when it last ran. Counted down to
        // nothing while paused, a layer looked cheap and was climbed to on a
        // link it then overfilled (issue 15). (A layer that is not paused
        // counts its empty windows: a still screen sends a frame a second.)
        if rate == 0 && self.paused {
            return;
        }
        // Keyframes make single windows spiky; a quarter of the new window
        // follows changes within a couple of seconds.
        let next = if self.bitrate == 0 {
            rate
        } else {
            (self.bitrate * 3 + rate) / 4
        };
        // Just resumed, the publisher's encoder starts it low and climbs
        // back to its old rate: counted at that until it had time to (the
        // rate it was resumed at, not the last window's: a keyframe's window
        // must not ratchet it up).
        let ramping = self
            .resumed_at
            .is_some_and(|t| now.saturating_duration_since(t) < RAMP_UP);
        self.bitrate = if ramping {
            next.max(self.ramp_floor)
        } else {
            next
        };
    }

    /// Being sent now, or about to be (paused by us, or just asked for).
    pub fn usable(&self, now: Instant) -> bool {
        self.arriving(now)
            || (self.paused && self.retry_at.is_none_or(|t| now >= t))
            || self
                .resumed_at
                .is_some_and(|t| now.saturating_duration_since(t) < RESUME_GRACE)
    }

    pub fn arriving(&self, now: Instant) -> bool {
        self.last_packet
            .is_some_and(|t| now.saturating_duration_since(t) < LAYER_GONE_AFTER)
    }
}

/// A layer as the allocation sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerChoice {
    pub usable: bool,
    /// Bits per second it is expected to take.
    pub cost: u64,
    pub width: u32,
    pub height: u32,
}

/// What the allocation knows of a producer's layers, lowest first.
pub(crate) fn layer_choices(layers: &[LayerIn], now: Instant) -> Vec<LayerChoice> {
    let n = layers.len();
    // Sizes not yet seen are derived from one that was (each layer doubles).
    let known = layers
        .iter()
        .enumerate()
        .find_map(|(i, l)| l.size.map(|s| (i, s)));
    layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let (width, height) = l.size.unwrap_or_else(|| match known {
                Some((k, (w, h))) => scale(w, h, i as i32 - k as i32),
                None => NOMINAL_SIZE[(i + 3 - n.min(3)).min(2)],
            });
            let nominal = NOMINAL_BITRATE[i.min(2)];
            // A paused layer costs what it cost when it last ran.
            let cost = if l.bitrate > 0 { l.bitrate } else { nominal };
            LayerChoice {
                // A single layer is all there is: sent whenever it comes.
                usable: n == 1 || l.usable(now),
                cost,
                width,
                height,
            }
        })
        .collect()
}

fn scale(w: u32, h: u32, steps: i32) -> (u32, u32) {
    if steps >= 0 {
        (w << steps, h << steps)
    } else {
        (w >> -steps, h >> -steps)
    }
}

/// One video a subscriber receives, as input to [`allocate`].
#[derive(Debug, Clone)]
pub struct Want {
    pub priority: Priority,
    /// `None`: the client never said (no limit by size).
    pub view: Option<View>,
    pub layers: Vec<LayerChoice>,
    /// Whether the track can adapt (simulcast): a single-layer video is sent
    /// whenever it is on screen, since nothing smaller exists and the
    /// publisher's own congestion control already bounds it.
    pub adaptive: bool,
    /// The layer chosen last time (for hysteresis).
    pub previous: Option<u8>,
}

impl Want {
    /// The highest layer worth sending at this view: the smallest usable layer
    /// that covers the tile, or the largest usable one.
    fn max_layer(&self) -> Option<usize> {
        let usable: Vec<usize> = (0..self.layers.len())
            .filter(|&i| self.layers[i].usable)
            .collect();
        let top = *usable.last()?;
        if !View::on_screen(self.view) {
            return None;
        }
        let Some(View::Size { width, height }) = self.view else {
            return Some(top);
        };
        usable
            .iter()
            .copied()
            .find(|&i| {
                let l = &self.layers[i];
                // In u64: sizes come from clients.
                let covers = |have: u32, want: u32| {
                    u64::from(have) * 100 >= u64::from(want) * u64::from(SIZE_SLACK_PCT)
                };
                covers(l.width, width) && covers(l.height, height)
            })
            .or(Some(top))
    }
}

/// The result of one allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// Per want, the layer to send (`None`: nothing).
    pub layers: Vec<Option<u8>>,
    /// Wants left without video for lack of bandwidth (not by view).
    pub starved: usize,
    /// Bits per second the chosen layers take.
    pub used: u64,
    /// Bits per second the subscriber would take with no limit but views.
    pub desired: u64,
    /// A video went below the layer it had, though its view and its
    /// publisher still allow that layer: it fell for lack of bandwidth.
    pub fell: bool,
}

/// Choose a layer for each video a subscriber receives, within `budget`
/// (bits/s for video, audio already taken off). First every video gets its
/// lowest useful layer, in priority order, while the budget lasts; then, again
/// in priority order, each climbs as far as its view and the budget allow.
pub fn allocate(wants: &[Want], budget: u64) -> Allocation {
    allocate_with(wants, budget, 0)
}

/// [`allocate`], but a video already being sent keeps its lowest layer
/// through a small shortfall ([`HOLD_LOWEST_SLACK_PCT`]).
pub fn allocate_holding(wants: &[Want], budget: u64) -> Allocation {
    allocate_with(wants, budget, HOLD_LOWEST_SLACK_PCT)
}

fn allocate_with(wants: &[Want], budget: u64, hold_pct: u64) -> Allocation {
    let mut order: Vec<usize> = (0..wants.len()).collect();
    // Stable: equal priorities keep the caller's order.
    order.sort_by_key(|&i| std::cmp::Reverse(wants[i].priority));
    let mut chosen: Vec<Option<u8>> = vec![None; wants.len()];
    let max: Vec<Option<usize>> = wants.iter().map(Want::max_layer).collect();
    let lowest: Vec<Option<usize>> = wants
        .iter()
        .zip(&max)
        .map(|(w, m)| m.and_then(|m| (0..=m).find(|&i| w.layers[i].usable)))
        .collect();
    let desired = wants
        .iter()
        .zip(&max)
        .filter_map(|(w, m)| m.map(|m| w.layers[m].cost))
        .sum();
    let mut left = budget;
    let mut starved = 0;
    for &i in &order {
        let Some(low) = lowest[i] else { continue };
        let cost = wants[i].layers[low].cost;
        let slack = if wants[i].previous.is_some() {
            cost * hold_pct / 100
        } else {
            0
        };
        if cost <= left + slack || !wants[i].adaptive {
            left = left.saturating_sub(cost);
            chosen[i] = Some(low as u8);
        } else {
            starved += 1;
        }
    }
    for &i in &order {
        let (Some(cur), Some(top)) = (chosen[i], max[i]) else {
            continue;
        };
        let w = &wants[i];
        let mut at = cur as usize;
        for next in (at + 1)..=top {
            if !w.layers[next].usable {
                continue;
            }
            let extra = w.layers[next].cost.saturating_sub(w.layers[at].cost);
            // Holding a layer needs its cost; reaching a new one needs headroom.
            let climbing = w.previous.is_none_or(|p| (p as usize) < next);
            let need = if climbing {
                (w.layers[next].cost * UPGRADE_HEADROOM_PCT / 100).saturating_sub(w.layers[at].cost)
            } else {
                extra
            };
            if need > left {
                break;
            }
            left -= extra;
            at = next;
        }
        chosen[i] = Some(at as u8);
    }
    let used = chosen
        .iter()
        .zip(wants)
        .filter_map(|(c, w)| c.map(|c| w.layers[c as usize].cost))
        .sum();
    let fell = wants.iter().zip(&chosen).zip(&max).any(|((w, c), m)| {
        w.previous.is_some_and(|p| {
            let p = usize::from(p);
            w.layers.get(p).is_some_and(|l| l.usable)
                && m.is_some_and(|m| p <= m)
                && c.is_none_or(|c| usize::from(c) < p)
        })
    });
    Allocation {
        layers: chosen,
        starved,
        used,
        desired,
        fell,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Vec<LayerChoice> {
        (0..3)
            .map(|i| LayerChoice {
                usable: true,
                cost: NOMINAL_BITRATE[i],
                width: NOMINAL_SIZE[i].0,
                height: NOMINAL_SIZE[i].1,
            })
            .collect()
    }

    fn camera(priority: Priority, view: Option<View>) -> Want {
        Want {
            priority,
            view,
            layers: three(),
            adaptive: true,
            previous: None,
        }
    }

    #[test]
    fn a_paused_layer_costs_what_it_cost_when_it_ran_and_a_resumed_one_no_less_while_it_ramps_up() {
        let tick = Duration::from_millis(500);
        let t0 = Instant::now();
        let mut m = LayerIn::new(Some(Rid::from("m")));
        // 500 kbit/s: 31 250 bytes a half second.
        for i in 0..8 {
            m.on_packet(t0, 31_250);
            m.on_window(tick, t0 + tick * i);
        }
        assert_eq!(m.bitrate, 500_000);
        // Paused for 10 s: nothing comes.
        m.pause();
        for i in 8..28 {
            m.on_window(tick, t0 + tick * i);
        }
        assert_eq!(m.bitrate, 500_000, "paused, it still costs what it did");
        // Resumed: the encoder restarts it at 100 kbit/s and climbs.
        let resumed = t0 + tick * 28;
        m.resume(resumed);
        // Its first window holds a keyframe (1.2 Mbit/s for half a second):
        // that does not raise what it is counted at.
        m.on_packet(resumed, 75_000);
        m.on_window(tick, resumed);
        for i in 1..6 {
            m.on_packet(resumed, 6_250);
            m.on_window(tick, resumed + tick * i);
        }
        assert_eq!(m.bitrate, 500_000, "ramping up, counted at its old rate");
        // Past the ramp, what it sends now counts.
        for i in 8..20 {
            m.on_packet(resumed, 6_250);
            m.on_window(tick, resumed + tick * i);
        }
        assert!(m.bitrate < 120_000, "settled low: {}", m.bitrate);
    }

    #[test]
    fn a_layer_not_paused_counts_its_empty_windows() {
        // A still screen: one 25 000-byte frame every 2 s, 100 kbit/s on
        // average, never paused.
        let tick = Duration::from_millis(500);
        let t0 = Instant::now();
        let mut s = LayerIn::new(None);
        for i in 0..40u32 {
            if i % 4 == 0 {
                s.on_packet(t0 + tick * i, 25_000);
            }
            s.on_window(tick, t0 + tick * i);
        }
        assert!(
            s.bitrate < 250_000,
            "counted near its average, not its busy windows' 400 kbit/s: {}",
            s.bitrate
        );
    }

    #[test]
    fn audio_costs_what_it_measures_and_a_new_talker_at_once() {
        let tick = Duration::from_millis(500);
        let mut a = AudioRate::default();
        assert_eq!(
            a.reserve(false),
            AUDIO_RESERVE,
            "unmeasured: assumed a talker"
        );
        // DTX: one 3-byte packet per 400 ms or so.
        a.on_packet(3, 3);
        a.on_window(tick);
        assert!(a.reserve(false) < 2_000, "silence: {}", a.reserve(false));
        // A talker with RED: 25 packets of 160 bytes (80 primary) in half a second.
        (0..25).for_each(|_| a.on_packet(160, 80));
        a.on_window(tick);
        assert_eq!(a.reserve(false), 25 * (160 + 62) * 8 * 2, "risen at once");
        assert_eq!(a.reserve(true), 25 * (80 + 62) * 8 * 2, "the primary alone");
        // Quiet again: it falls over a few ticks, not at once.
        a.on_window(tick);
        assert!(a.reserve(false) > 60_000 && a.reserve(false) < 90_000);
    }

    #[test]
    fn a_narrow_link_gets_the_low_layer_of_every_camera() {
        let wants = vec![
            camera(Priority::Normal, None),
            camera(Priority::Normal, None),
        ];
        // 400 kbit/s less two voices.
        let a = allocate(&wants, 400_000 - 2 * AUDIO_RESERVE);
        assert_eq!(a.layers, vec![Some(0), Some(0)]);
        assert_eq!(a.starved, 0);
    }

    #[test]
    fn a_video_being_sent_keeps_its_lowest_layer_through_a_small_dip() {
        let mut wants = vec![
            camera(Priority::Normal, None),
            camera(Priority::Normal, None),
        ];
        // 10 % short of two low layers: a new video is not started...
        let dip = 2 * NOMINAL_BITRATE[0] * 90 / 100;
        assert_eq!(allocate_holding(&wants, dip).layers, vec![Some(0), None]);
        // ...but two already on their low layers both keep them.
        wants.iter_mut().for_each(|w| w.previous = Some(0));
        let a = allocate_holding(&wants, dip);
        assert_eq!(a.layers, vec![Some(0), Some(0)]);
        assert_eq!(a.starved, 0);
        assert_eq!(allocate(&wants, dip).starved, 1, "without holding");
        // A real fall still stops one.
        assert_eq!(
            allocate_holding(&wants, NOMINAL_BITRATE[0] * 3 / 2).layers,
            vec![Some(0), None]
        );
    }

    #[test]
    fn a_wide_link_gets_the_top_layer() {
        let wants = vec![
            camera(Priority::Normal, None),
            camera(Priority::Normal, None),
        ];
        let a = allocate(&wants, 10_000_000);
        assert_eq!(a.layers, vec![Some(2), Some(2)]);
        assert_eq!(a.desired, 3_000_000);
    }

    #[test]
    fn a_thumbnail_never_gets_more_than_it_shows() {
        let small = View::Size {
            width: 320,
            height: 180,
        };
        let mid = View::Size {
            width: 600,
            height: 338,
        };
        let wants = vec![
            camera(Priority::Normal, Some(small)),
            camera(Priority::Normal, Some(mid)),
            camera(Priority::Normal, Some(View::Hidden)),
        ];
        let a = allocate(&wants, 50_000_000);
        assert_eq!(a.layers, vec![Some(0), Some(1), None]);
    }

    #[test]
    fn absurd_sizes_ask_for_no_more_than_the_top_layer() {
        let huge = View::Size {
            width: u32::MAX,
            height: u32::MAX,
        };
        let a = allocate(&[camera(Priority::Normal, Some(huge))], 700_000);
        assert_eq!(a.layers, vec![Some(1)], "the budget still decides");
    }

    #[test]
    fn the_screen_and_the_speaker_come_before_the_rest() {
        let wants = vec![
            camera(Priority::Normal, None),
            camera(Priority::Speaker, None),
            camera(Priority::Screen, None),
        ];
        // Room for two low layers only.
        let a = allocate(&wants, 250_000);
        assert_eq!(a.layers, vec![None, Some(0), Some(0)]);
        assert_eq!(a.starved, 1);
        // Room for the screen's top layer and the others' low ones.
        let a = allocate(&wants, 1_500_000 * 115 / 100 + 200_000);
        assert_eq!(a.layers, vec![Some(0), Some(0), Some(2)]);
    }

    #[test]
    fn climbing_needs_headroom_holding_does_not() {
        let mut w = camera(Priority::Normal, None);
        let budget = 520_000; // above the middle layer's cost, below its headroom
        assert_eq!(allocate(&[w.clone()], budget).layers, vec![Some(0)]);
        w.previous = Some(1);
        assert_eq!(allocate(&[w], budget).layers, vec![Some(1)]);
    }

    #[test]
    fn a_layer_the_publisher_stopped_sending_is_not_chosen() {
        let mut w = camera(Priority::Normal, None);
        w.layers[2].usable = false;
        assert_eq!(allocate(&[w.clone()], 50_000_000).layers, vec![Some(1)]);
        w.layers[0].usable = false;
        w.layers[1].usable = false;
        assert_eq!(allocate(&[w], 50_000_000).layers, vec![None]);
    }

    #[test]
    fn a_single_layer_video_is_sent_whatever_the_estimate() {
        let w = Want {
            priority: Priority::Normal,
            view: None,
            layers: vec![LayerChoice {
                usable: true,
                cost: 2_500_000,
                width: 1280,
                height: 720,
            }],
            adaptive: false,
            previous: None,
        };
        assert_eq!(allocate(&[w], 300_000).layers, vec![Some(0)]);
    }

    #[test]
    fn unknown_sizes_follow_the_one_keyframe_seen() {
        let now = Instant::now();
        let mut layers: Vec<LayerIn> = SIMULCAST_RIDS
            .iter()
            .map(|r| LayerIn::new(Some(Rid::from(*r))))
            .collect();
        layers[2].size = Some((960, 540));
        let c = layer_choices(&layers, now);
        assert_eq!((c[0].width, c[0].height), (240, 135));
        assert_eq!((c[1].width, c[1].height), (480, 270));
        assert!(c.iter().all(|l| !l.usable), "nothing arrived yet");
    }
}

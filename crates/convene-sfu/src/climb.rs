//! When a subscriber may climb to a higher layer.
//!
//! A downlink estimate from congestion feedback overshoots for a moment now
//! and then, most of all while it recovers from a fall. A climb on such a
//! moment sends a bigger layer the link cannot carry, and the fall back
//! costs a keyframe and a visible step each way. So a climb is judged by
//! the lowest estimate of the last [`STEADY_WINDOW`], not the latest, and
//! none happens within [`CLIMB_AFTER_FALL`] of a video falling for lack of
//! bandwidth. Falling is never delayed: a layer the link cannot carry goes
//! at once.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::layers::Want;

/// How long an estimate must have held for a climb to be judged by it.
pub const STEADY_WINDOW: Duration = Duration::from_secs(1);
/// No climb this long after a video fell for lack of bandwidth.
pub const CLIMB_AFTER_FALL: Duration = Duration::from_secs(4);
/// Estimates kept (they change on moves of 5 % or more; a burst of them in
/// the window beyond this only makes the gate more careful).
const MAX_SAMPLES: usize = 32;

#[derive(Debug, Default)]
pub struct ClimbGate {
    /// Each estimate and when it came, oldest first; the first was in force
    /// at the start of the window.
    samples: VecDeque<(Instant, u64)>,
    last_fall: Option<Instant>,
}

impl ClimbGate {
    /// A new downlink estimate (bits/s).
    pub fn on_estimate(&mut self, now: Instant, bps: u64) {
        let start = now.checked_sub(STEADY_WINDOW);
        // Drop estimates that were replaced before the window began.
        while self.samples.len() >= 2 && start.is_some_and(|s| self.samples[1].0 <= s) {
            self.samples.pop_front();
        }
        if self.samples.len() >= MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((now, bps));
    }

    /// A video fell to a lower layer (or none) for lack of bandwidth.
    pub fn on_fall(&mut self, now: Instant) {
        self.last_fall = Some(now);
    }

    /// The estimate a climb is judged by now (at most `current`), or `None`
    /// while no climb may happen.
    pub fn climb_estimate(&self, now: Instant, current: u64) -> Option<u64> {
        if self
            .last_fall
            .is_some_and(|t| now.saturating_duration_since(t) < CLIMB_AFTER_FALL)
        {
            return None;
        }
        let start = now.checked_sub(STEADY_WINDOW);
        let steady = self
            .samples
            .iter()
            .enumerate()
            .filter(|&(i, _)| {
                // In force during the window: replaced after it began.
                match (self.samples.get(i + 1), start) {
                    (Some(next), Some(s)) => next.0 > s,
                    _ => true,
                }
            })
            .map(|(_, &(_, bps))| bps)
            .min()
            .unwrap_or(current);
        Some(steady.min(current))
    }
}

/// Keep every video in `chosen` from climbing above both the layer it had
/// and what `steady` (an allocation at the climb estimate; `None`: no climb
/// now) allows. Starting a video at its lowest layer is not a climb.
pub fn limit_climbs(wants: &[Want], chosen: &mut [Option<u8>], steady: Option<&[Option<u8>]>) {
    for (i, (w, c)) in wants.iter().zip(chosen.iter_mut()).enumerate() {
        let Some(now) = *c else { continue };
        let Some(floor) = w.layers.iter().position(|l| l.usable) else {
            continue;
        };
        let allowed = steady.and_then(|s| s.get(i).copied().flatten());
        let cap = w
            .previous
            .max(allowed)
            .map_or(floor, |l| usize::from(l).max(floor));
        let top = usize::from(now).min(cap);
        // The highest usable layer up to there (the one held may have gone).
        *c = (floor..=top)
            .rev()
            .find(|&l| w.layers[l].usable)
            .map(|l| l as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{allocate_holding, LayerChoice, Priority, NOMINAL_BITRATE, NOMINAL_SIZE};

    fn camera(previous: Option<u8>) -> Want {
        Want {
            priority: Priority::Normal,
            view: None,
            layers: (0..3)
                .map(|i| LayerChoice {
                    usable: true,
                    cost: NOMINAL_BITRATE[i],
                    width: NOMINAL_SIZE[i].0,
                    height: NOMINAL_SIZE[i].1,
                })
                .collect(),
            adaptive: true,
            previous,
        }
    }

    #[test]
    fn a_moment_of_overshoot_is_not_climbed_on() {
        let t0 = Instant::now();
        let mut g = ClimbGate::default();
        g.on_estimate(t0, 300_000);
        let spike = t0 + Duration::from_secs(5);
        g.on_estimate(spike, 1_200_000);
        // Half a second into the spike, climbs are judged at 300 kbit/s...
        let at = spike + Duration::from_millis(500);
        assert_eq!(g.climb_estimate(at, 1_200_000), Some(300_000));
        // ...and once it has held for the window, at the spike's level.
        let later = spike + STEADY_WINDOW + Duration::from_millis(1);
        assert_eq!(g.climb_estimate(later, 1_200_000), Some(1_200_000));
        // A new low is taken at once.
        g.on_estimate(later, 500_000);
        assert_eq!(g.climb_estimate(later, 500_000), Some(500_000));
    }

    #[test]
    fn no_climb_soon_after_a_fall() {
        let t0 = Instant::now();
        let mut g = ClimbGate::default();
        g.on_estimate(t0, 2_000_000);
        assert_eq!(g.climb_estimate(t0, 2_000_000), Some(2_000_000));
        g.on_fall(t0);
        assert_eq!(g.climb_estimate(t0 + CLIMB_AFTER_FALL / 2, 2_000_000), None);
        assert!(g.climb_estimate(t0 + CLIMB_AFTER_FALL, 2_000_000).is_some());
    }

    #[test]
    fn limited_climbs_keep_what_is_held_and_allow_falls() {
        let wants = vec![camera(Some(0)), camera(Some(2)), camera(None)];
        // The latest estimate would lift every camera to the top.
        let mut chosen = vec![Some(2), Some(1), Some(2)];
        limit_climbs(&wants, &mut chosen, None);
        assert_eq!(
            chosen,
            vec![Some(0), Some(1), Some(0)],
            "no climb: held where it was, the fall kept, a new video at its lowest"
        );
        let mut chosen = vec![Some(2), Some(1), Some(2)];
        limit_climbs(&wants, &mut chosen, Some(&[Some(1), Some(0), Some(1)]));
        assert_eq!(
            chosen,
            vec![Some(1), Some(1), Some(1)],
            "as far as the steady estimate allows"
        );
    }

    #[test]
    fn a_held_layer_that_stopped_arriving_gives_way_to_the_next_one_down() {
        let mut w = camera(Some(2));
        w.layers[2].usable = false;
        let mut chosen = vec![Some(1)];
        limit_climbs(&[w], &mut chosen, None);
        assert_eq!(chosen, vec![Some(1)]);
    }

    #[test]
    fn the_steady_allocation_is_an_ordinary_one() {
        // A sanity check of how adapt.rs uses this: two cameras on their low
        // layers, an estimate that overshoots a 400 kbit/s link.
        let wants = vec![camera(Some(0)), camera(Some(0))];
        let mut chosen = allocate_holding(&wants, 1_000_000).layers;
        assert!(
            chosen.iter().any(|&c| c > Some(0)),
            "the spike alone would climb"
        );
        let steady = allocate_holding(&wants, 300_000).layers;
        limit_climbs(&wants, &mut chosen, Some(&steady));
        assert_eq!(chosen, vec![Some(0), Some(0)]);
    }
}

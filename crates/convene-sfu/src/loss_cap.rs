//! A cap on a subscriber's downlink estimate from the loss it reports.
//!
//! str0m hands on its estimate as a 3 s average, so when a subscriber's link
//! narrows, the SFU goes on sending layers the link cannot carry for
//! seconds, and the loss of those seconds then drives the estimate far
//! below the link (issue 15: the camera stopped). Trusting str0m's latest
//! estimate instead fails the other way: on a busy machine the estimates of
//! healthy subscribers dip every few seconds (late feedback reads as delay).
//! Loss is what tells the two apart. When the subscriber's congestion
//! feedback says a real share of what was sent in the last second was lost,
//! what got through is known: the rate sent times the share delivered. The
//! SFU then chooses layers within that, at once, and holds the cap while the
//! loss lasts and for [`HOLD`] after; the climb gate keeps it from climbing
//! straight back.

use std::time::{Duration, Instant};

/// Loss (of the last second, from congestion feedback) that confirms a fall.
pub const CONFIRMING_LOSS: f32 = 0.10;
/// How long a cap holds after the last second that confirmed it.
pub const HOLD: Duration = Duration::from_secs(6);
/// Of what got through, the share the cap leaves for media: room for the
/// link's other traffic and the estimate's own error.
const MARGIN_PCT: u64 = 85;
/// Loss (of the last half second and second) that, going on under a cap
/// while more than the cap is sent, lowers it as a confirmed fall does.
pub const PERSISTING_LOSS: f32 = 0.02;
/// Below this rate sent, a second's loss says nothing about the link.
const MIN_SENT_BPS: u64 = 64_000;

#[derive(Debug, Default)]
pub struct LossCap {
    /// Bytes sent so far, and when, at the last statistics.
    sent: Option<(u64, Instant)>,
    /// The cap (bits/s) and the last second that confirmed it.
    cap: Option<(u64, Instant)>,
    /// A lower cap the last period asked for: one more period of the same
    /// (still sending above the cap, still losing) applies it. A single
    /// period may hold the old rate's loss just after a fall.
    lower_asked: Option<u64>,
    /// What a recent half second delivered without loss (bits/s), and when:
    /// the link carried at least that.
    proven: Option<(u64, Instant)>,
    /// The cap as loss made it, while clean half seconds have raised it
    /// (see [`RAISE_PCT`]).
    raised_from: Option<u64>,
    /// Loss met a raised cap: the link's limit is found, no more raises
    /// while this cap holds.
    raise_done: bool,
}

/// A clean half second that used the cap raises it by this much (per
/// cent): a cap made at 85 % of what one lossy half second delivered can
/// leave a camera without room on a link that would carry it, and what is
/// sent within the cap never proves more (issue 15, scenario 1: a camera
/// paused for 9 s). Loss after a raise goes back to the cap loss made.
const RAISE_PCT: u64 = 5;
/// The share of the cap (per cent) a clean half second must have sent to
/// raise it: a cap left unused says nothing of the link above it.
const USED_PCT: u64 = 90;

/// How long what a clean half second delivered stays proven through
/// half seconds with some loss (under [`CONFIRMING_LOSS`]): one keyframe's
/// burst just as a cap ended dropped the estimate to str0m's, far below the
/// link, and paused a camera (issue 15, scenario 1).
const PROVEN_KEPT: Duration = Duration::from_secs(2);

/// Loss (of the last half second) under which what it delivered proves the
/// link carries that much.
const PROVEN_LOSS: f64 = 0.01;

/// What the subscriber's feedback says of the packets sent in the last
/// half second: the rates (bits/s) at which they were sent and at which
/// they reached it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recent {
    pub sent: u64,
    pub delivered: u64,
}

impl LossCap {
    /// One statistics period: `bytes_tx` sent so far, the share of the last
    /// second's packets the subscriber's feedback says were lost, and, when
    /// known, what the last half second's did ([`Recent`]). Returns the cap
    /// when it changed.
    pub fn on_stats(
        &mut self,
        now: Instant,
        bytes_tx: u64,
        loss: Option<f32>,
        recent: Option<Recent>,
    ) -> Option<u64> {
        let previous = self.sent.replace((bytes_tx, now));
        let (before, at) = previous?;
        let secs = now.saturating_duration_since(at).as_secs_f64();
        if secs <= 0.0 {
            return None;
        }
        let second_bps = (bytes_tx.saturating_sub(before) as f64 * 8.0 / secs) as u64;
        if self.cap.is_some() && self.cap(now).is_none() {
            // Lapsed: nothing of it is left to raise, revert or lower.
            self.cap = None;
            self.raised_from = None;
            self.raise_done = false;
            self.lower_asked = None;
        }
        // The last half second, counted in bytes, where the feedback says:
        // a second whose first part was sent before the link narrowed (or at
        // another rate) says less (its loss share times what it sent reads
        // well above the link). Else the second, by its loss share.
        match recent {
            Some(r)
                if r.sent >= MIN_SENT_BPS
                    && (r.delivered as f64) >= r.sent as f64 * (1.0 - PROVEN_LOSS) =>
            {
                self.proven = Some((r.delivered, now));
                if let Some(raised) = self.raise(now, r.sent) {
                    return Some(raised);
                }
            }
            // Some loss: the link carried at most what arrived (a modest
            // fall, never confirmed, is followed down).
            Some(r) if r.sent >= MIN_SENT_BPS => {
                if let Some((p, at)) = self.proven {
                    self.proven = Some((p.min(r.delivered), at));
                }
            }
            _ => {}
        }
        // Real loss in the last second confirms a fall (a half second is
        // too short alone: one burst dropped on a busy machine would do);
        // the last half second says whether it goes on.
        let second_loss = loss.filter(|l| l.is_finite()).unwrap_or(0.0);
        let (sent_bps, delivered, loss) = match recent {
            Some(r) if r.sent > 0 => {
                let lost = 1.0 - r.delivered as f64 / r.sent as f64;
                (r.sent, r.delivered, (lost as f32).min(second_loss))
            }
            _ => {
                let got = (second_bps as f64 * f64::from(1.0 - second_loss.clamp(0.0, 1.0))) as u64;
                (second_bps, got, second_loss)
            }
        };
        // Loss after a raise: back to the cap loss made, and no more raises
        // (a confirmed fall goes on from there).
        let mut reverted = None;
        if loss.is_finite() && loss >= PERSISTING_LOSS && sent_bps >= MIN_SENT_BPS {
            if let (Some(base), Some((_, at))) = (self.raised_from.take(), self.cap) {
                self.raise_done = true;
                self.lower_asked = None;
                self.cap = Some((base, at));
                reverted = Some(base);
            }
        }
        self.on_loss(now, sent_bps, delivered, loss).or(reverted)
    }

    /// The loss share `loss` of a span sent at `sent_bps`, of which
    /// `delivered` got through: a new cap, a lower one, or the one in force
    /// kept. Returns the cap when it changed.
    fn on_loss(&mut self, now: Instant, sent_bps: u64, delivered: u64, loss: f32) -> Option<u64> {
        let confirmed = loss.is_finite() && loss >= CONFIRMING_LOSS;
        // Loss that goes on under a cap while more than the cap is sent (its
        // layers cost more than counted: retransmissions, keyframes asked
        // for after the loss): the cap is above what the link carries of it.
        // Left alone it lapsed with the loss still going and the estimate
        // fell to str0m's, far below the link (issue 15, scenario 1).
        let persisting = loss.is_finite()
            && loss >= PERSISTING_LOSS
            && self.cap(now).is_some_and(|c| sent_bps > c);
        if !(confirmed || persisting) || sent_bps < MIN_SENT_BPS {
            self.lower_asked = None;
            return None;
        }
        if confirmed {
            // A fall: what was proven before no longer holds.
            self.proven = None;
        }
        let cap = delivered * MARGIN_PCT / 100;
        // Only a span sent above the cap can lower it, or one that sent at
        // least half the cap and got under half of it through: loss read
        // against a rate sent within the cap is random loss, or the old
        // queue's just after a fall, and would drive the cap down to
        // nothing. Half the cap sent and under half of it through is no such
        // thing: the cap was made from a half second that straddled the
        // fall (844 kbit/s on a 400 kbit/s link, which then lost a third of
        // what was sent within it for as long as the cap held, renewed by
        // that loss: issue 15, scenario 1). Two periods, as a deeper fall.
        let lower = match self.cap(now) {
            None => true,
            Some(c) if cap < c && (sent_bps > c || (sent_bps * 2 >= c && delivered * 2 < c)) => {
                match self.lower_asked.replace(cap) {
                    Some(asked) => {
                        self.lower_asked = None;
                        return self.set(now, cap.max(asked));
                    }
                    None => false,
                }
            }
            Some(_) => {
                self.lower_asked = None;
                false
            }
        };
        // Loss at the cap keeps it in force; a lower one replaces it.
        match self.cap {
            Some((c, _)) if !lower => {
                self.cap = Some((c, now));
                None
            }
            _ => self.set(now, cap),
        }
    }

    fn set(&mut self, now: Instant, cap: u64) -> Option<u64> {
        self.cap = Some((cap, now));
        self.raised_from = None;
        self.raise_done = false;
        Some(cap)
    }

    /// A clean half second that sent `sent` (bits/s): raise a cap in force
    /// that it used. The cap's hold is not renewed (nothing was lost).
    fn raise(&mut self, now: Instant, sent: u64) -> Option<u64> {
        let c = self.cap(now)?;
        if self.raise_done || sent * 100 < c * USED_PCT {
            return None;
        }
        let (_, at) = self.cap?;
        self.raised_from.get_or_insert(c);
        let raised = c * (100 + RAISE_PCT) / 100;
        self.cap = Some((raised, at));
        Some(raised)
    }

    /// What the link was last seen to carry without loss (bits/s; 0 when
    /// not seen): an estimate below it is not believed (str0m's falls far
    /// below the link after a burst of loss, and stays there for seconds
    /// while everything sent arrives).
    pub fn proven(&self, now: Instant) -> u64 {
        self.proven
            .filter(|(_, t)| now.saturating_duration_since(*t) < PROVEN_KEPT)
            .map_or(0, |(p, _)| p)
    }

    /// The cap in force now, if any.
    pub fn cap(&self, now: Instant) -> Option<u64> {
        self.cap
            .filter(|(_, t)| now.saturating_duration_since(*t) < HOLD)
            .map(|(c, _)| c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn loss_caps_at_what_got_through_and_holds_while_it_lasts() {
        let t0 = Instant::now();
        let mut c = LossCap::default();
        assert_eq!(
            c.on_stats(t0, 0, None, None),
            None,
            "a start, nothing to compare"
        );
        // 1.6 Mbit/s sent into a 400 kbit/s link: three quarters lost.
        let cap = c.on_stats(t0 + SECOND, 200_000, Some(0.75), None).unwrap();
        assert_eq!(cap, 1_600_000 / 4 * 85 / 100);
        assert_eq!(c.cap(t0 + SECOND), Some(cap));
        // Loss goes on at the lower rate (the old queue draining): the cap
        // stays, not lowered by the loss of what is sent within it.
        let steady = c.on_stats(t0 + SECOND * 2, 230_000, Some(0.6), None);
        assert_eq!(steady, None);
        assert_eq!(c.cap(t0 + SECOND * 2), Some(cap));
        // Clean seconds: it holds for HOLD after the last lossy one, then goes.
        let last = t0 + SECOND * 2;
        assert_eq!(c.on_stats(t0 + SECOND * 3, 260_000, Some(0.0), None), None);
        assert_eq!(c.cap(last + HOLD - SECOND), Some(cap));
        assert_eq!(c.cap(last + HOLD), None);
    }

    #[test]
    fn a_little_loss_or_little_sent_is_no_cap() {
        let t0 = Instant::now();
        let mut c = LossCap::default();
        c.on_stats(t0, 0, None, None);
        assert_eq!(c.on_stats(t0 + SECOND, 250_000, Some(0.05), None), None);
        assert_eq!(
            c.on_stats(t0 + SECOND * 2, 250_000 + 4_000, Some(0.9), None),
            None
        );
        assert_eq!(
            c.on_stats(t0 + SECOND * 3, 500_000, Some(f32::NAN), None),
            None
        );
        // One burst lost in a half second of an otherwise clean second (a
        // busy machine's full socket buffer) is no fall.
        let burst = Recent {
            sent: 1_000_000,
            delivered: 800_000,
        };
        assert_eq!(
            c.on_stats(t0 + SECOND * 4, 750_000, Some(0.03), Some(burst)),
            None
        );
        assert_eq!(c.cap(t0 + SECOND * 4), None);
    }

    #[test]
    fn a_deeper_fall_lowers_the_cap_when_two_periods_say_so() {
        let t0 = Instant::now();
        let mut c = LossCap::default();
        c.on_stats(t0, 0, None, None);
        let first = c.on_stats(t0 + SECOND, 125_000, Some(0.5), None).unwrap();
        // Still sending above the cap, and losing more of it: one period
        // may be the old rate's queue; two are a deeper fall.
        assert_eq!(c.on_stats(t0 + SECOND * 2, 250_000, Some(0.8), None), None);
        assert_eq!(c.cap(t0 + SECOND * 2), Some(first));
        let second = c
            .on_stats(t0 + SECOND * 3, 375_000, Some(0.8), None)
            .unwrap();
        assert!(second < first);
        assert_eq!(c.cap(t0 + SECOND * 3), Some(second));
    }

    #[test]
    fn the_last_half_second_counted_in_bytes_caps_a_fall_in_the_middle_of_a_second() {
        let t0 = Instant::now();
        let mut c = LossCap::default();
        c.on_stats(t0, 0, None, None);
        // 1.6 Mbit/s for a second whose second half met a 400 kbit/s link:
        // the second's loss share says 0.35, the last half second's bytes
        // say what the link carried.
        let recent = Recent {
            sent: 1_600_000,
            delivered: 420_000,
        };
        let cap = c
            .on_stats(t0 + SECOND, 200_000, Some(0.35), Some(recent))
            .unwrap();
        assert_eq!(cap, 420_000 * 85 / 100);
        // Then within the cap and without loss: the link carries that.
        let clean = Recent {
            sent: 150_000,
            delivered: 150_000,
        };
        assert_eq!(
            c.on_stats(t0 + SECOND * 2, 220_000, Some(0.4), Some(clean)),
            None
        );
        assert_eq!(c.cap(t0 + SECOND * 2), Some(cap));
        assert_eq!(c.proven(t0 + SECOND * 2), 150_000);
        // Loss again: nothing is proven.
        let lossy = Recent {
            sent: 150_000,
            delivered: 120_000,
        };
        c.on_stats(t0 + SECOND * 3, 240_000, Some(0.2), Some(lossy));
        assert_eq!(c.proven(t0 + SECOND * 3), 0, "a fall: nothing is proven");
    }

    #[test]
    fn what_a_clean_half_second_proved_outlasts_a_little_loss_for_a_while() {
        let t0 = Instant::now();
        let mut c = LossCap::default();
        c.on_stats(t0, 0, None, None);
        let clean = Recent {
            sent: 320_000,
            delivered: 320_000,
        };
        c.on_stats(t0 + SECOND, 40_000, Some(0.0), Some(clean));
        assert_eq!(c.proven(t0 + SECOND), 320_000);
        // A keyframe's burst: 5 % of the next half second lost.
        let burst = Recent {
            sent: 450_000,
            delivered: 427_000,
        };
        assert_eq!(
            c.on_stats(t0 + SECOND * 2, 96_000, Some(0.05), Some(burst)),
            None
        );
        assert_eq!(c.proven(t0 + SECOND * 2), 320_000, "still proven");
        // A modest fall, never confirmed: 6 % lost, 280 kbit/s through.
        let fall = Recent {
            sent: 298_000,
            delivered: 280_000,
        };
        c.on_stats(
            t0 + SECOND * 2 + SECOND / 2,
            115_000,
            Some(0.06),
            Some(fall),
        );
        assert_eq!(
            c.proven(t0 + SECOND * 2 + SECOND / 2),
            280_000,
            "followed down"
        );
        // Nothing clean since: it lapses.
        assert_eq!(c.proven(t0 + SECOND + PROVEN_KEPT), 0);
    }

    #[test]
    fn loss_that_goes_on_while_more_than_the_cap_is_sent_keeps_it_and_lowers_it() {
        let t0 = Instant::now();
        let mut c = LossCap::default();
        c.on_stats(t0, 0, None, None);
        // A 400 kbit/s link met at 1.7 Mbit/s: capped at 85 % of 453k.
        let fall = Recent {
            sent: 1_738_000,
            delivered: 453_000,
        };
        let cap = c
            .on_stats(t0 + SECOND, 200_000, Some(0.26), Some(fall))
            .unwrap();
        assert_eq!(cap, 453_000 * 85 / 100);
        // Then 450k sent under the 385k cap, 7 % of it lost, for seconds:
        // the cap holds past HOLD while the loss goes on, and two periods
        // lower it to what got through.
        let over = Recent {
            sent: 450_000,
            delivered: 418_000,
        };
        let mut bytes = 200_000;
        let mut lowered = None;
        for k in 2..9u32 {
            bytes += 56_000;
            if let Some(lower) = c.on_stats(t0 + SECOND * k, bytes, Some(0.07), Some(over)) {
                lowered = Some(lower);
            }
        }
        assert_eq!(lowered, Some(418_000 * 85 / 100));
        assert_eq!(
            c.cap(t0 + SECOND * 8),
            lowered,
            "in force while the loss goes on"
        );
        // The same loss with less than the cap sent is random loss: the cap
        // is not lowered by it, and lapses.
        let within = Recent {
            sent: 300_000,
            delivered: 279_000,
        };
        for k in 9..16u32 {
            bytes += 37_000;
            assert_eq!(
                c.on_stats(t0 + SECOND * k, bytes, Some(0.07), Some(within)),
                None
            );
        }
        assert_eq!(c.cap(t0 + SECOND * 15), None);
    }

    #[test]
    fn clean_half_seconds_that_use_the_cap_raise_it_until_loss_says_where_the_link_is() {
        let t0 = Instant::now();
        let mut c = LossCap::default();
        c.on_stats(t0, 0, None, None);
        let fall = Recent {
            sent: 650_000,
            delivered: 338_000,
        };
        let made = c
            .on_stats(t0 + SECOND, 80_000, Some(0.48), Some(fall))
            .unwrap();
        assert_eq!(made, 338_000 * 85 / 100);
        // Within the cap and clean, but well under it: says nothing above it.
        let idle = Recent {
            sent: 200_000,
            delivered: 200_000,
        };
        assert_eq!(
            c.on_stats(t0 + SECOND * 2, 105_000, Some(0.0), Some(idle)),
            None
        );
        // Using it, clean: raised 5 % a period.
        let full = |cap: u64| Recent {
            sent: cap * 95 / 100,
            delivered: cap * 95 / 100,
        };
        let once = c
            .on_stats(t0 + SECOND * 3, 140_000, Some(0.0), Some(full(made)))
            .unwrap();
        assert_eq!(once, made * 105 / 100);
        let twice = c
            .on_stats(t0 + SECOND * 4, 175_000, Some(0.0), Some(full(once)))
            .unwrap();
        assert_eq!(twice, once * 105 / 100);
        assert_eq!(c.cap(t0 + SECOND * 4), Some(twice));
        // Loss: back to the cap loss made, and no more raises.
        let lossy = Recent {
            sent: twice,
            delivered: twice * 95 / 100,
        };
        assert_eq!(
            c.on_stats(t0 + SECOND * 5, 215_000, Some(0.05), Some(lossy)),
            Some(made)
        );
        assert_eq!(
            c.on_stats(t0 + SECOND * 6, 250_000, Some(0.0), Some(full(made))),
            None
        );
        assert_eq!(c.cap(t0 + SECOND * 6), Some(made));
        // The raises did not renew the hold; the loss at 5 s did (more than
        // the cap was sent): it ends HOLD after that.
        assert_eq!(c.cap(t0 + SECOND * 5 + HOLD - SECOND), Some(made));
        assert_eq!(c.cap(t0 + SECOND * 5 + HOLD), None);
    }

    #[test]
    fn a_cap_made_from_a_half_second_that_straddled_the_fall_comes_down_to_what_gets_through() {
        let t0 = Instant::now();
        let mut c = LossCap::default();
        c.on_stats(t0, 0, None, None);
        // Half of the half second was sent before the link narrowed.
        let straddled = Recent {
            sent: 1_437_000,
            delivered: 993_000,
        };
        let made = c
            .on_stats(t0 + SECOND, 180_000, Some(0.12), Some(straddled))
            .unwrap();
        assert_eq!(made, 993_000 * 85 / 100);
        // Then within that cap, a 400 kbit/s link loses a third and more.
        let within = Recent {
            sent: 580_000,
            delivered: 370_000,
        };
        assert_eq!(
            c.on_stats(t0 + SECOND * 2, 252_000, Some(0.35), Some(within)),
            None
        );
        let lowered = c.on_stats(t0 + SECOND * 3, 324_000, Some(0.35), Some(within));
        assert_eq!(lowered, Some(370_000 * 85 / 100));
        // Random loss within a cap that fits (most gets through) does not.
        let random = Recent {
            sent: 300_000,
            delivered: 250_000,
        };
        for k in 4..7u32 {
            assert_eq!(
                c.on_stats(
                    t0 + SECOND * k,
                    324_000 + 37_000 * u64::from(k),
                    Some(0.16),
                    Some(random)
                ),
                None
            );
        }
        assert_eq!(c.cap(t0 + SECOND * 6), lowered, "kept in force by the loss");
    }

    #[test]
    fn random_loss_while_little_is_sent_leaves_the_cap_alone() {
        let t0 = Instant::now();
        let mut c = LossCap::default();
        c.on_stats(t0, 0, None, None);
        let fall = Recent {
            sent: 2_400_000,
            delivered: 1_200_000,
        };
        let made = c
            .on_stats(t0 + SECOND, 300_000, Some(0.5), Some(fall))
            .unwrap();
        // Tiles shrank: 300 kbit/s sent of a 1 Mbit/s cap, 12 % lost at random.
        let little = Recent {
            sent: 300_000,
            delivered: 264_000,
        };
        for k in 2..6u32 {
            let bytes = 300_000 + 37_500 * u64::from(k);
            assert_eq!(
                c.on_stats(t0 + SECOND * k, bytes, Some(0.12), Some(little)),
                None
            );
        }
        assert_eq!(c.cap(t0 + SECOND * 5), Some(made));
    }

    #[test]
    fn a_fall_after_a_raised_cap_lapsed_is_capped_at_once() {
        let t0 = Instant::now();
        let mut c = LossCap::default();
        c.on_stats(t0, 0, None, None);
        let fall = Recent {
            sent: 800_000,
            delivered: 400_000,
        };
        let made = c
            .on_stats(t0 + SECOND, 100_000, Some(0.5), Some(fall))
            .unwrap();
        let full = Recent {
            sent: made,
            delivered: made,
        };
        assert!(c
            .on_stats(t0 + SECOND * 2, 140_000, Some(0.0), Some(full))
            .is_some());
        // The cap lapses, raised; long after, a new fall.
        let later = t0 + SECOND * 30;
        assert_eq!(c.cap(later), None);
        let idle = Recent {
            sent: 900_000,
            delivered: 900_000,
        };
        c.on_stats(later - SECOND, 2_000_000, Some(0.0), Some(idle));
        let again = Recent {
            sent: 1_000_000,
            delivered: 700_000,
        };
        assert_eq!(
            c.on_stats(later, 2_125_000, Some(0.3), Some(again)),
            Some(700_000 * 85 / 100),
            "a new cap from this fall, not the old one back"
        );
    }
}

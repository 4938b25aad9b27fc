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
/// Below this rate sent, a second's loss says nothing about the link.
const MIN_SENT_BPS: u64 = 64_000;

#[derive(Debug, Default)]
pub struct LossCap {
    /// Bytes sent so far, and when, at the last statistics.
    sent: Option<(u64, Instant)>,
    /// The cap (bits/s) and the last second that confirmed it.
    cap: Option<(u64, Instant)>,
}

impl LossCap {
    /// One statistics period: `bytes_tx` sent so far, and the share of the
    /// last second's packets the subscriber's feedback says were lost.
    /// Returns the cap when it is new or lower than before.
    pub fn on_stats(&mut self, now: Instant, bytes_tx: u64, loss: Option<f32>) -> Option<u64> {
        let previous = self.sent.replace((bytes_tx, now));
        let (before, at) = previous?;
        let secs = now.saturating_duration_since(at).as_secs_f64();
        if secs <= 0.0 {
            return None;
        }
        let sent_bps = (bytes_tx.saturating_sub(before) as f64 * 8.0 / secs) as u64;
        let loss = loss.filter(|l| l.is_finite() && *l >= CONFIRMING_LOSS)?;
        if sent_bps < MIN_SENT_BPS {
            return None;
        }
        let delivered = (sent_bps as f64 * f64::from(1.0 - loss.min(1.0))) as u64;
        let cap = delivered * MARGIN_PCT / 100;
        // Only a second that sent more than the cap allows can lower it: the
        // loss of the seconds just after a fall is still the old queue's, and
        // read against the lower rate now sent it would drive the cap down
        // to nothing (str0m's own estimate follows a further narrowing).
        let lower = match self.cap(now) {
            None => true,
            Some(c) => cap < c && sent_bps > c,
        };
        // A second of loss at the cap keeps it in force; a lower one replaces it.
        let kept = match self.cap {
            Some((c, _)) if !lower => c,
            _ => cap,
        };
        self.cap = Some((kept, now));
        lower.then_some(cap)
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
        assert_eq!(c.on_stats(t0, 0, None), None, "a start, nothing to compare");
        // 1.6 Mbit/s sent into a 400 kbit/s link: three quarters lost.
        let cap = c.on_stats(t0 + SECOND, 200_000, Some(0.75)).unwrap();
        assert_eq!(cap, 1_600_000 / 4 * 85 / 100);
        assert_eq!(c.cap(t0 + SECOND), Some(cap));
        // Loss goes on at the lower rate (the old queue draining): the cap
        // stays, not lowered by the loss of what is sent within it.
        let steady = c.on_stats(t0 + SECOND * 2, 230_000, Some(0.6));
        assert_eq!(steady, None);
        assert_eq!(c.cap(t0 + SECOND * 2), Some(cap));
        // Clean seconds: it holds for HOLD after the last lossy one, then goes.
        let last = t0 + SECOND * 2;
        assert_eq!(c.on_stats(t0 + SECOND * 3, 260_000, Some(0.0)), None);
        assert_eq!(c.cap(last + HOLD - SECOND), Some(cap));
        assert_eq!(c.cap(last + HOLD), None);
    }

    #[test]
    fn a_little_loss_or_little_sent_is_no_cap() {
        let t0 = Instant::now();
        let mut c = LossCap::default();
        c.on_stats(t0, 0, None);
        assert_eq!(c.on_stats(t0 + SECOND, 250_000, Some(0.05)), None);
        assert_eq!(
            c.on_stats(t0 + SECOND * 2, 250_000 + 4_000, Some(0.9)),
            None
        );
        assert_eq!(c.on_stats(t0 + SECOND * 3, 500_000, Some(f32::NAN)), None);
        assert_eq!(c.cap(t0 + SECOND * 3), None);
    }

    #[test]
    fn a_deeper_fall_lowers_the_cap() {
        let t0 = Instant::now();
        let mut c = LossCap::default();
        c.on_stats(t0, 0, None);
        let first = c.on_stats(t0 + SECOND, 125_000, Some(0.5)).unwrap();
        // Still sending above the cap, and losing more of it.
        let second = c.on_stats(t0 + SECOND * 2, 250_000, Some(0.8)).unwrap();
        assert!(second < first);
        assert_eq!(c.cap(t0 + SECOND * 2), Some(second));
    }
}

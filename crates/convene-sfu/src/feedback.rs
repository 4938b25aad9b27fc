//! Whether a subscriber sends congestion feedback on what it receives.
//!
//! A subscriber's layers are chosen from its downlink estimate, which comes
//! from its transport-wide congestion feedback. A client that never sends any
//! (a broken or hostile one, or one that did not negotiate it) would keep the
//! starting estimate for good, and with it the highest layers, whatever its
//! link. After a few seconds of media without feedback it is given a small
//! fixed budget instead, until feedback comes.

/// What a subscriber without congestion feedback may receive (bits/s): a
/// couple of small layers beside its audio.
pub const NO_FEEDBACK_ESTIMATE: u64 = 500_000;
/// Statistics periods (a second each) of media sent without any feedback
/// before the subscriber counts as giving none.
const SILENT_PERIODS: u32 = 3;
/// Media payload sent in a period for it to count (below: too little was
/// sent to expect feedback, e.g. only silence).
const MIN_BYTES: u64 = 8_000;

#[derive(Debug, Default)]
pub struct FeedbackWatch {
    /// Media payload bytes sent, at the last statistics.
    bytes_tx: u64,
    silent: u32,
    without: bool,
}

/// What a statistics period changed.
#[derive(Debug, PartialEq, Eq)]
pub enum FeedbackChange {
    /// The subscriber has stopped (or never started) giving feedback.
    Stopped,
    /// Feedback came again.
    Resumed,
}

impl FeedbackWatch {
    /// One statistics period: `bytes_tx` is the media payload sent so far,
    /// `reported` whether any of it was covered by feedback.
    pub fn on_stats(&mut self, bytes_tx: u64, reported: bool) -> Option<FeedbackChange> {
        let sent = bytes_tx.saturating_sub(self.bytes_tx);
        self.bytes_tx = bytes_tx;
        if reported {
            self.silent = 0;
            if self.without {
                self.without = false;
                return Some(FeedbackChange::Resumed);
            }
        } else if sent >= MIN_BYTES {
            self.silent += 1;
            if self.silent >= SILENT_PERIODS && !self.without {
                self.without = true;
                return Some(FeedbackChange::Stopped);
            }
        }
        None
    }

    /// Whether the subscriber counts as giving no feedback now.
    pub fn without(&self) -> bool {
        self.without
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_without_feedback_for_three_periods_counts_as_none_until_it_comes() {
        let mut w = FeedbackWatch::default();
        assert_eq!(w.on_stats(50_000, false), None);
        assert_eq!(w.on_stats(100_000, false), None);
        assert_eq!(w.on_stats(150_000, false), Some(FeedbackChange::Stopped));
        assert!(w.without());
        assert_eq!(w.on_stats(200_000, false), None, "said once");
        assert_eq!(w.on_stats(250_000, true), Some(FeedbackChange::Resumed));
        assert!(!w.without());
    }

    #[test]
    fn quiet_periods_and_feedback_reset_the_count() {
        let mut w = FeedbackWatch::default();
        w.on_stats(50_000, false);
        w.on_stats(100_000, false);
        // Almost nothing sent: neither counts nor resets.
        assert_eq!(w.on_stats(101_000, false), None);
        assert_eq!(w.on_stats(150_000, false), Some(FeedbackChange::Stopped));
        let mut w = FeedbackWatch::default();
        w.on_stats(50_000, false);
        w.on_stats(100_000, false);
        w.on_stats(150_000, true);
        assert_eq!(w.on_stats(200_000, false), None);
        assert_eq!(w.on_stats(250_000, false), None);
        assert!(!w.without());
    }
}

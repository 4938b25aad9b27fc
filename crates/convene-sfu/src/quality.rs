//! How good a participant's connection is, from what the SFU measures on it:
//! packet loss both ways (its RTCP reports and transport-wide feedback on what
//! the SFU sends; gaps in what it sends), round-trip time, and jitter. Shown as
//! a small indicator on each tile, and to the participant when theirs is bad.

use std::time::Duration;

/// In words: good, fair (some loss or delay), poor (high loss or delay).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum QualityLevel {
    Good,
    Fair,
    Poor,
}

impl QualityLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            QualityLevel::Good => "good",
            QualityLevel::Fair => "fair",
            QualityLevel::Poor => "poor",
        }
    }
}

/// One connection's measured state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quality {
    pub level: QualityLevel,
    /// Smoothed loss, per thousand packets, the worse direction.
    pub loss_permille: u32,
    pub rtt_ms: Option<u32>,
    pub jitter_ms: Option<u32>,
}

// Thresholds from what people notice: Opus conceals a few percent of loss and
// video with NACK recovers from it, above 10 % both break up; conversation
// suffers above ~300 ms round trip (ITU-T G.114's one-way 150 ms).
const FAIR_LOSS: u32 = 30;
const POOR_LOSS: u32 = 100;
const FAIR_RTT_MS: u32 = 300;
const POOR_RTT_MS: u32 = 600;
const FAIR_JITTER_MS: u32 = 30;
const POOR_JITTER_MS: u32 = 80;
/// Recovering needs a margin below a threshold, so a level does not flicker.
const RECOVER_PCT: u32 = 70;

/// Folds one second's measurements into a level, with hysteresis.
#[derive(Debug, Default)]
pub(crate) struct QualityMeter {
    loss_permille: u32,
    rtt_ms: Option<u32>,
    jitter_ms: Option<u32>,
    level: Option<QualityLevel>,
}

impl QualityMeter {
    /// Smoothed loss, per thousand packets, the worse direction.
    pub fn loss_permille(&self) -> u32 {
        self.loss_permille
    }

    /// One stats report: loss fractions (0..1) in each direction where known,
    /// round-trip time and jitter. Returns the new state when the level changed.
    pub fn on_stats(
        &mut self,
        loss_in: Option<f32>,
        loss_out: Option<f32>,
        rtt: Option<Duration>,
        jitter: Option<Duration>,
    ) -> Option<Quality> {
        let worst = [loss_in, loss_out]
            .into_iter()
            .flatten()
            .filter(|l| l.is_finite())
            .fold(None::<f32>, |a, l| Some(a.map_or(l, |a| a.max(l))));
        if let Some(loss) = worst {
            let permille = (loss.clamp(0.0, 1.0) * 1000.0) as u32;
            // Half of each new second: a burst shows within a report or two.
            self.loss_permille = (self.loss_permille + permille).div_ceil(2);
        }
        if let Some(rtt) = rtt {
            self.rtt_ms = Some(rtt.as_millis().min(60_000) as u32);
        }
        if let Some(j) = jitter {
            self.jitter_ms = Some(j.as_millis().min(60_000) as u32);
        }
        let level = self.classify();
        if self.level == Some(level) {
            return None;
        }
        self.level = Some(level);
        Some(self.quality())
    }

    pub fn quality(&self) -> Quality {
        Quality {
            level: self.level.unwrap_or(QualityLevel::Good),
            loss_permille: self.loss_permille,
            rtt_ms: self.rtt_ms,
            jitter_ms: self.jitter_ms,
        }
    }

    fn classify(&self) -> QualityLevel {
        let level_at = |scale: u32| {
            let over = |v: u32, t: u32| v * 100 >= t * scale;
            let rtt = self.rtt_ms.unwrap_or(0);
            let jitter = self.jitter_ms.unwrap_or(0);
            if over(self.loss_permille, POOR_LOSS)
                || over(rtt, POOR_RTT_MS)
                || over(jitter, POOR_JITTER_MS)
            {
                QualityLevel::Poor
            } else if over(self.loss_permille, FAIR_LOSS)
                || over(rtt, FAIR_RTT_MS)
                || over(jitter, FAIR_JITTER_MS)
            {
                QualityLevel::Fair
            } else {
                QualityLevel::Good
            }
        };
        let now = level_at(100);
        match self.level {
            // Getting better needs the figures well under the line.
            Some(prev) if now < prev => level_at(RECOVER_PCT).min(prev),
            _ => now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn loss_and_delay_make_a_connection_fair_then_poor() {
        let mut m = QualityMeter::default();
        let q = m.on_stats(Some(0.0), Some(0.0), ms(20), ms(2)).unwrap();
        assert_eq!(q.level, QualityLevel::Good);
        assert_eq!(
            m.on_stats(Some(0.0), None, ms(25), None),
            None,
            "no change, no news"
        );
        let q = m.on_stats(Some(0.05), Some(0.08), ms(40), None);
        assert_eq!(q.map(|q| q.level), Some(QualityLevel::Fair));
        let q = m.on_stats(None, Some(0.3), ms(40), None);
        assert_eq!(q.map(|q| q.level), Some(QualityLevel::Poor));
        let mut m = QualityMeter::default();
        let q = m.on_stats(None, None, ms(700), None).unwrap();
        assert_eq!(q.level, QualityLevel::Poor, "a long round trip alone");
    }

    #[test]
    fn recovering_needs_a_margin() {
        let mut m = QualityMeter::default();
        m.on_stats(None, None, ms(350), None);
        assert_eq!(m.quality().level, QualityLevel::Fair);
        // Just under the line: still fair.
        assert_eq!(m.on_stats(None, None, ms(280), None), None);
        let q = m.on_stats(None, None, ms(100), None).unwrap();
        assert_eq!(q.level, QualityLevel::Good);
    }

    #[test]
    fn nonsense_figures_do_not_panic() {
        let mut m = QualityMeter::default();
        m.on_stats(
            Some(f32::NAN),
            Some(f32::INFINITY),
            Some(Duration::MAX),
            Some(Duration::MAX),
        );
        m.on_stats(Some(-3.0), Some(7.0), None, None);
        assert_eq!(m.quality().level, QualityLevel::Poor);
    }
}

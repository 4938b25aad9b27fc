//! Voice activity from the RTP audio-level header extension (RFC 6464), with
//! hysteresis so the speaking indicator does not flicker between words.

use std::time::{Duration, Instant};

/// Levels are -dBov: 0 is loudest, 127 silence. Louder than this counts as voice.
const VOICE_LEVEL: u8 = 50;
/// Speaking starts after this much voice in the window…
const START_AFTER: Duration = Duration::from_millis(200);
/// …and stops after this long without any.
const STOP_AFTER: Duration = Duration::from_millis(800);

/// Whether one packet carries voice: loud enough, and not flagged silent.
pub fn is_voice(audio_level: i8, voice: Option<bool>) -> bool {
    audio_level.unsigned_abs() < VOICE_LEVEL && voice != Some(false)
}

#[derive(Debug, Default)]
pub struct SpeakingDetector {
    speaking: bool,
    voice_since: Option<Instant>,
    last_voice: Option<Instant>,
}

impl SpeakingDetector {
    /// Feed one packet's level (`audio_level` is -dBov, as str0m gives it) and
    /// whether the sender flagged voice. Returns the new state if it changed.
    pub fn on_level(&mut self, now: Instant, audio_level: i8, voice: Option<bool>) -> Option<bool> {
        if is_voice(audio_level, voice) {
            self.last_voice = Some(now);
            let since = *self.voice_since.get_or_insert(now);
            if !self.speaking && now.saturating_duration_since(since) >= START_AFTER {
                self.speaking = true;
                return Some(true);
            }
            None
        } else {
            self.on_tick(now)
        }
    }

    /// Called on timers too, because a muted or gone sender sends no packets at all.
    pub fn on_tick(&mut self, now: Instant) -> Option<bool> {
        let quiet = self
            .last_voice
            .is_none_or(|t| now.saturating_duration_since(t) >= STOP_AFTER);
        if quiet {
            self.voice_since = None;
            if self.speaking {
                self.speaking = false;
                return Some(false);
            }
        }
        None
    }

    pub fn is_speaking(&self) -> bool {
        self.speaking
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_after_sustained_voice_and_stops_after_silence() {
        let t0 = Instant::now();
        let mut d = SpeakingDetector::default();
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(d.on_level(ms(0), 30, None), None);
        assert_eq!(d.on_level(ms(100), 30, None), None);
        assert_eq!(d.on_level(ms(220), 30, None), Some(true));
        assert_eq!(d.on_level(ms(400), 127, None), None);
        assert_eq!(d.on_tick(ms(900)), None);
        assert_eq!(d.on_tick(ms(1030)), Some(false));
        assert!(!d.is_speaking());
    }

    #[test]
    fn a_click_is_not_speech() {
        let t0 = Instant::now();
        let mut d = SpeakingDetector::default();
        d.on_level(t0, 10, None);
        assert_eq!(d.on_level(t0 + Duration::from_millis(900), 127, None), None);
        assert_eq!(d.on_level(t0 + Duration::from_millis(1000), 10, None), None);
        assert!(!d.is_speaking());
    }
}

//! Voice activity from the RTP audio-level header extension (RFC 6464), with
//! hysteresis so the speaking indicator does not flicker between words.
//!
//! The extension carries a level and a voice-activity flag (V). Browsers set V
//! while their voice detector hears speech, and that flag is honoured. Some
//! senders never set it (aiortc always sends V=0): read strictly, as RFC 6464's
//! default `vad=on` would have it, they never speak. So a source that has never
//! flagged a packet as voice is judged by its level alone; from its first V=1 on,
//! V=0 means silence again.

use std::time::{Duration, Instant};

/// Levels are -dBov: 0 is loudest, 127 silence. Louder than this counts as voice.
const VOICE_LEVEL: u8 = 50;
/// Speaking starts after this much voice in the window…
const START_AFTER: Duration = Duration::from_millis(200);
/// …and stops after this long without any.
const STOP_AFTER: Duration = Duration::from_millis(800);

/// Whether one packet carries voice: loud enough, and not flagged silent by a
/// sender that uses the flag (`flags_voice`: it has set V=1 before).
fn is_voice(audio_level: i8, voice: Option<bool>, flags_voice: bool) -> bool {
    audio_level.unsigned_abs() < VOICE_LEVEL && (voice != Some(false) || !flags_voice)
}

#[derive(Debug, Default)]
pub struct SpeakingDetector {
    speaking: bool,
    voice_since: Option<Instant>,
    last_voice: Option<Instant>,
    /// The source has set the voice-activity flag on some packet: from then on
    /// its V=0 means silence.
    flags_voice: bool,
}

impl SpeakingDetector {
    /// Whether one packet carries voice, by its level (`audio_level` is -dBov, as
    /// str0m gives it) and the sender's voice flag, if the sender uses that flag.
    /// Remembers whether it does.
    pub fn is_voice(&mut self, audio_level: i8, voice: Option<bool>) -> bool {
        self.flags_voice |= voice == Some(true);
        is_voice(audio_level, voice, self.flags_voice)
    }

    /// Feed one packet's level and voice flag (see [`Self::is_voice`]). Returns the
    /// new state if it changed.
    pub fn on_level(&mut self, now: Instant, audio_level: i8, voice: Option<bool>) -> Option<bool> {
        let voiced = self.is_voice(audio_level, voice);
        self.on_packet(now, voiced)
    }

    /// Feed one packet already judged by [`Self::is_voice`]. Returns the new state
    /// if it changed.
    pub fn on_packet(&mut self, now: Instant, voiced: bool) -> Option<bool> {
        if voiced {
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

    /// Forget any voice heard so far (not speaking, no event), keeping what was
    /// learnt about the source's voice flag.
    pub fn reset(&mut self) {
        *self = SpeakingDetector {
            flags_voice: self.flags_voice,
            ..SpeakingDetector::default()
        };
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
    fn a_sender_that_never_flags_voice_is_judged_by_level_alone() {
        // aiortc sends V=0 on every packet, whatever it hears.
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut d = SpeakingDetector::default();
        assert!(!d.is_voice(90, Some(false)), "quiet is not voice");
        assert!(d.is_voice(30, Some(false)), "loud counts without the flag");
        assert_eq!(d.on_level(ms(0), 30, Some(false)), None);
        assert_eq!(d.on_level(ms(220), 30, Some(false)), Some(true));
        assert_eq!(d.on_level(ms(400), 90, Some(false)), None);
        assert_eq!(d.on_tick(ms(1030)), Some(false));
    }

    #[test]
    fn once_a_sender_flags_voice_its_unflagged_packets_are_silence() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut d = SpeakingDetector::default();
        assert!(d.is_voice(30, Some(true)));
        // Loud but flagged non-voice (music, typing): not speech any more.
        assert!(!d.is_voice(30, Some(false)));
        assert_eq!(d.on_level(ms(0), 30, Some(false)), None);
        assert_eq!(d.on_level(ms(300), 30, Some(false)), None);
        assert!(!d.is_speaking());
        // A pause (host mute) keeps what was learnt about the sender.
        d.reset();
        assert!(!d.is_voice(30, Some(false)));
        // Without the extension's flag at all, the level decides.
        assert!(d.is_voice(30, None));
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

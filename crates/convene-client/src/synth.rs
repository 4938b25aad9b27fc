//! Synthetic media, generated as RTP payloads without an encoder: VP8-shaped
//! video (descriptor, keyframe every 2 s, MTU-sized packets, marker on the last
//! packet of a frame) and Opus-sized audio at 50 packets/s.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Every payload ends with the microseconds since this process's epoch at which
/// it was sent, so a receiver in the same process can measure the delay.
static EPOCH: OnceLock<Instant> = OnceLock::new();

pub fn micros_since_epoch(at: Instant) -> u64 {
    at.saturating_duration_since(*EPOCH.get_or_init(Instant::now))
        .as_micros() as u64
}

/// The send time stamped into a payload, if it carries one.
pub fn stamped_at(payload: &[u8]) -> Option<u64> {
    let tail = payload.len().checked_sub(8).map(|i| &payload[i..])?;
    Some(u64::from_be_bytes(tail.try_into().ok()?))
}

fn stamp(payload: &mut [u8], at: Instant) {
    if let Some(i) = payload.len().checked_sub(8) {
        payload[i..].copy_from_slice(&micros_since_epoch(at).to_be_bytes());
    }
}

const MAX_PAYLOAD: usize = 1100;
/// Like a real encoder: a keyframe every 2 s, and at once when the receiver asks.
const KEYFRAME_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy)]
pub enum SynthKind {
    Opus,
    Vp8 { kbps: u32, fps: u32 },
}

pub struct Packet {
    pub seq: u64,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Arc<[u8]>,
    pub audio_level: Option<i8>,
}

pub struct Synth {
    kind: SynthKind,
    started: Instant,
    next: Instant,
    frame: u64,
    seq: u64,
    last_keyframe: Option<Instant>,
    keyframe_every: Duration,
    force_keyframe: bool,
    filler: Arc<[u8]>,
}

impl Synth {
    pub fn new(kind: SynthKind, now: Instant) -> Self {
        Synth {
            kind,
            started: now,
            next: now,
            frame: 0,
            seq: 1,
            last_keyframe: None,
            keyframe_every: KEYFRAME_EVERY,
            force_keyframe: false,
            filler: vec![0x5a; MAX_PAYLOAD].into(),
        }
    }

    pub fn set_keyframe_interval(&mut self, every: Duration) {
        self.keyframe_every = every;
    }

    /// A keyframe request (PLI/FIR) arrived: the next frame is a keyframe.
    pub fn request_keyframe(&mut self) {
        self.force_keyframe = true;
    }

    pub fn is_audio(&self) -> bool {
        matches!(self.kind, SynthKind::Opus)
    }

    pub fn next_at(&self) -> Instant {
        self.next
    }

    fn interval(&self) -> Duration {
        match self.kind {
            SynthKind::Opus => Duration::from_millis(20),
            SynthKind::Vp8 { fps, .. } => Duration::from_micros(1_000_000 / u64::from(fps.max(1))),
        }
    }

    /// The packets of the next frame, and schedule the one after.
    pub fn next_frame(&mut self) -> Vec<Packet> {
        let at = self.next;
        self.next += self.interval();
        self.frame += 1;
        let elapsed = at.duration_since(self.started);
        match self.kind {
            SynthKind::Opus => {
                let ts = (elapsed.as_micros() * 48 / 1000) as u32;
                let seq = self.seq;
                self.seq += 1;
                vec![Packet {
                    seq,
                    timestamp: ts,
                    marker: false,
                    payload: {
                        let mut p = self.filler[..80].to_vec();
                        stamp(&mut p, Instant::now());
                        p.into()
                    },
                    audio_level: Some(-30),
                }]
            }
            SynthKind::Vp8 { kbps, fps } => {
                let ts = (elapsed.as_micros() * 90 / 1000) as u32;
                let key = self.force_keyframe
                    || self
                        .last_keyframe
                        .is_none_or(|t| at.duration_since(t) >= self.keyframe_every);
                self.force_keyframe = false;
                if key {
                    self.last_keyframe = Some(at);
                }
                let mut bytes = (kbps as usize * 1000 / 8) / fps.max(1) as usize;
                if key {
                    bytes *= 4;
                }
                let count = bytes.div_ceil(MAX_PAYLOAD).max(1);
                let picture_id = (self.frame & 0x7fff) as u16;
                (0..count)
                    .map(|i| {
                        let first = i == 0;
                        let mut p = Vec::with_capacity(MAX_PAYLOAD + 5);
                        // Descriptor: X=1, S on the first packet, PID 0; I=1; 15-bit picture id.
                        p.push(if first { 0x90 } else { 0x80 });
                        p.push(0x80);
                        p.push(0x80 | (picture_id >> 8) as u8);
                        p.push(picture_id as u8);
                        if first {
                            // VP8 payload header: P bit 0 for a keyframe.
                            p.push(if key { 0x10 } else { 0x11 });
                        }
                        let room = (bytes / count).clamp(8, MAX_PAYLOAD);
                        p.extend_from_slice(&self.filler[..room]);
                        stamp(&mut p, Instant::now());
                        let seq = self.seq;
                        self.seq += 1;
                        Packet {
                            seq,
                            timestamp: ts,
                            marker: i + 1 == count,
                            payload: p.into(),
                            audio_level: None,
                        }
                    })
                    .collect()
            }
        }
    }
}

impl Synth {
    /// The packets of the next frame of an end-to-end encrypted meeting: the
    /// whole frame is made first (for video, a VP8 frame tag, and on a
    /// keyframe the start code and a 640x360 size, which SFrame leaves clear
    /// and the SFU reads), then handed to `seal` (SFrame works on whole
    /// frames, RFC 9605 §4.1), then packetised. No send-time stamps: they
    /// would be inside the ciphertext. `None` from `seal` (no key yet): the
    /// frame is not sent at all, never in the clear.
    pub fn next_frame_sealed(
        &mut self,
        seal: impl FnOnce(bool, &[u8]) -> Option<Vec<u8>>,
    ) -> Vec<Packet> {
        let at = self.next;
        self.next += self.interval();
        self.frame += 1;
        let elapsed = at.duration_since(self.started);
        match self.kind {
            SynthKind::Opus => {
                let ts = (elapsed.as_micros() * 48 / 1000) as u32;
                let Some(payload) = seal(false, &self.filler[..80]) else {
                    return Vec::new();
                };
                let seq = self.seq;
                self.seq += 1;
                vec![Packet {
                    seq,
                    timestamp: ts,
                    marker: false,
                    payload: payload.into(),
                    audio_level: Some(-30),
                }]
            }
            SynthKind::Vp8 { kbps, fps } => {
                let ts = (elapsed.as_micros() * 90 / 1000) as u32;
                let key = self.force_keyframe
                    || self
                        .last_keyframe
                        .is_none_or(|t| at.duration_since(t) >= self.keyframe_every);
                let mut bytes = (kbps as usize * 1000 / 8) / fps.max(1) as usize;
                if key {
                    bytes *= 4;
                }
                let bytes = bytes.max(16);
                // RFC 6386 §9.1: a 3-byte frame tag (bit 0: 0 for a keyframe;
                // bit 4: show_frame; the first partition's size), then on a
                // keyframe the start code and the 14-bit width and height.
                let size = ((bytes as u32 - 10) & 0x7ffff) << 5;
                let mut frame = vec![
                    (if key { 0x10 } else { 0x11 }) | (size & 0xe0) as u8,
                    (size >> 8) as u8,
                    (size >> 16) as u8,
                ];
                if key {
                    frame.extend_from_slice(&[0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01]);
                }
                while frame.len() < bytes {
                    let n = (bytes - frame.len()).min(self.filler.len());
                    frame.extend_from_slice(&self.filler[..n]);
                }
                let Some(sealed) = seal(true, &frame) else {
                    return Vec::new();
                };
                self.force_keyframe = false;
                if key {
                    self.last_keyframe = Some(at);
                }
                let picture_id = (self.frame & 0x7fff) as u16;
                let count = sealed.len().div_ceil(MAX_PAYLOAD).max(1);
                let parts: Vec<&[u8]> =
                    sealed.chunks(sealed.len().div_ceil(count).max(1)).collect();
                let count = parts.len();
                parts
                    .into_iter()
                    .enumerate()
                    .map(|(i, part)| {
                        let mut p = Vec::with_capacity(part.len() + 4);
                        // Descriptor: X=1, S on the first packet, PID 0; I=1; 15-bit picture id.
                        p.push(if i == 0 { 0x90 } else { 0x80 });
                        p.push(0x80);
                        p.push(0x80 | (picture_id >> 8) as u8);
                        p.push(picture_id as u8);
                        p.extend_from_slice(part);
                        let seq = self.seq;
                        self.seq += 1;
                        Packet {
                            seq,
                            timestamp: ts,
                            marker: i + 1 == count,
                            payload: p.into(),
                            audio_level: None,
                        }
                    })
                    .collect()
            }
        }
    }
}

/// The same check the SFU makes, on the client's side.
pub fn is_keyframe_start(payload: &[u8]) -> bool {
    payload.len() >= 5
        && payload[0] & 0x10 != 0
        && payload[0] & 0x07 == 0
        && payload[4] & 0x01 == 0
        && payload[1] & 0x80 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_packet_carries_its_send_time() {
        let now = Instant::now();
        for kind in [SynthKind::Opus, SynthKind::Vp8 { kbps: 500, fps: 25 }] {
            let mut s = Synth::new(kind, now);
            for p in s.next_frame() {
                let at = stamped_at(&p.payload).unwrap();
                let since = micros_since_epoch(Instant::now());
                assert!(
                    at <= since && since - at < 1_000_000,
                    "{kind:?}: stamp {at} vs now {since}"
                );
            }
        }
    }

    #[test]
    fn keyframes_every_two_seconds_and_on_request() {
        let t0 = Instant::now();
        let mut s = Synth::new(SynthKind::Vp8 { kbps: 500, fps: 25 }, t0);
        let key = |s: &mut Synth| is_keyframe_start(&s.next_frame()[0].payload);
        assert!(key(&mut s), "the first frame");
        assert!(!key(&mut s));
        s.request_keyframe();
        assert!(key(&mut s), "asked for");
        let frames: Vec<bool> = (0..60).map(|_| key(&mut s)).collect();
        assert_eq!(
            frames.iter().filter(|k| **k).count(),
            1,
            "one more in the next 2.4 s"
        );
    }
}

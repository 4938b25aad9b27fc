//! Whole VP8 frames from RTP packets: SFrame encrypts whole encoded frames
//! (RFC 9605 §4.1), so a receiver in an encrypted meeting must put a frame's
//! packets back together before it can decrypt anything.
//!
//! A frame is complete when the packet that starts it (S = 1, partition 0:
//! RFC 7741 §4.2), the one that ends it (the RTP marker) and every sequence
//! number between them are here. Retransmissions may fill gaps late, so a
//! few frames are kept open; older ones are given up as incomplete.

use std::collections::{BTreeMap, VecDeque};

/// Frames kept open for missing packets.
const OPEN_FRAMES: usize = 8;

/// The length of a VP8 payload descriptor (RFC 7741 §4.2) and whether its
/// packet starts a frame; `None` if the payload is too short to hold it.
pub fn vp8_descriptor(payload: &[u8]) -> Option<(usize, bool)> {
    let b0 = *payload.first()?;
    let start = b0 & 0x10 != 0 && b0 & 0x07 == 0;
    let mut len = 1;
    if b0 & 0x80 != 0 {
        let x = *payload.get(1)?;
        len += 1;
        if x & 0x80 != 0 {
            // I: a picture id of 7 or (M) 15 bits.
            len += if *payload.get(len)? & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            len += 1; // L: TL0PICIDX
        }
        if x & 0x30 != 0 {
            len += 1; // T or K: TID, Y, KEYIDX
        }
    }
    (payload.len() >= len).then_some((len, start))
}

#[derive(Default)]
struct Open {
    /// seq → (frame bytes of the packet, starts the frame, ends it).
    packets: BTreeMap<u64, (Vec<u8>, bool, bool)>,
}

impl Open {
    fn complete(&self) -> Option<Vec<u8>> {
        let (&first, &(_, start, _)) = self.packets.first_key_value()?;
        let (&last, &(_, _, end)) = self.packets.last_key_value()?;
        if !start || !end || (last - first + 1) as usize != self.packets.len() {
            return None;
        }
        Some(
            self.packets
                .values()
                .flat_map(|(b, _, _)| b.iter().copied())
                .collect(),
        )
    }
}

/// One received video stream's frames in the making.
#[derive(Default)]
pub struct Assembler {
    /// By RTP timestamp, oldest first.
    open: VecDeque<(u32, Open)>,
}

/// What a packet completed: a frame, and how many older frames were given up.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    pub frame: Option<Vec<u8>>,
    pub abandoned: u64,
}

impl Assembler {
    /// Adds a packet (its extended sequence number, RTP timestamp, marker and payload).
    pub fn push(&mut self, seq: u64, timestamp: u32, marker: bool, payload: &[u8]) -> Pushed {
        let mut out = Pushed::default();
        let Some((len, start)) = vp8_descriptor(payload) else {
            return out;
        };
        let i = match self.open.iter().position(|(ts, _)| *ts == timestamp) {
            Some(i) => i,
            None => {
                self.open.push_back((timestamp, Open::default()));
                while self.open.len() > OPEN_FRAMES {
                    self.open.pop_front();
                    out.abandoned += 1;
                }
                self.open.len() - 1
            }
        };
        let open = &mut self.open[i].1;
        open.packets
            .insert(seq, (payload[len..].to_vec(), start, marker));
        if let Some(frame) = open.complete() {
            // Frames before this one will not complete now (their packets
            // came before, or are lost): give them up.
            out.abandoned += i as u64;
            self.open.drain(..=i);
            out.frame = Some(frame);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(start: bool, body: &[u8]) -> Vec<u8> {
        let mut p = vec![if start { 0x90 } else { 0x80 }, 0x80, 0x80, 0x01];
        p.extend_from_slice(body);
        p
    }

    #[test]
    fn descriptors_of_every_shape() {
        assert_eq!(vp8_descriptor(&[0x10, 9]), Some((1, true)));
        assert_eq!(vp8_descriptor(&[0x90, 0x80, 0x05, 9]), Some((3, true)));
        assert_eq!(
            vp8_descriptor(&[0x90, 0x80, 0x85, 0x01, 9]),
            Some((4, true))
        );
        assert_eq!(
            vp8_descriptor(&[0x80, 0xe0, 0x85, 0x01, 0x07, 0x40]),
            Some((6, false))
        );
        assert_eq!(
            vp8_descriptor(&[0x91, 0x80, 0x05]),
            Some((3, false)),
            "partition 1 starts no frame"
        );
        assert_eq!(vp8_descriptor(&[0x90, 0x80]), None);
        assert_eq!(vp8_descriptor(&[]), None);
    }

    #[test]
    fn frames_complete_in_any_order_and_lost_ones_are_given_up() {
        let mut a = Assembler::default();
        assert_eq!(a.push(10, 900, false, &packet(true, b"ab")).frame, None);
        assert_eq!(a.push(12, 900, true, &packet(false, b"ef")).frame, None);
        let p = a.push(11, 900, false, &packet(false, b"cd"));
        assert_eq!(p.frame.as_deref(), Some(&b"abcdef"[..]));
        // A frame missing its middle, then a whole one: the first is given up.
        a.push(13, 1800, false, &packet(true, b"x"));
        a.push(15, 1800, true, &packet(false, b"z"));
        let p = a.push(16, 2700, true, &packet(true, b"whole"));
        assert_eq!(
            p,
            Pushed {
                frame: Some(b"whole".to_vec()),
                abandoned: 1
            }
        );
        // Junk is ignored.
        assert_eq!(a.push(17, 3600, true, &[]), Pushed::default());
    }
}

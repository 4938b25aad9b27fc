//! Just enough VP8 payload parsing (RFC 7741) to find where a keyframe starts, so a
//! new subscriber's stream begins at a picture it can decode, and the picture
//! numbering a subscriber sees, kept continuous when its layer changes.

use str0m::rtp::{Vp8Descriptor, Vp8Patch};

/// True if this RTP payload is the first packet of a VP8 keyframe.
pub fn is_vp8_keyframe_start(payload: &[u8]) -> bool {
    vp8_header_at(payload).is_some_and(|i| payload.get(i).is_some_and(|h| h & 0x01 == 0))
}

/// The picture size (width, height) a keyframe's first packet announces
/// (RFC 6386 §9.1: a 3-byte frame tag, the start code, then 14-bit sizes).
pub fn vp8_keyframe_size(payload: &[u8]) -> Option<(u32, u32)> {
    let i = vp8_header_at(payload)?;
    let h = payload.get(i..i + 10)?;
    if h[0] & 0x01 != 0 || h[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u32::from(u16::from_le_bytes([h[6], h[7]]) & 0x3fff);
    let height = u32::from(u16::from_le_bytes([h[8], h[9]]) & 0x3fff);
    (width > 0 && height > 0).then_some((width, height))
}

/// Where the VP8 payload header starts, if this packet starts partition 0.
fn vp8_header_at(payload: &[u8]) -> Option<usize> {
    let b0 = *payload.first()?;
    let extended = b0 & 0x80 != 0;
    let start_of_partition = b0 & 0x10 != 0;
    let partition_id = b0 & 0x07;
    if !start_of_partition || partition_id != 0 {
        return None;
    }
    let mut i = 1;
    if extended {
        let x = *payload.get(i)?;
        i += 1;
        if x & 0x80 != 0 {
            // PictureID: one byte, or two when its M bit is set.
            let p = *payload.get(i)?;
            i += if p & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID/Y/KEYIDX
        }
    }
    // VP8 payload header: bit 0 of the first byte is the inverse keyframe flag.
    Some(i)
}

/// Keeps the VP8 picture ids and TL0PICIDX one subscriber receives on one
/// m-line continuous when what it carries changes source (another simulcast
/// layer, or another publisher's camera): each source numbers its pictures
/// from its own random start, and a receiver's frame reference finder reads
/// a jump back as old frames, or a jump ahead as frames lost and waits for
/// them (libwebrtc can stall on either).
#[derive(Debug, Default)]
pub struct PictureIds {
    source: Option<u128>,
    /// Added to an incoming picture id (mod 2^15, or 2^7 for the short form).
    pid_offset: u16,
    tl0_offset: u8,
    /// The newest picture id and TL0PICIDX sent.
    last_pid: Option<u16>,
    last_tl0: Option<u8>,
}

impl PictureIds {
    /// The patch that renumbers one packet (parsed as `d`) for this
    /// subscriber; `None` when its ids go out as they came. At a change of
    /// source (which the SFU makes at a keyframe) the new source's ids
    /// continue from the last ones sent.
    pub fn rewrite(&mut self, source: u128, payload: &[u8], d: &Vp8Descriptor) -> Option<Vp8Patch> {
        // The PictureID is the first optional field: its M bit gives the form.
        let long = payload.get(2).is_some_and(|b| b & 0x80 != 0);
        let (pid, tl0) = self.map(source, d.picture_id().map(|p| (p, long)), d.tl0_pic_idx());
        if pid == d.picture_id() && tl0 == d.tl0_pic_idx() {
            return None;
        }
        let mut patch = d.patch();
        if let Some(p) = pid {
            patch = patch.picture_id(p);
        }
        if let Some(t) = tl0 {
            patch = patch.tl0_pic_idx(t);
        }
        patch.build().ok()
    }

    /// The outgoing (picture id, TL0PICIDX) for an incoming pair; the
    /// picture id comes with whether it is the 15-bit form.
    fn map(
        &mut self,
        source: u128,
        pid: Option<(u16, bool)>,
        tl0: Option<u8>,
    ) -> (Option<u16>, Option<u8>) {
        if self.source != Some(source) {
            self.source = Some(source);
            self.pid_offset = match (self.last_pid, pid) {
                (Some(last), Some((p, _))) => last.wrapping_add(1).wrapping_sub(p) & 0x7fff,
                _ => 0,
            };
            self.tl0_offset = match (self.last_tl0, tl0) {
                (Some(last), Some(t)) => last.wrapping_add(1).wrapping_sub(t),
                _ => 0,
            };
        }
        let pid = pid.map(|(p, long)| {
            let mask = if long { 0x7fff } else { 0x7f };
            let out = p.wrapping_add(self.pid_offset) & mask;
            // Retransmitted and reordered packets carry older ids.
            let ahead = |last: u16| (out.wrapping_sub(last) & mask).wrapping_sub(1) < mask / 2;
            if self.last_pid.is_none_or(ahead) {
                self.last_pid = Some(out);
            }
            out
        });
        let tl0 = tl0.map(|t| {
            let out = t.wrapping_add(self.tl0_offset);
            if self
                .last_tl0
                .is_none_or(|last| out.wrapping_sub(last).wrapping_sub(1) < 127)
            {
                self.last_tl0 = Some(out);
            }
            out
        });
        (pid, tl0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframe_with_two_byte_picture_id() {
        // X=1 S=1 PID=0; I=1; PictureID 0x8123; VP8 header P=0.
        assert!(is_vp8_keyframe_start(&[0x90, 0x80, 0x81, 0x23, 0x10, 0x02]));
        // Same, but P=1: an interframe.
        assert!(!is_vp8_keyframe_start(&[
            0x90, 0x80, 0x81, 0x23, 0x11, 0x02
        ]));
    }

    #[test]
    fn keyframe_without_extension() {
        assert!(is_vp8_keyframe_start(&[0x10, 0x00]));
    }

    #[test]
    fn continuation_packets_are_not_starts() {
        assert!(!is_vp8_keyframe_start(&[0x80, 0x80, 0x05, 0x00]));
        assert!(!is_vp8_keyframe_start(&[0x11, 0x00]));
    }

    #[test]
    fn keyframe_size_is_read_from_its_first_packet() {
        // X=1 S=1; I=1, 7-bit PictureID; frame tag (keyframe), start code, 640x360.
        let p = [
            0x90, 0x80, 0x05, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01,
        ];
        assert_eq!(vp8_keyframe_size(&p), Some((640, 360)));
        assert_eq!(vp8_keyframe_size(&p[..12]), None, "truncated");
        let mut delta = p;
        delta[3] = 0x11;
        assert_eq!(vp8_keyframe_size(&delta), None);
    }

    #[test]
    fn truncated_payloads_do_not_panic() {
        for p in [
            &[][..],
            &[0x90],
            &[0x90, 0x80],
            &[0x90, 0x80, 0x81],
            &[0x90, 0xf0, 0x01, 0x02],
        ] {
            let _ = is_vp8_keyframe_start(p);
            let _ = vp8_keyframe_size(p);
        }
    }

    /// Map (long picture id, tl0) pairs from one source.
    fn run(r: &mut PictureIds, source: u128, ids: &[(u16, u8)]) -> Vec<(u16, u8)> {
        ids.iter()
            .map(|&(p, t)| {
                let (p, t) = r.map(source, Some((p, true)), Some(t));
                (p.unwrap(), t.unwrap())
            })
            .collect()
    }

    #[test]
    fn ids_continue_across_a_change_of_source() {
        let mut r = PictureIds::default();
        let first = [(100, 7), (101, 8), (102, 9)];
        assert_eq!(run(&mut r, 1, &first), first, "the first source as it is");
        // Another layer, numbered from elsewhere (and behind), takes over.
        assert_eq!(
            run(&mut r, 2, &[(20_000, 250), (20_001, 251), (20_002, 252)]),
            [(103, 10), (104, 11), (105, 12)]
        );
        // A late retransmission of that layer maps the same way and does not
        // move the numbering back.
        assert_eq!(run(&mut r, 2, &[(19_999, 249)]), [(102, 9)]);
        assert_eq!(run(&mut r, 1, &[(500, 0)]), [(106, 13)], "and back");
    }

    #[test]
    fn ids_wrap_in_their_own_width() {
        let mut r = PictureIds::default();
        run(&mut r, 1, &[(0x7fff, 255)]);
        assert_eq!(run(&mut r, 2, &[(3, 3)]), [(0, 0)]);
        // The short form wraps at 128.
        assert_eq!(r.map(3, Some((127, false)), None), (Some(1), None));
        assert_eq!(r.map(3, Some((0, false)), None), (Some(2), None));
    }

    #[test]
    fn patches_only_what_changes() {
        // X, S; I, L, T; long PictureID 0x1234; TL0PICIDX 9; TID; payload.
        let p = [0x90, 0xe0, 0x92, 0x34, 0x09, 0x20, 0x10, 0x02];
        let d = Vp8Descriptor::parse(&p).unwrap();
        let mut r = PictureIds::default();
        assert_eq!(r.rewrite(1, &p, &d), None, "the first source goes as it is");
        let q = [0x90, 0xe0, 0x80, 0x05, 0x40, 0x20, 0x10, 0x02];
        let dq = Vp8Descriptor::parse(&q).unwrap();
        let want = dq
            .patch()
            .picture_id(0x1235)
            .tl0_pic_idx(10)
            .build()
            .unwrap();
        assert_eq!(r.rewrite(2, &q, &dq), Some(want));
    }
}

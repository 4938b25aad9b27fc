//! Just enough VP8 payload parsing (RFC 7741) to find where a keyframe starts, so a
//! new subscriber's stream begins at a picture it can decode.

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
}

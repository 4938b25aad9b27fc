//! Just enough VP8 payload parsing (RFC 7741) to find where a keyframe starts, so a
//! new subscriber's stream begins at a picture it can decode.

/// True if this RTP payload is the first packet of a VP8 keyframe.
pub fn is_vp8_keyframe_start(payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    let extended = b0 & 0x80 != 0;
    let start_of_partition = b0 & 0x10 != 0;
    let partition_id = b0 & 0x07;
    if !start_of_partition || partition_id != 0 {
        return false;
    }
    let mut i = 1;
    if extended {
        let Some(&x) = payload.get(i) else {
            return false;
        };
        i += 1;
        if x & 0x80 != 0 {
            // PictureID: one byte, or two when its M bit is set.
            let Some(&p) = payload.get(i) else {
                return false;
            };
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
    payload.get(i).is_some_and(|h| h & 0x01 == 0)
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
    fn truncated_payloads_do_not_panic() {
        for p in [
            &[][..],
            &[0x90],
            &[0x90, 0x80],
            &[0x90, 0x80, 0x81],
            &[0x90, 0xf0, 0x01, 0x02],
        ] {
            let _ = is_vp8_keyframe_start(p);
        }
    }
}

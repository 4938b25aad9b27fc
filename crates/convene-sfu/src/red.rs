//! Redundant audio (RFC 2198): what a subscriber that did not take RED gets.
//!
//! Browsers that negotiate RED send each Opus packet together with the one
//! before it, so a single lost packet costs nothing (its copy arrives with
//! the next). The server forwards RED to everyone who negotiated it and only
//! the primary (the newest) block to anyone who did not.

/// The primary block of a RED payload: its payload type and where its data
/// is. `None` if the payload is not well-formed RED.
pub fn red_primary(payload: &[u8]) -> Option<(u8, std::ops::Range<usize>)> {
    // Headers: 4 bytes for each redundant block (F=1, block PT, timestamp
    // offset, 10-bit length), then 1 byte for the primary (F=0, PT).
    let mut at = 0;
    let mut redundant = 0usize;
    loop {
        let b = *payload.get(at)?;
        if b & 0x80 == 0 {
            let start = at + 1 + redundant;
            return (start < payload.len()).then_some((b & 0x7f, start..payload.len()));
        }
        let h = payload.get(at..at + 4)?;
        redundant += usize::from(u16::from_be_bytes([h[2], h[3]]) & 0x03ff);
        at += 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_primary_follows_the_redundant_blocks() {
        // One redundant block of 3 bytes (PT 111, offset 960), primary PT 111.
        let p = [0xef, 0x0f, 0x00, 0x03, 0x6f, 1, 2, 3, 9, 8, 7, 6];
        let (pt, range) = red_primary(&p).unwrap();
        assert_eq!(pt, 111);
        assert_eq!(&p[range], &[9, 8, 7, 6]);
        // No redundancy at all: only the primary header.
        let p = [0x6f, 5, 5];
        assert_eq!(
            red_primary(&p).map(|(pt, r)| (pt, p[r].to_vec())),
            Some((111, vec![5, 5]))
        );
    }

    #[test]
    fn malformed_red_is_refused_without_panicking() {
        for p in [
            &[][..],
            &[0xef],
            &[0xef, 0x0f, 0x00],
            // Says 3 redundant bytes, has one.
            &[0xef, 0x0f, 0x00, 0x03, 0x6f, 1],
            // Only redundant headers, no primary header.
            &[0xef, 0x0f, 0x00, 0x00, 0xef, 0x0f, 0x00, 0x00],
        ] {
            assert_eq!(red_primary(p), None, "{p:?}");
        }
    }
}

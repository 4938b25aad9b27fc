//! Media over TCP (ICE-TCP, RFC 6544): the SFU offers a passive TCP candidate
//! next to its UDP one, and a browser that cannot send UDP connects to it. Over
//! TCP every datagram (STUN, DTLS, SRTP) travels as a frame: a two-byte length,
//! then the bytes (RFC 4571).
//!
//! Which worker a new TCP connection belongs to is only known from its first
//! frame, a STUN binding request naming the connection's ICE username fragment:
//! [`first_frame`] finds it.

use str0m::ice::StunMessage;

/// How a datagram reached the SFU, or leaves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    #[default]
    Udp,
    /// A framed TCP connection to the SFU's passive candidate.
    Tcp,
}

/// Largest frame accepted from a client. WebRTC keeps its datagrams under the
/// path MTU (browsers send at most about 1 200 bytes of SRTP or DTLS); a frame
/// far larger is not WebRTC, and accepting 64 KiB ones would let each
/// connection pin that much memory.
pub const MAX_FRAME: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("a frame of {0} bytes is larger than WebRTC sends")]
    TooLarge(usize),
    #[error("the first frame is not a STUN binding request")]
    NotStun,
}

/// The next complete frame at the start of `buf`: its payload and the bytes it
/// took (`Ok(None)` until a whole frame is there).
pub fn next_frame(buf: &[u8]) -> Result<Option<(&[u8], usize)>, FramingError> {
    let Some(len) = buf.get(..2) else {
        return Ok(None);
    };
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    if len > MAX_FRAME {
        return Err(FramingError::TooLarge(len));
    }
    Ok(buf.get(2..2 + len).map(|payload| (payload, 2 + len)))
}

/// Whether a TCP connection whose first byte is `first` may be ICE-TCP, on a
/// port that also serves HTTP and TLS: a frame's length is at most
/// [`MAX_FRAME`], so its first byte is 0x00 to 0x10; an HTTP request starts
/// with a letter and TLS with 0x16. One byte decides, so nothing waits for
/// more: what follows is read, under its own deadline, as a first frame.
pub fn may_be_ice_tcp(first: u8) -> bool {
    usize::from(first) <= MAX_FRAME >> 8
}

/// The ICE username fragment (the SFU's side) named by the STUN binding request
/// that must open an ICE-TCP connection, if the buffer holds that whole frame.
pub fn first_frame(buf: &[u8]) -> Result<Option<String>, FramingError> {
    let Some((frame, _)) = next_frame(buf)? else {
        return Ok(None);
    };
    let msg = StunMessage::parse(frame).map_err(|_| FramingError::NotStun)?;
    let (local, _remote) = msg.split_username().ok_or(FramingError::NotStun)?;
    Ok(Some(local.to_owned()))
}

/// Frame `payload` into `out` (callers keep payloads under 64 KiB: str0m's
/// datagrams are MTU-sized).
pub fn push_frame(out: &mut Vec<u8>, payload: &[u8]) {
    let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&payload[..usize::from(len)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_where_their_lengths_say() {
        let mut wire = Vec::new();
        push_frame(&mut wire, b"abc");
        push_frame(&mut wire, b"");
        push_frame(&mut wire, &[7; 300]);
        let (f, n) = next_frame(&wire).unwrap().unwrap();
        assert_eq!((f, n), (&b"abc"[..], 5));
        let rest = &wire[n..];
        let (f, n) = next_frame(rest).unwrap().unwrap();
        assert_eq!((f.len(), n), (0, 2));
        let rest = &rest[n..];
        assert_eq!(next_frame(&rest[..100]).unwrap(), None, "incomplete");
        assert_eq!(next_frame(&rest[..1]).unwrap(), None, "no length yet");
        assert_eq!(next_frame(rest).unwrap().unwrap().0.len(), 300);
    }

    #[test]
    fn oversized_frames_are_refused() {
        assert_eq!(
            next_frame(&[0xff, 0xff, 0]),
            Err(FramingError::TooLarge(65535))
        );
        assert!(next_frame(&[0x10, 0x00]).unwrap().is_none());
        assert_eq!(next_frame(&[0x10, 0x01]), Err(FramingError::TooLarge(4097)));
    }

    #[test]
    fn one_byte_tells_http_and_tls_from_ice_tcp() {
        assert!(!may_be_ice_tcp(b'G') && !may_be_ice_tcp(b'P'));
        assert!(!may_be_ice_tcp(0x16), "TLS");
        assert!(may_be_ice_tcp(0x00) && may_be_ice_tcp(0x10));
        assert!(!may_be_ice_tcp(0x11), "a frame over MAX_FRAME");
    }

    #[test]
    fn a_first_frame_that_is_not_stun_is_refused() {
        let mut wire = Vec::new();
        push_frame(&mut wire, &[0x80; 40]);
        assert_eq!(first_frame(&wire), Err(FramingError::NotStun));
        assert_eq!(first_frame(&wire[..10]), Ok(None));
    }
}

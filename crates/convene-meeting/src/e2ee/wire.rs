//! The few fields of an MLS message (RFC 9420 §6) the Delivery Service reads:
//! what kind of message it is, which group and epoch it belongs to, and for a
//! KeyPackage, whose it is. Everything else stays opaque bytes. This is a
//! reader of headers, not an MLS implementation: the members' MLS libraries
//! check signatures, tags and trees; the server only orders and routes.

/// `WireFormat` (RFC 9420 §17.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    PublicMessage,
    PrivateMessage,
    Welcome,
    GroupInfo,
    KeyPackage,
}

/// `ContentType` of a framed message (RFC 9420 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    Application,
    Proposal,
    Commit,
}

/// The clear header of a PublicMessage or PrivateMessage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Framed {
    pub group_id: Vec<u8>,
    pub epoch: u64,
    pub content_type: ContentType,
}

/// A GroupInfo's group context, as far as the DS needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfoHeader {
    pub cipher_suite: u16,
    pub group_id: Vec<u8>,
    pub epoch: u64,
}

/// A KeyPackage's suite and its leaf's basic credential identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPackageHeader {
    pub cipher_suite: u16,
    /// The BasicCredential's identity bytes (for Convene, JSON naming the participant).
    pub identity: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub &'static str);

/// `mls10` (RFC 9420 §6).
const MLS10: u16 = 1;
/// The only credential type Convene uses (RFC 9420 §5.3).
const BASIC_CREDENTIAL: u16 = 1;

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.rest.len() < n {
            return Err(Malformed("the message ends too early"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Malformed> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u64(&mut self) -> Result<u64, Malformed> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }
    /// A variable-length vector `<V>` (RFC 9420 §2.1.2): a 1, 2 or 4 byte
    /// length whose top two bits say which, in its minimal encoding.
    fn vector(&mut self) -> Result<&'a [u8], Malformed> {
        let first = self.u8()?;
        let len = match first >> 6 {
            0 => u32::from(first & 0x3f),
            1 => {
                let len = u32::from(first & 0x3f) << 8 | u32::from(self.u8()?);
                if len < 64 {
                    return Err(Malformed("a length is not minimally encoded"));
                }
                len
            }
            2 => {
                let b = self.take(3)?;
                let len = u32::from(first & 0x3f) << 24
                    | u32::from(b[0]) << 16
                    | u32::from(b[1]) << 8
                    | u32::from(b[2]);
                if len < 16384 {
                    return Err(Malformed("a length is not minimally encoded"));
                }
                len
            }
            _ => return Err(Malformed("a length has an invalid prefix")),
        };
        self.take(len as usize)
    }
}

/// The version and wire format at the start of every MLSMessage.
pub fn wire_format(bytes: &[u8]) -> Result<WireFormat, Malformed> {
    let mut r = Reader { rest: bytes };
    start(&mut r)
}

fn start(r: &mut Reader<'_>) -> Result<WireFormat, Malformed> {
    if r.u16()? != MLS10 {
        return Err(Malformed("not an MLS 1.0 message"));
    }
    Ok(match r.u16()? {
        1 => WireFormat::PublicMessage,
        2 => WireFormat::PrivateMessage,
        3 => WireFormat::Welcome,
        4 => WireFormat::GroupInfo,
        5 => WireFormat::KeyPackage,
        _ => return Err(Malformed("an unknown wire format")),
    })
}

/// The clear header of a handshake or application message (RFC 9420 §6.2,
/// §6.3): both start with the group id and epoch; a PublicMessage then names
/// its sender before the content type, a PrivateMessage does not.
pub fn framed(bytes: &[u8]) -> Result<Framed, Malformed> {
    let mut r = Reader { rest: bytes };
    let format = start(&mut r)?;
    let group_id = r.vector()?.to_vec();
    let epoch = r.u64()?;
    match format {
        WireFormat::PublicMessage => {
            // Sender (RFC 9420 §6): member and external carry a u32 index.
            match r.u8()? {
                1 | 2 => {
                    r.take(4)?;
                }
                3 | 4 => {}
                _ => return Err(Malformed("an unknown sender type")),
            }
            r.vector()?; // authenticated_data
        }
        WireFormat::PrivateMessage => {}
        _ => return Err(Malformed("not a handshake or application message")),
    }
    let content_type = match r.u8()? {
        1 => ContentType::Application,
        2 => ContentType::Proposal,
        3 => ContentType::Commit,
        _ => return Err(Malformed("an unknown content type")),
    };
    Ok(Framed {
        group_id,
        epoch,
        content_type,
    })
}

/// A GroupInfo's group context (RFC 9420 §12.4.3, §8.1).
pub fn group_info(bytes: &[u8]) -> Result<GroupInfoHeader, Malformed> {
    let mut r = Reader { rest: bytes };
    if start(&mut r)? != WireFormat::GroupInfo {
        return Err(Malformed("not a GroupInfo"));
    }
    if r.u16()? != MLS10 {
        return Err(Malformed("not an MLS 1.0 group"));
    }
    let cipher_suite = r.u16()?;
    let group_id = r.vector()?.to_vec();
    let epoch = r.u64()?;
    Ok(GroupInfoHeader {
        cipher_suite,
        group_id,
        epoch,
    })
}

/// A KeyPackage's suite and credential (RFC 9420 §10, §7.2).
pub fn key_package(bytes: &[u8]) -> Result<KeyPackageHeader, Malformed> {
    let mut r = Reader { rest: bytes };
    if start(&mut r)? != WireFormat::KeyPackage {
        return Err(Malformed("not a KeyPackage"));
    }
    if r.u16()? != MLS10 {
        return Err(Malformed("not an MLS 1.0 key package"));
    }
    let cipher_suite = r.u16()?;
    r.vector()?; // init_key
    r.vector()?; // leaf encryption_key
    r.vector()?; // leaf signature_key
    if r.u16()? != BASIC_CREDENTIAL {
        return Err(Malformed("not a basic credential"));
    }
    let identity = r.vector()?.to_vec();
    Ok(KeyPackageHeader {
        cipher_suite,
        identity,
    })
}

/// Whether the bytes are a Welcome (its contents are encrypted to the joiners).
pub fn is_welcome(bytes: &[u8]) -> bool {
    matches!(wire_format(bytes), Ok(WireFormat::Welcome))
}

#[cfg(test)]
pub(crate) mod build {
    //! MLS-shaped byte strings for tests: the headers are real, the rest is filler.

    pub fn vector(bytes: &[u8]) -> Vec<u8> {
        let len = bytes.len();
        let mut out = if len < 64 {
            vec![len as u8]
        } else if len < 16384 {
            vec![0x40 | (len >> 8) as u8, len as u8]
        } else {
            vec![
                0x80 | (len >> 24) as u8,
                (len >> 16) as u8,
                (len >> 8) as u8,
                len as u8,
            ]
        };
        out.extend_from_slice(bytes);
        out
    }

    fn head(format: u16) -> Vec<u8> {
        let mut out = 1u16.to_be_bytes().to_vec();
        out.extend_from_slice(&format.to_be_bytes());
        out
    }

    /// A PublicMessage commit from member `leaf`.
    pub fn commit(group: &[u8], epoch: u64, leaf: u32) -> Vec<u8> {
        let mut out = head(1);
        out.extend(vector(group));
        out.extend_from_slice(&epoch.to_be_bytes());
        out.push(1);
        out.extend_from_slice(&leaf.to_be_bytes());
        out.extend(vector(b""));
        out.push(3);
        out.extend_from_slice(&[0xaa; 40]);
        out
    }

    /// A PrivateMessage with the given content type (1 application, 3 commit).
    pub fn private(group: &[u8], epoch: u64, content_type: u8) -> Vec<u8> {
        let mut out = head(2);
        out.extend(vector(group));
        out.extend_from_slice(&epoch.to_be_bytes());
        out.push(content_type);
        out.extend(vector(b""));
        out.extend(vector(&[0xbb; 20]));
        out.extend(vector(&[0xcc; 60]));
        out
    }

    pub fn group_info(group: &[u8], epoch: u64) -> Vec<u8> {
        let mut out = head(4);
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend(vector(group));
        out.extend_from_slice(&epoch.to_be_bytes());
        out.extend_from_slice(&[0xdd; 50]);
        out
    }

    pub fn welcome() -> Vec<u8> {
        let mut out = head(3);
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&[0xee; 80]);
        out
    }

    pub fn key_package(participant: &str) -> Vec<u8> {
        key_package_saying(&format!(r#"{{"p":"{participant}","n":"Someone"}}"#))
    }

    /// A KeyPackage whose credential identity is `identity` (JSON, or not).
    pub fn key_package_saying(identity: &str) -> Vec<u8> {
        let mut out = head(5);
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend(vector(&[1; 32]));
        out.extend(vector(&[2; 32]));
        out.extend(vector(&[3; 32]));
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend(vector(identity.as_bytes()));
        out.extend_from_slice(&[0xff; 100]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_headers_it_was_given() {
        let g = b"group-0123456789";
        assert_eq!(
            framed(&build::commit(g, 7, 2)).unwrap(),
            Framed {
                group_id: g.to_vec(),
                epoch: 7,
                content_type: ContentType::Commit
            }
        );
        let p = framed(&build::private(g, 3, 1)).unwrap();
        assert_eq!((p.epoch, p.content_type), (3, ContentType::Application));
        let gi = group_info(&build::group_info(g, 8)).unwrap();
        assert_eq!((gi.cipher_suite, gi.epoch, gi.group_id), (1, 8, g.to_vec()));
        let kp = key_package(&build::key_package("p4")).unwrap();
        assert_eq!(kp.identity, br#"{"p":"p4","n":"Someone"}"#);
        assert!(is_welcome(&build::welcome()));
    }

    #[test]
    fn long_vectors_use_longer_lengths() {
        let g = vec![9u8; 300];
        assert_eq!(framed(&build::commit(&g, 1, 0)).unwrap().group_id, g);
        let big = vec![7u8; 20_000];
        let mut r = Reader {
            rest: &build::vector(&big),
        };
        assert_eq!(r.vector().unwrap(), &big[..]);
    }

    #[test]
    fn refuses_what_is_not_mls() {
        assert!(wire_format(b"").is_err());
        assert!(wire_format(&[0, 2, 0, 1]).is_err()); // version 2
        assert!(wire_format(&[0, 1, 0, 9]).is_err()); // no such format
                                                      // A length longer than the message.
        assert!(framed(&[0, 1, 0, 1, 0x3f, 1, 2]).is_err());
        // A non-minimal length.
        assert!(framed(&[0, 1, 0, 1, 0x40, 0x01, 0xaa]).is_err());
        // The 0b11 prefix.
        assert!(framed(&[0, 1, 0, 1, 0xc0, 0, 0, 0]).is_err());
        assert!(framed(&build::welcome()).is_err());
        assert!(group_info(&build::commit(b"g", 1, 0)).is_err());
        assert!(key_package(&build::group_info(b"g", 1)).is_err());
        // Every truncation of a valid message is refused, none panics.
        let kp = build::key_package("p1");
        for n in 0..kp.len() - 100 {
            assert!(key_package(&kp[..n]).is_err(), "cut at {n}");
        }
        let c = build::commit(b"group", 1, 0);
        for n in 0..c.len() - 40 {
            assert!(framed(&c[..n]).is_err(), "cut at {n}");
        }
    }
}

//! SFrame (RFC 9605) for cipher suite AES_128_GCM_SHA256_128 (0x0004) with the
//! MLS key profile of §5.2, in exactly the frame format of web/e2ee/README.md,
//! so that frames pass between this client and browsers (web/e2ee/sframe.js):
//!
//! ```text
//! frame = prefix || header || AES-128-GCM(key, salt XOR CTR, aad = header || prefix, rest)
//! ```
//!
//! The clear prefix is what browsers' VP8 depacketisers and the SFU read
//! (10 bytes of a keyframe, 3 of a delta frame, none of Opus); without it no
//! browser decodes a frame (docs/e2ee-design.md §11.4).
//!
//! Pure functions: which keys exist, and for how long, is `frame_keys`'s job.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Nonce};
use hkdf::Hkdf;
use sha2::Sha256;

/// AES_128_GCM_SHA256_128 (RFC 9605 §4.5).
pub const CIPHER_SUITE: u16 = 0x0004;
/// E: the KID's low bits carry the epoch mod 16 (16 epochs in flight).
pub const EPOCH_BITS: u32 = 4;
/// S: the KID's next bits carry the sender's MLS leaf (up to 1024 leaves).
pub const INDEX_BITS: u32 = 10;
/// The AES-GCM tag (128 bits) every frame ends with.
pub const TAG_LEN: usize = 16;
const NK: usize = 16;
const NN: usize = 12;

/// What a frame carries: video frames keep their VP8 payload header clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
}

/// How many leading bytes of a frame stay clear: a VP8 keyframe (bit 0 of
/// byte 0 is 0) 10 (frame tag, start code, size), a delta frame 3 (frame
/// tag), audio none; never more than the frame.
pub fn clear_prefix_len(kind: MediaKind, frame: &[u8]) -> usize {
    match (kind, frame.first()) {
        (MediaKind::Video, Some(b)) => frame.len().min(if b & 1 == 0 { 10 } else { 3 }),
        _ => 0,
    }
}

/// Big-endian bytes of `v` without leading zeros (at least one byte).
fn minimal_bytes(v: u64) -> Vec<u8> {
    let n = (8 - v.leading_zeros() as usize / 8).max(1);
    v.to_be_bytes()[8 - n..].to_vec()
}

/// The SFrame header (RFC 9605 §4.3): a config byte, then KID and CTR, each
/// either in the config byte's 3 bits (values below 8) or as 1–8 extra bytes.
pub fn encode_header(kid: u64, ctr: u64) -> Vec<u8> {
    let mut out = vec![0];
    let mut field = |v: u64, shift: u32| -> u8 {
        if v < 8 {
            (v as u8) << shift
        } else {
            let b = minimal_bytes(v);
            let len = b.len() as u8;
            out.extend_from_slice(&b);
            (0x08 | (len - 1)) << shift
        }
    };
    let k = field(kid, 4);
    let c = field(ctr, 0);
    out[0] = k | c;
    out
}

/// A parsed SFrame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kid: u64,
    pub ctr: u64,
    /// Its length in bytes.
    pub len: usize,
}

/// Parses the header at the start of `buf`; `None` when it is cut short.
pub fn parse_header(buf: &[u8]) -> Option<Header> {
    let config = *buf.first()?;
    let mut p = 1;
    let mut field = |extended: bool, bits: u8| -> Option<u64> {
        if !extended {
            return Some(u64::from(bits));
        }
        let len = usize::from(bits) + 1;
        let bytes = buf.get(p..p + len)?;
        p += len;
        Some(bytes.iter().fold(0, |v, b| (v << 8) | u64::from(*b)))
    };
    let kid = field(config & 0x80 != 0, (config >> 4) & 7)?;
    let ctr = field(config & 0x08 != 0, config & 7)?;
    Some(Header { kid, ctr, len: p })
}

/// The KID of an MLS sender (RFC 9605 §5.2): `context << 14 | leaf << 4 |
/// epoch mod 16`. `None` for a leaf or context that does not fit.
pub fn mls_kid(leaf: u32, epoch: u64, context: u64) -> Option<u64> {
    if leaf >= 1 << INDEX_BITS || context >= 1 << (64 - INDEX_BITS - EPOCH_BITS) {
        return None;
    }
    Some(
        (context << (INDEX_BITS + EPOCH_BITS))
            | (u64::from(leaf) << EPOCH_BITS)
            | (epoch % (1 << EPOCH_BITS)),
    )
}

/// A KID taken apart (the inverse of [`mls_kid`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KidParts {
    pub epoch_bits: u8,
    pub leaf: u32,
    pub context: u64,
}

pub fn kid_parts(kid: u64) -> KidParts {
    KidParts {
        epoch_bits: (kid & ((1 << EPOCH_BITS) - 1)) as u8,
        leaf: ((kid >> EPOCH_BITS) & ((1 << INDEX_BITS) - 1)) as u32,
        context: kid >> (INDEX_BITS + EPOCH_BITS),
    }
}

/// One KID's key and salt, ready to use.
#[derive(Clone)]
pub struct KeySalt {
    cipher: Aes128Gcm,
    key: [u8; NK],
    salt: [u8; NN],
}

impl std::fmt::Debug for KeySalt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeySalt(..)") // never the secret
    }
}

impl KeySalt {
    pub fn key(&self) -> &[u8; NK] {
        &self.key
    }
    pub fn salt(&self) -> &[u8; NN] {
        &self.salt
    }
    fn nonce(&self, ctr: u64) -> [u8; NN] {
        let mut n = [0; NN];
        n[NN - 8..].copy_from_slice(&ctr.to_be_bytes());
        for (b, s) in n.iter_mut().zip(self.salt) {
            *b ^= s;
        }
        n
    }
}

/// `derive_key_salt` of RFC 9605 §4.4.2 as published: the KID and suite are
/// in the labels, so every KID (every sender, every send context) has keys of
/// its own. (Drafts before 2023-09 had a per-sender HKDF-Expand first; the
/// RFC and the browser do not.)
pub fn derive_key_salt(base_key: &[u8], kid: u64) -> KeySalt {
    let hk = Hkdf::<Sha256>::new(Some(&[]), base_key);
    let label = |what: &str| {
        let mut l = format!("SFrame 1.0 Secret {what} ").into_bytes();
        l.extend_from_slice(&kid.to_be_bytes());
        l.extend_from_slice(&CIPHER_SUITE.to_be_bytes());
        l
    };
    let mut key = [0; NK];
    let mut salt = [0; NN];
    // Lengths of 16 and 12 are far below HKDF's limit: these never fail.
    hk.expand(&label("key"), &mut key).expect("HKDF length");
    hk.expand(&label("salt"), &mut salt).expect("HKDF length");
    KeySalt {
        cipher: Aes128Gcm::new(&key.into()),
        key,
        salt,
    }
}

/// Encrypts one frame: `prefix || header || ciphertext+tag`, the first
/// `prefix_len` bytes of `frame` staying clear (and authenticated).
pub fn encrypt_frame(
    keys: &KeySalt,
    kid: u64,
    ctr: u64,
    frame: &[u8],
    prefix_len: usize,
) -> Vec<u8> {
    let prefix_len = prefix_len.min(frame.len());
    let (prefix, rest) = frame.split_at(prefix_len);
    let header = encode_header(kid, ctr);
    let aad = [&header[..], prefix].concat();
    let nonce = keys.nonce(ctr);
    // AES-GCM fails only for inputs over 64 GiB.
    let ct = keys
        .cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: rest,
                aad: &aad,
            },
        )
        .expect("AES-GCM input too long");
    [prefix, &header, &ct].concat()
}

/// Why a frame did not decrypt. None of these frames may reach a decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    #[error("malformed frame")]
    Malformed,
    #[error("no key for KID {0}")]
    UnknownKid(u64),
    #[error("frame for KID {0} failed authentication")]
    Auth(u64),
    #[error("frame for KID {kid} repeats counter {ctr}")]
    Replay { kid: u64, ctr: u64 },
}

/// A frame that decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    pub kid: u64,
    pub ctr: u64,
    /// The clear frame, prefix included.
    pub frame: Vec<u8>,
}

/// Decrypts one frame with the keys `keys_for` gives for its KID (`None`: an
/// unknown KID). Any input gives a result, never a panic.
pub fn decrypt_frame<'k>(
    mut keys_for: impl FnMut(u64) -> Option<&'k KeySalt>,
    data: &[u8],
    prefix_len: usize,
) -> Result<Decrypted, DecryptError> {
    let prefix_len = prefix_len.min(data.len());
    let (prefix, sealed) = data.split_at(prefix_len);
    let h = parse_header(sealed).ok_or(DecryptError::Malformed)?;
    if sealed.len() < h.len + TAG_LEN {
        return Err(DecryptError::Malformed);
    }
    let keys = keys_for(h.kid).ok_or(DecryptError::UnknownKid(h.kid))?;
    let aad = [&sealed[..h.len], prefix].concat();
    let nonce = keys.nonce(h.ctr);
    let pt = keys
        .cipher
        .decrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &sealed[h.len..],
                aad: &aad,
            },
        )
        .map_err(|_| DecryptError::Auth(h.kid))?;
    Ok(Decrypted {
        kid: h.kid,
        ctr: h.ctr,
        frame: [prefix, &pt].concat(),
    })
}

#[cfg(test)]
mod tests;

//! Which SFrame keys a participant holds, and for how long, as the browser's
//! worker (web/e2ee/sframe-worker.js) does it (docs/e2ee-design.md §8):
//!
//! - a sender uses the newest epoch's key as soon as it has one, with one
//!   counter per send context that is never reset, so no (key, CTR) pair
//!   repeats (RFC 9605 §4.4.3, §9.3): every context has its own KID;
//! - a receiver keeps the previous epochs' keys for 5 s (2 s when the new
//!   epoch removed someone) for frames in flight, and refuses frames whose
//!   KID names an epoch it does not hold, a replayed counter, or anything
//!   that fails to authenticate. None of those may reach a decoder.
//!
//! Sans-IO: the caller passes the time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::sframe::{
    clear_prefix_len, decrypt_frame, derive_key_salt, encrypt_frame, kid_parts, mls_kid,
    parse_header, DecryptError, KeySalt, MediaKind, EPOCH_BITS,
};

/// How long receivers keep an epoch's keys after a newer one arrives.
pub const KEEP_OLD: Duration = Duration::from_secs(5);
/// ...and when the newer epoch removed someone (forward secrecy sooner).
pub const KEEP_OLD_AFTER_REMOVAL: Duration = Duration::from_secs(2);
/// Counters remembered below the highest per KID: frames reordered by more
/// than this are refused as replays.
const REPLAY_WINDOW: u64 = 128;

struct Epoch {
    epoch: u64,
    base_key: Vec<u8>,
    expires: Option<Instant>,
    keys: HashMap<u64, KeySalt>,
}

impl Drop for Epoch {
    fn drop(&mut self) {
        // Forward secrecy in memory too: the secret is gone once the epoch is.
        self.base_key.iter_mut().for_each(|b| *b = 0);
    }
}

/// The counters seen per KID: the highest, and which of the window below it.
#[derive(Default)]
struct Seen {
    highest: Option<u64>,
    window: u128,
}

impl Seen {
    /// Records `ctr`; false if it was seen, or is too old to tell.
    fn check(&mut self, ctr: u64) -> bool {
        let Some(high) = self.highest else {
            self.highest = Some(ctr);
            self.window = 1;
            return true;
        };
        if ctr > high {
            let shift = ctr - high;
            self.window = if shift >= REPLAY_WINDOW {
                0
            } else {
                self.window << shift
            };
            self.window |= 1;
            self.highest = Some(ctr);
            return true;
        }
        let back = high - ctr;
        if back >= REPLAY_WINDOW || self.window & (1 << back) != 0 {
            return false;
        }
        self.window |= 1 << back;
        true
    }
}

/// A participant's SFrame keys: its own for sending, everyone's for receiving.
#[derive(Default)]
pub struct FrameKeys {
    /// By epoch mod 16: the KID carries only that (RFC 9605 §5.2).
    epochs: HashMap<u8, Epoch>,
    newest: Option<u64>,
    own_leaf: Option<u32>,
    counters: HashMap<u64, u64>,
    seen: HashMap<u64, Seen>,
}

impl FrameKeys {
    pub fn new() -> Self {
        Self::default()
    }

    /// A new epoch's base key (`MLS-Exporter("SFrame 1.0 Base Key", "", 16)`)
    /// and this participant's leaf in it. `removal`: the epoch removed someone.
    pub fn add_epoch(
        &mut self,
        epoch: u64,
        base_key: &[u8],
        own_leaf: u32,
        removal: bool,
        now: Instant,
    ) {
        let keep = if removal {
            KEEP_OLD_AFTER_REMOVAL
        } else {
            KEEP_OLD
        };
        for e in self.epochs.values_mut() {
            if e.epoch == epoch {
                return;
            }
            let until = now + keep;
            e.expires = Some(e.expires.map_or(until, |t| t.min(until)));
        }
        let slot = (epoch % (1 << EPOCH_BITS)) as u8;
        // 16 epochs later the slot is reused: the old epoch's keys go, and the
        // counters seen under its KIDs with them.
        if self.epochs.remove(&slot).is_some() {
            self.seen
                .retain(|kid, _| kid_parts(*kid).epoch_bits != slot);
        }
        self.epochs.insert(
            slot,
            Epoch {
                epoch,
                base_key: base_key.to_vec(),
                expires: None,
                keys: HashMap::new(),
            },
        );
        if self.newest.is_none_or(|n| epoch > n) {
            self.newest = Some(epoch);
            self.own_leaf = Some(own_leaf);
        }
    }

    /// Forgets every key (the participant left or was removed).
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// The newest epoch this holds keys for.
    pub fn newest_epoch(&self) -> Option<u64> {
        self.newest
    }

    fn expire(&mut self, now: Instant) {
        let before = self.epochs.len();
        self.epochs.retain(|_, e| e.expires.is_none_or(|t| t > now));
        if self.epochs.len() != before {
            let held: Vec<u8> = self.epochs.keys().copied().collect();
            self.seen
                .retain(|kid, _| held.contains(&kid_parts(*kid).epoch_bits));
        }
    }

    /// Encrypts a frame this participant sends in `context` (one per thing it
    /// sends: camera, microphone...) under the newest epoch's key. `None`
    /// before there is a key: nothing may go out in the clear.
    pub fn encrypt(&mut self, kind: MediaKind, context: u64, frame: &[u8]) -> Option<Vec<u8>> {
        let epoch = self.newest?;
        let kid = mls_kid(self.own_leaf?, epoch, context)?;
        let entry = self.epochs.get_mut(&((epoch % (1 << EPOCH_BITS)) as u8))?;
        let keys = entry
            .keys
            .entry(kid)
            .or_insert_with(|| derive_key_salt(&entry.base_key, kid));
        let ctr = self.counters.entry(context).or_insert(0);
        let this = *ctr;
        *ctr += 1;
        Some(encrypt_frame(
            keys,
            kid,
            this,
            frame,
            clear_prefix_len(kind, frame),
        ))
    }

    /// Decrypts a received frame: the clear frame and the sender's leaf.
    pub fn decrypt(
        &mut self,
        kind: MediaKind,
        data: &[u8],
        now: Instant,
    ) -> Result<(Vec<u8>, u32), DecryptError> {
        self.expire(now);
        let prefix = clear_prefix_len(kind, data);
        // Derive the KID's keys first (once per KID and epoch), then look up.
        if let Some(h) = data.get(prefix..).and_then(parse_header) {
            if let Some(e) = self.epochs.get_mut(&kid_parts(h.kid).epoch_bits) {
                let base = &e.base_key;
                e.keys
                    .entry(h.kid)
                    .or_insert_with(|| derive_key_salt(base, h.kid));
            }
        }
        let epochs = &self.epochs;
        let got = decrypt_frame(
            |kid| epochs.get(&kid_parts(kid).epoch_bits)?.keys.get(&kid),
            data,
            prefix,
        )?;
        // Only an authentic frame counts towards the replay window: a forged
        // one must not push real frames out of it.
        if !self.seen.entry(got.kid).or_default().check(got.ctr) {
            return Err(DecryptError::Replay {
                kid: got.kid,
                ctr: got.ctr,
            });
        }
        Ok((got.frame, kid_parts(got.kid).leaf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyframe(n: usize) -> Vec<u8> {
        let mut f = vec![0x50, 0x2a, 0x01, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];
        f.extend((0..n).map(|i| i as u8));
        f
    }

    #[test]
    fn nothing_is_sent_before_a_key() {
        let mut k = FrameKeys::new();
        assert_eq!(k.encrypt(MediaKind::Audio, 0, b"hello"), None);
    }

    #[test]
    fn frames_pass_between_members_of_one_epoch_and_name_the_sender() {
        let now = Instant::now();
        let (mut a, mut b) = (FrameKeys::new(), FrameKeys::new());
        a.add_epoch(3, &[9; 16], 0, false, now);
        b.add_epoch(3, &[9; 16], 1, false, now);
        let f = keyframe(100);
        let sealed = a.encrypt(MediaKind::Video, 0, &f).unwrap();
        assert_eq!(
            b.decrypt(MediaKind::Video, &sealed, now),
            Ok((f.clone(), 0))
        );
        // The same frame again is a replay.
        assert!(matches!(
            b.decrypt(MediaKind::Video, &sealed, now),
            Err(DecryptError::Replay { .. })
        ));
        // Counters go up per context and never repeat.
        let s2 = a.encrypt(MediaKind::Video, 0, &f).unwrap();
        let s3 = a.encrypt(MediaKind::Video, 1, &f).unwrap();
        assert_ne!(s2, sealed);
        assert_eq!(b.decrypt(MediaKind::Video, &s3, now).unwrap().1, 0);
        assert_eq!(b.decrypt(MediaKind::Video, &s2, now).unwrap().1, 0);
    }

    #[test]
    fn unknown_epochs_are_refused_and_old_ones_expire() {
        let now = Instant::now();
        let (mut a, mut b) = (FrameKeys::new(), FrameKeys::new());
        a.add_epoch(1, &[1; 16], 0, false, now);
        let old = a.encrypt(MediaKind::Audio, 0, b"epoch one").unwrap();
        assert!(matches!(
            b.decrypt(MediaKind::Audio, &old, now),
            Err(DecryptError::UnknownKid(_))
        ));
        b.add_epoch(1, &[1; 16], 1, false, now);
        a.add_epoch(2, &[2; 16], 0, true, now);
        b.add_epoch(2, &[2; 16], 1, true, now);
        let new = a.encrypt(MediaKind::Audio, 0, b"epoch two").unwrap();
        assert_eq!(
            b.decrypt(MediaKind::Audio, &new, now).unwrap().0,
            b"epoch two"
        );
        // Epoch 1 still opens for a moment (frames in flight)...
        assert_eq!(
            b.decrypt(MediaKind::Audio, &old, now).unwrap().0,
            b"epoch one"
        );
        // ...and not after the removal's 2 s, while epoch 2 still does.
        let mut a1 = FrameKeys::new();
        a1.add_epoch(1, &[1; 16], 0, false, now);
        a1.counters.insert(0, 5);
        let late = a1.encrypt(MediaKind::Audio, 0, b"epoch one, late").unwrap();
        let later = now + KEEP_OLD_AFTER_REMOVAL + Duration::from_millis(1);
        assert!(matches!(
            b.decrypt(MediaKind::Audio, &late, later),
            Err(DecryptError::UnknownKid(_))
        ));
        let newer = a.encrypt(MediaKind::Audio, 0, b"epoch two, later").unwrap();
        assert_eq!(
            b.decrypt(MediaKind::Audio, &newer, later).unwrap().0,
            b"epoch two, later"
        );
    }

    #[test]
    fn a_slot_reused_16_epochs_later_holds_the_new_key_only() {
        let now = Instant::now();
        let (mut a, mut b) = (FrameKeys::new(), FrameKeys::new());
        a.add_epoch(2, &[2; 16], 0, false, now);
        let old = a.encrypt(MediaKind::Audio, 0, b"x").unwrap();
        b.add_epoch(2, &[2; 16], 1, false, now);
        b.add_epoch(18, &[18; 16], 1, false, now);
        assert!(matches!(
            b.decrypt(MediaKind::Audio, &old, now),
            Err(DecryptError::Auth(_))
        ));
    }

    #[test]
    fn the_replay_window_takes_reordering_and_refuses_repeats() {
        let mut s = Seen::default();
        for c in [5, 3, 4, 10, 9, 200, 150] {
            assert!(s.check(c), "{c}");
        }
        for c in [5, 3, 10, 200, 150, 60] {
            assert!(!s.check(c), "{c}");
        }
        assert!(s.check(199));
    }
}

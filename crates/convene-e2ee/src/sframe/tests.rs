//! RFC 9605 Appendix C vectors (the ones tests/e2e/e2ee-sframe.test.mjs checks
//! web/e2ee/sframe.js with), frames sealed by web/e2ee/sframe.js in Node, and
//! inputs that must be refused without a panic.

use super::*;
use proptest::prelude::*;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// RFC 9605 Appendix C.1: (KID, CTR, encoded header).
const HEADERS: &[(u64, u64, &str)] = &[
    (0, 0, "00"),
    (0, 1, "01"),
    (0, 255, "08ff"),
    (0, 65536, "0a010000"),
    (0, u64::MAX, "0fffffffffffffffff"),
    (1, 0, "10"),
    (1, 1, "11"),
    (1, 255, "18ff"),
    (1, 65536, "1a010000"),
    (1, u64::MAX, "1fffffffffffffffff"),
    (255, 0, "80ff"),
    (255, 1, "81ff"),
    (255, 255, "88ffff"),
    (255, 65536, "8aff010000"),
    (255, u64::MAX, "8fffffffffffffffffff"),
    (256, 0, "900100"),
    (256, 1, "910100"),
    (256, 255, "980100ff"),
    (256, 65536, "9a0100010000"),
    (256, u64::MAX, "9f0100ffffffffffffffff"),
    (65535, 0, "90ffff"),
    (65535, 1, "91ffff"),
    (65535, 255, "98ffffff"),
    (65535, 65536, "9affff010000"),
    (65535, u64::MAX, "9fffffffffffffffffffff"),
    (65536, 0, "a0010000"),
    (65536, 1, "a1010000"),
    (65536, 255, "a8010000ff"),
    (65536, 65536, "aa010000010000"),
    (65536, u64::MAX, "af010000ffffffffffffffff"),
    (72057594037927936, 0, "f00100000000000000"),
    (72057594037927936, 1, "f10100000000000000"),
    (72057594037927936, 255, "f80100000000000000ff"),
    (72057594037927936, 65536, "fa0100000000000000010000"),
    (
        72057594037927936,
        u64::MAX,
        "ff0100000000000000ffffffffffffffff",
    ),
    (u64::MAX, 0, "f0ffffffffffffffff"),
    (u64::MAX, 1, "f1ffffffffffffffff"),
    (u64::MAX, 255, "f8ffffffffffffffffff"),
    (u64::MAX, 65536, "faffffffffffffffff010000"),
    (u64::MAX, u64::MAX, "ffffffffffffffffffffffffffffffffff"),
];

#[test]
fn headers_match_rfc_9605_c1() {
    for &(kid, ctr, encoded) in HEADERS {
        assert_eq!(
            hex(&encode_header(kid, ctr)),
            encoded,
            "kid {kid} ctr {ctr}"
        );
        let mut buf = unhex(encoded);
        buf.extend_from_slice(&[0xab, 0xcd]);
        let want = Header {
            kid,
            ctr,
            len: encoded.len() / 2,
        };
        assert_eq!(parse_header(&buf), Some(want));
    }
    assert_eq!(parse_header(&unhex("9f0100ffff")), None, "cut short");
    assert_eq!(parse_header(&[]), None);
}

/// RFC 9605 Appendix C.3 (cipher suite 0x0004).
#[test]
fn key_salt_and_frame_match_rfc_9605_c3() {
    let base_key = unhex("000102030405060708090a0b0c0d0e0f");
    let (kid, ctr) = (0x123, 0x4567);
    let keys = derive_key_salt(&base_key, kid);
    assert_eq!(hex(keys.key()), "d34f547f4ca4f9a7447006fe7fcbf768");
    assert_eq!(hex(keys.salt()), "75234edefe07819026751816");
    let metadata = unhex("4945544620534672616d65205747");
    let pt = unhex("64726166742d696574662d736672616d652d656e63");
    let ct = "9901234567b7412c2513a1b66dbb48841bbaf17f598751176ad847681a69c6d0b091c07018ce4adb34eb";
    // Our frames carry the metadata (the clear prefix) in front; the RFC's
    // output is what follows it.
    let frame = [&metadata[..], &pt].concat();
    let sealed = encrypt_frame(&keys, kid, ctr, &frame, metadata.len());
    assert_eq!(hex(&sealed[..metadata.len()]), hex(&metadata));
    assert_eq!(hex(&sealed[metadata.len()..]), ct);
    let back = decrypt_frame(|k| (k == kid).then_some(&keys), &sealed, metadata.len()).unwrap();
    assert_eq!(back, Decrypted { kid, ctr, frame });
}

#[test]
fn mls_kids_hold_leaf_epoch_and_context() {
    assert_eq!(mls_kid(0, 0, 0), Some(0));
    assert_eq!(mls_kid(3, 14, 0), Some(0x3e)); // RFC 9605 §5.2's figure, E = 4
    assert_eq!(mls_kid(33, 17, 0), Some(0x211));
    assert_eq!(mls_kid(2, 16, 2), Some(2 << 14 | 0x20));
    assert_eq!(
        kid_parts(mls_kid(1023, 35, 1).unwrap()),
        KidParts {
            epoch_bits: 3,
            leaf: 1023,
            context: 1
        }
    );
    assert_eq!(mls_kid(1024, 0, 0), None);
    assert_eq!(mls_kid(0, 0, 1 << 50), None);
    assert_eq!(hex(&encode_header(mls_kid(0, 5, 0).unwrap(), 3)), "53");
}

#[test]
fn clear_prefix_is_10_bytes_of_a_keyframe_3_of_a_delta_none_of_audio() {
    let key = [
        0x50, 0x2a, 0x01, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01, 9, 9, 9,
    ];
    assert_eq!(clear_prefix_len(MediaKind::Video, &key), 10);
    assert_eq!(clear_prefix_len(MediaKind::Video, &[0x31, 2, 3, 4, 5]), 3);
    assert_eq!(clear_prefix_len(MediaKind::Video, &[0x30, 2]), 2);
    assert_eq!(clear_prefix_len(MediaKind::Video, &[]), 0);
    assert_eq!(clear_prefix_len(MediaKind::Audio, &key), 0);
}

/// Frames web/e2ee/sframe.js sealed in Node (base key a0..af; made once with a
/// script that called its mlsKid, deriveKeySalt, clearPrefixLength and
/// encryptFrame): a VP8 keyframe, a delta frame in send context 1, and Opus.
const FROM_BROWSER: &[(MediaKind, u32, u64, u64, u64, &str, &str)] = &[
    (
        MediaKind::Video, 5, 7, 0, 0,
        "502a019d012a8002e001000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2021222324252627",
        "502a019d012a8002e001805770c196a966fa2b07579bcdf368e20ef504cde15d3a32bd58fc8c6ebe8c6528f6c93291b8fde06bc79732ca4a2aff36a3e485c15f8c86accc",
    ),
    (
        MediaKind::Video, 5, 7, 1, 300,
        "310203fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0efeeedecebeae9e8e7e6e5e4e3e2",
        "310203994057012c9a40824bbce610f6b7716ff27879e5e72d1e50a18bef12283dee64cc5dae3b430ebd89be3e28c4596bba2b7c731b",
    ),
    (
        MediaKind::Audio, 1023, 35, 0, 70000,
        "00070e151c232a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2d9e0e7eef5fc030a11181f262d343b424950575e656c737a81888f969da4abb2b9c0c7ced5dce3eaf1f8ff060d141b2229",
        "9a3ff3011170e5c0c468336ef1cf80ad628048481621ece80ac51574a0318f57fe5896692891a905a8a550a4dfd2638731fbdf4db98db9d6a0dd06c15d1c435d8c1818db70086f229d5c2fdec90cdca9293769f53228b3c0e5eb2503c05a59b13a2da693b8fb",
    ),
];

#[test]
fn frames_sealed_by_the_browser_code_open_here_and_ours_are_byte_equal() {
    let base: Vec<u8> = (0xa0..=0xaf).collect();
    for &(kind, leaf, epoch, context, ctr, frame, sealed) in FROM_BROWSER {
        let (frame, sealed) = (unhex(frame), unhex(sealed));
        let kid = mls_kid(leaf, epoch, context).unwrap();
        let keys = derive_key_salt(&base, kid);
        let n = clear_prefix_len(kind, &sealed);
        let back = decrypt_frame(|k| (k == kid).then_some(&keys), &sealed, n).unwrap();
        assert_eq!(back.frame, frame, "{kind:?} leaf {leaf}");
        assert_eq!((back.kid, back.ctr), (kid, ctr));
        // Same key, KID, CTR and frame: the same bytes (AES-GCM is deterministic).
        let ours = encrypt_frame(&keys, kid, ctr, &frame, clear_prefix_len(kind, &frame));
        assert_eq!(hex(&ours), hex(&sealed));
    }
}

#[test]
fn tampering_wrong_keys_and_unknown_kids_are_refused() {
    let base = [7u8; 16];
    let kid = mls_kid(5, 9, 0).unwrap();
    let keys = derive_key_salt(&base, kid);
    let mut frame = vec![0x50u8; 1200];
    frame[1..]
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = i as u8);
    let n = clear_prefix_len(MediaKind::Video, &frame);
    let sealed = encrypt_frame(&keys, kid, 1000, &frame, n);
    assert_eq!(&sealed[..10], &frame[..10], "the prefix is clear");
    assert_ne!(&sealed[13..40], &frame[10..37], "the rest is not");
    let lookup = |k: u64| (k == kid).then_some(&keys);
    assert_eq!(decrypt_frame(lookup, &sealed, n).unwrap().frame, frame);
    // Every byte matters: the clear prefix, the header and the ciphertext.
    for i in [0, 5, 10, 11, 12, 500, sealed.len() - 1] {
        let mut bad = sealed.clone();
        bad[i] ^= 1;
        assert!(decrypt_frame(lookup, &bad, n).is_err(), "byte {i} flipped");
    }
    let other = derive_key_salt(&[8u8; 16], kid);
    assert_eq!(
        decrypt_frame(|_| Some(&other), &sealed, n),
        Err(DecryptError::Auth(kid))
    );
    assert_eq!(
        decrypt_frame(|_| None, &sealed, n),
        Err(DecryptError::UnknownKid(kid))
    );
    assert_eq!(
        decrypt_frame(lookup, &sealed[..n + 2 + 15], n),
        Err(DecryptError::Malformed)
    );
}

proptest! {
    /// Random bytes, as any sender or a broken SFU could send: a result, never a panic.
    #[test]
    fn any_input_gives_a_result_never_a_panic(data in proptest::collection::vec(any::<u8>(), 0..300), prefix in 0usize..400) {
        let keys = derive_key_salt(&[1; 16], 0);
        let r = decrypt_frame(|_| Some(&keys), &data, prefix);
        prop_assert!(r.is_err());
        let _ = parse_header(&data);
        let _ = clear_prefix_len(MediaKind::Video, &data);
    }

    #[test]
    fn round_trip_any_frame_kid_and_ctr(frame in proptest::collection::vec(any::<u8>(), 0..2000), kid: u64, ctr: u64, video: bool) {
        let keys = derive_key_salt(&[3; 16], kid);
        let kind = if video { MediaKind::Video } else { MediaKind::Audio };
        let n = clear_prefix_len(kind, &frame);
        let sealed = encrypt_frame(&keys, kid, ctr, &frame, n);
        prop_assert_eq!(sealed.len(), frame.len() + encode_header(kid, ctr).len() + TAG_LEN);
        // The receiver reads the prefix length from the sealed frame, as the
        // browser does: the same for any frame at least as long as its prefix.
        let m = if frame.len() >= 10 { clear_prefix_len(kind, &sealed) } else { n };
        let back = decrypt_frame(|k| (k == kid).then_some(&keys), &sealed, m).unwrap();
        prop_assert_eq!(back.frame, frame);
        prop_assert_eq!(parse_header(&encode_header(kid, ctr)), Some(Header { kid, ctr, len: encode_header(kid, ctr).len() }));
    }
}

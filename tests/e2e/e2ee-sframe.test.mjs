// web/e2ee/sframe.js in Node: RFC 9605 Appendix C test vectors (header encoding,
// and SFrame encryption for AES_128_GCM_SHA256_128), round trips with the VP8 clear
// prefix, tampering, wrong keys, and the MLS KID layout (§5.2; E = 4, S = 10).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  encodeHeader, parseHeader, mlsKid, kidParts, deriveKeySaltBytes, deriveKeySalt,
  encryptFrame, decryptFrame, clearPrefixLength,
} from '../../web/e2ee/sframe.js';

const hex = (u) => Buffer.from(u).toString('hex');
const unhex = (s) => new Uint8Array(Buffer.from(s, 'hex'));

// RFC 9605 Appendix C.1 (test-vectors.json of sframe-wg/sframe): [kid, ctr, encoded header].
const HEADERS = [
  ['0', '0', '00'],
  ['0', '1', '01'],
  ['0', '255', '08ff'],
  ['0', '65536', '0a010000'],
  ['0', '18446744073709551615', '0fffffffffffffffff'],
  ['1', '0', '10'],
  ['1', '1', '11'],
  ['1', '255', '18ff'],
  ['1', '65536', '1a010000'],
  ['1', '18446744073709551615', '1fffffffffffffffff'],
  ['255', '0', '80ff'],
  ['255', '1', '81ff'],
  ['255', '255', '88ffff'],
  ['255', '65536', '8aff010000'],
  ['255', '18446744073709551615', '8fffffffffffffffffff'],
  ['256', '0', '900100'],
  ['256', '1', '910100'],
  ['256', '255', '980100ff'],
  ['256', '65536', '9a0100010000'],
  ['256', '18446744073709551615', '9f0100ffffffffffffffff'],
  ['65535', '0', '90ffff'],
  ['65535', '1', '91ffff'],
  ['65535', '255', '98ffffff'],
  ['65535', '65536', '9affff010000'],
  ['65535', '18446744073709551615', '9fffffffffffffffffffff'],
  ['65536', '0', 'a0010000'],
  ['65536', '1', 'a1010000'],
  ['65536', '255', 'a8010000ff'],
  ['65536', '65536', 'aa010000010000'],
  ['65536', '18446744073709551615', 'af010000ffffffffffffffff'],
  ['72057594037927936', '0', 'f00100000000000000'],
  ['72057594037927936', '1', 'f10100000000000000'],
  ['72057594037927936', '255', 'f80100000000000000ff'],
  ['72057594037927936', '65536', 'fa0100000000000000010000'],
  ['72057594037927936', '18446744073709551615', 'ff0100000000000000ffffffffffffffff'],
  ['18446744073709551615', '0', 'f0ffffffffffffffff'],
  ['18446744073709551615', '1', 'f1ffffffffffffffff'],
  ['18446744073709551615', '255', 'f8ffffffffffffffffff'],
  ['18446744073709551615', '65536', 'faffffffffffffffff010000'],
  ['18446744073709551615', '18446744073709551615', 'ffffffffffffffffffffffffffffffffff'],
];

// RFC 9605 Appendix C.3, cipher suite 0x0004.
const V = {
  kid: 291n, ctr: 17767n, baseKey: '000102030405060708090a0b0c0d0e0f',
  key: 'd34f547f4ca4f9a7447006fe7fcbf768', salt: '75234edefe07819026751816',
  metadata: '4945544620534672616d65205747', pt: '64726166742d696574662d736672616d652d656e63',
  ct: '9901234567b7412c2513a1b66dbb48841bbaf17f598751176ad847681a69c6d0b091c07018ce4adb34eb',
};

test('header encoding and parsing: RFC 9605 C.1 vectors', () => {
  for (const [kid, ctr, encoded] of HEADERS) {
    assert.equal(hex(encodeHeader(BigInt(kid), BigInt(ctr))), encoded, `kid ${kid} ctr ${ctr}`);
    const h = parseHeader(unhex(encoded + 'abcd'));
    assert.deepEqual(h, { kid: BigInt(kid), ctr: BigInt(ctr), length: encoded.length / 2 });
  }
  assert.equal(parseHeader(unhex('9f0100ffff')), null, 'a truncated header is refused');
  assert.throws(() => encodeHeader(1n << 64n, 0));
});

test('key, salt and encryption: RFC 9605 C.3 vector for AES_128_GCM_SHA256_128', async () => {
  const { key, salt } = await deriveKeySaltBytes(unhex(V.baseKey), V.kid);
  assert.equal(hex(key), V.key);
  assert.equal(hex(salt), V.salt);
  const keys = await deriveKeySalt(unhex(V.baseKey), V.kid);
  const meta = unhex(V.metadata);
  // Our frames carry the metadata (the clear prefix) in front; the RFC's output is what follows it.
  const out = await encryptFrame(keys, V.kid, V.ctr, new Uint8Array([...meta, ...unhex(V.pt)]), meta.length);
  assert.equal(hex(out.subarray(0, meta.length)), V.metadata);
  assert.equal(hex(out.subarray(meta.length)), V.ct);
  const back = await decryptFrame((kid) => (kid === V.kid ? keys : undefined), out, meta.length);
  assert.equal(back.ok, true);
  assert.equal(hex(back.frame.subarray(meta.length)), V.pt);
});

test('MLS KIDs: leaf and epoch bits', () => {
  assert.equal(mlsKid(0, 0), 0n);
  assert.equal(mlsKid(3, 14), 0x3en); // the RFC's figure (E = 4)
  assert.equal(mlsKid(20, 14), 0x14en);
  assert.equal(mlsKid(33, 17), 0x211n);
  assert.equal(mlsKid(2, 16, 2), (2n << 14n) | 0x20n);
  assert.deepEqual(kidParts(mlsKid(1023, 35, 1)), { leaf: 1023, epochBits: 3, context: 1n });
  assert.throws(() => mlsKid(1024, 0));
  assert.equal(hex(encodeHeader(mlsKid(0, 5), 3)), '53', 'small KIDs stay in the config byte');
});

test('VP8 clear prefix: 10 bytes of a keyframe, 3 of a delta frame, none for audio', () => {
  const key = Uint8Array.from([0x50, 0x2a, 0x01, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01, 9, 9, 9]);
  assert.equal(clearPrefixLength('video', key), 10);
  assert.equal(clearPrefixLength('video', Uint8Array.from([0x31, 2, 3, 4, 5])), 3);
  assert.equal(clearPrefixLength('video', Uint8Array.from([0x30, 2])), 2);
  assert.equal(clearPrefixLength('audio', key), 0);
});

test('round trips, tampering, wrong keys and unknown KIDs', async () => {
  const secret = crypto.getRandomValues(new Uint8Array(16));
  const kid = mlsKid(5, 9);
  const keys = await deriveKeySalt(secret, kid);
  const lookup = (k) => (k === kid ? keys : undefined);
  const frame = crypto.getRandomValues(new Uint8Array(1200));
  frame[0] = 0x50; // keyframe
  const n = clearPrefixLength('video', frame);
  const sealed = await encryptFrame(keys, kid, 1000, frame, n);
  assert.deepEqual(sealed.subarray(0, 10), frame.subarray(0, 10), 'the prefix is clear');
  assert.notDeepEqual(sealed.subarray(13, 40), frame.subarray(10, 37), 'the rest is not');
  assert.equal(sealed.length, 1200 + 4 + 16); // header (config, kid 0x59, ctr 1000 in 2 bytes) and tag
  const ok = await decryptFrame(lookup, sealed, clearPrefixLength('video', sealed));
  assert.equal(ok.ok, true);
  assert.deepEqual(ok.frame, frame);
  assert.equal(ok.ctr, 1000n);

  for (const at of [0, 5, 10, 11, 600, sealed.length - 1]) { // prefix, header, ciphertext, tag
    const bad = sealed.slice();
    bad[at] ^= 0x04; // keeps bit 0 of byte 0, so the prefix length stays the same
    const r = await decryptFrame(lookup, bad, 10);
    assert.equal(r.ok, false, `flipped byte ${at}`);
  }
  const other = await deriveKeySalt(crypto.getRandomValues(new Uint8Array(16)), kid);
  assert.deepEqual(await decryptFrame(() => other, sealed, 10), { ok: false, reason: 'auth', kid });
  assert.equal((await decryptFrame(() => undefined, sealed, 10)).reason, 'unknown-kid');
  assert.equal((await decryptFrame(lookup, sealed.subarray(0, 20), 10)).reason, 'malformed');
  // Another sender's KID gives another key: the same secret, leaf 6, does not open leaf 5's frame.
  const kid6 = mlsKid(6, 9);
  const keys6 = await deriveKeySalt(secret, kid6);
  assert.notEqual(hex((await deriveKeySaltBytes(secret, kid6)).key), hex((await deriveKeySaltBytes(secret, kid)).key));
  assert.equal((await decryptFrame(() => keys6, sealed, 10)).ok, false);

  // Audio: no prefix, whole frame sealed.
  const opus = crypto.getRandomValues(new Uint8Array(80));
  const a = await encryptFrame(keys, kid, 1, opus, 0);
  assert.notDeepEqual(a.subarray(a.length - 96, a.length - 16), opus);
  assert.deepEqual((await decryptFrame(lookup, a, 0)).frame, opus);
});

// sframe-worker.js in Node, with fake RTCRtpScriptTransformers: what goes out, what is
// dropped, which epochs a receiver keeps, and when keyframes are asked for.
test('the transform worker: no clear frames, epochs kept 5 s or 2 s after a removal, keyframes', async () => {
  const posted = [];
  globalThis.self = globalThis;
  globalThis.postMessage = (m) => posted.push(m);
  await import('../../web/e2ee/sframe-worker.js');
  assert.deepEqual(posted[0], { type: 'ready' }, 'the worker says when its code has run');
  const worker = { post: (data) => globalThis.onmessage({ data }), transform: globalThis.onrtctransform };
  const fake = (side, kind, mid) => {
    let push;
    const out = [];
    const t = {
      options: { side, kind, mid }, keyFrames: 0, keyFrameRequests: 0, out,
      readable: new ReadableStream({ start: (c) => { push = c; } }),
      writable: new WritableStream({ write: (f) => { out.push(new Uint8Array(f.data)); } }),
      generateKeyFrame: async () => { t.keyFrames++; },
      sendKeyFrameRequest: async () => { t.keyFrameRequests++; },
    };
    worker.transform({ transformer: t });
    /** Sends one frame through and waits until it came out or was dropped. */
    t.put = async (bytes) => {
      const before = out.length;
      push.enqueue({ data: Uint8Array.from(bytes).buffer });
      await new Promise((r) => setTimeout(r, 30));
      return out.length > before ? out.at(-1) : null;
    };
    return t;
  };
  const send = fake('send', 'video');
  const send2 = fake('send', 'audio');
  const recv = fake('recv', 'video');
  const frame = Uint8Array.from({ length: 300 }, (_, i) => (i * 7) & 0xff);
  frame[0] = 0x50; // a keyframe

  assert.equal(await send.put(frame), null, 'no key yet: nothing goes out, in clear or otherwise');
  const s0 = crypto.getRandomValues(new Uint8Array(16));
  worker.post({ type: 'epoch', epoch: 0, secret: s0, ownLeaf: 3, removal: false });
  const sealed0 = await send.put(frame);
  assert.deepEqual(sealed0.subarray(0, 10), frame.subarray(0, 10));
  assert.equal(parseHeader(sealed0, 10).kid, mlsKid(3, 0, 0));
  assert.deepEqual(await recv.put(sealed0), frame);
  const again = await send.put(frame);
  assert.equal(parseHeader(again, 10).ctr, parseHeader(sealed0, 10).ctr + 1n, 'one counter, never repeated');
  const audio = await send2.put(frame.subarray(0, 50));
  assert.equal(kidParts(parseHeader(audio, 0).kid).context, 1n, 'each send transform has its own KID context');

  // Epoch 1: the sender switches at once and makes a keyframe; epoch 0 still opens for 5 s.
  assert.equal(send.keyFrames, 1, 'a keyframe under the first key too');
  worker.post({ type: 'epoch', epoch: 1, secret: crypto.getRandomValues(new Uint8Array(16)), ownLeaf: 3, removal: false });
  assert.equal(send.keyFrames, 2);
  assert.equal(send2.keyFrames, 0, 'audio has no keyframes');
  const sealed1 = await send.put(frame);
  assert.equal(kidParts(parseHeader(sealed1, 10).kid).epochBits, 1);
  assert.deepEqual(await recv.put(sealed1), frame);
  assert.deepEqual(await recv.put(again), frame, 'the previous epoch is still kept');
  assert.equal(await recv.put(again), null, 'a frame opens once: one replayed (by the server, say) is dropped');

  // Epoch 2 removes someone: older keys go after 2 s.
  worker.post({ type: 'epoch', epoch: 2, secret: crypto.getRandomValues(new Uint8Array(16)), ownLeaf: 3, removal: true });
  const sealed2 = await send.put(frame);
  await new Promise((r) => setTimeout(r, 2100));
  assert.equal(await recv.put(sealed1), null, 'epoch 1 forgotten 2 s after a removal');
  assert.deepEqual(await recv.put(sealed2), frame);
  const tampered = sealed2.slice();
  tampered[200] ^= 1;
  assert.equal(await recv.put(tampered), null, 'a frame failing authentication never reaches the decoder');

  // Frames under an epoch the receiver does not have yet are dropped; its key brings a keyframe request.
  const s3 = crypto.getRandomValues(new Uint8Array(16));
  const kid3 = mlsKid(7, 3);
  const early = await encryptFrame(await deriveKeySalt(s3, kid3), kid3, 0, frame, 10);
  assert.equal(await recv.put(early), null);
  assert.equal(recv.keyFrameRequests, 0);
  worker.post({ type: 'epoch', epoch: 3, secret: s3, ownLeaf: 3, removal: false });
  assert.equal(recv.keyFrameRequests, 1);
  assert.deepEqual(await recv.put(early), frame);

  assert.deepEqual(await recv.put([]), new Uint8Array(0), 'an empty frame (Chromium sends some) passes: nothing in it');

  // The replay window, per KID: out of order is fine, twice is not, and a frame
  // over 1024 behind the newest is refused as a possible replay.
  const seal3 = async (ctr) => encryptFrame(await deriveKeySalt(s3, kid3), kid3, ctr, frame, 10);
  const window = [[5000, true], [4990, true], [4990, false], [5000, false], [3976, false], [3977, true], [5001, true]];
  for (const [ctr, opens] of window) {
    assert.equal((await recv.put(await seal3(ctr))) !== null, opens, `CTR ${ctr} ${opens ? 'opens' : 'is refused'}`);
  }

  worker.post({ type: 'get-stats' });
  const stats = posted.filter((m) => m.type === 'stats').at(-1);
  assert.deepEqual([stats.encrypted, stats.decrypted, stats.dropped], [5, 9, 8]);
  assert.equal(stats.byTransform.find((x) => x.side === 'recv').why.replay, 4);

  // Another group (started afresh by the server): its epochs count from 0 again
  // and this member has another leaf in it. After the reset the old group's
  // keys are gone, and frames go out under the new group's epoch 0 and leaf.
  worker.post({ type: 'reset' });
  assert.equal(await send.put(frame), null, 'between groups: nothing goes out');
  assert.equal(await recv.put(sealed2), null, 'the old group\'s keys are gone');
  const g0 = crypto.getRandomValues(new Uint8Array(16));
  worker.post({ type: 'epoch', epoch: 0, secret: g0, ownLeaf: 1, removal: false });
  const fresh = await send.put(frame);
  assert.equal(parseHeader(fresh, 10).kid, mlsKid(1, 0, 0), 'the new leaf, the new epoch');
  const opened = await decryptFrame((kid) => deriveKeySalt(g0, kid), fresh, 10);
  assert.ok(opened.ok, 'sealed under the new group\'s key');

  // A video receiver bound to the member the offer says it carries opens only
  // frames sealed under that member's leaf: the server cannot show Ana's video
  // in Bo's tile. Rebound (a new offer), it asks for a keyframe of its new sender.
  const tile = fake('recv', 'video', 'v1');
  const g1 = crypto.getRandomValues(new Uint8Array(16));
  worker.post({ type: 'epoch', epoch: 1, secret: g1, ownLeaf: 1, removal: false, members: [[1, 'me'], [3, 'ana'], [7, 'bo']] });
  const sealedBy = async (leaf, ctr) => { const kid = mlsKid(leaf, 1, 0); return encryptFrame(await deriveKeySalt(g1, kid), kid, ctr, frame, 10); };
  worker.post({ type: 'senders', byMid: { v1: 'bo' } });
  assert.equal(tile.keyFrameRequests, 1, 'bound to Bo: a keyframe asked for');
  assert.equal(await tile.put(await sealedBy(3, 0)), null, 'Ana\'s frame in Bo\'s tile is dropped');
  assert.deepEqual(await tile.put(await sealedBy(7, 0)), frame, 'Bo\'s opens');
  assert.deepEqual(await recv.put(await sealedBy(3, 1)), frame, 'a receiver bound to nobody opens any member\'s');
  worker.post({ type: 'senders', byMid: { v1: 'ana' } });
  assert.deepEqual(await tile.put(await sealedBy(3, 2)), frame, 'rebound to Ana: hers open');
  assert.equal(await tile.put(await sealedBy(7, 1)), null, 'and Bo\'s no longer');
  worker.post({ type: 'senders', byMid: { v1: 'cy' } });
  assert.equal(await tile.put(await sealedBy(3, 3)), null, 'bound to someone not in the group: nothing opens');
  worker.post({ type: 'get-stats' });
  const why = posted.filter((m) => m.type === 'stats').at(-1).byTransform.find((x) => x.mid === 'v1').why;
  assert.deepEqual(why, { 'wrong-sender': 3 });
});

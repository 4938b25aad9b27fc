// SFrame (RFC 9605) for cipher suite AES_128_GCM_SHA256_128 (0x0004), with the
// MLS key profile of §5.2: pure functions over WebCrypto, used by the encoded
// transform worker (sframe-worker.js) and by Node tests.
//
// Frame layout on the wire: clear prefix | SFrame header | AES-GCM ciphertext+tag,
// with AAD = header | prefix (RFC 9605 §4.4.3 "header + metadata", the metadata
// being the clear prefix). The prefix is what the browsers' VP8 depacketiser and
// the SFU's vp8.rs read (docs/e2ee-design.md §1, §2): without it no browser
// decodes a frame, even with the right key.
//
// Keys (RFC 9605 §5.2 as published): base_key = MLS-Exporter("SFrame 1.0 Base Key",
// "", 16) per epoch, and each KID gets its own key and salt from base_key through
// derive_key_salt (§4.4.2), whose labels contain the KID. The KID carries the
// sender's leaf, so every sender has its own key. (Drafts before 2023-09 had an
// extra step, sender_base_key = HKDF-Expand(base_key, leaf, Nk); RFC 9605 has not.)

export const CIPHER_SUITE = 0x0004;
const NK = 16; // AES-128 key
const NN = 12; // GCM nonce
export const EPOCH_BITS = 4;  // E: 16 epochs in flight
export const INDEX_BITS = 10; // S: 1024 leaves

const subtle = globalThis.crypto.subtle;
const utf8 = new TextEncoder();

/** big-endian bytes of a non-negative integer (number or bigint), minimal length ≥ 1. */
function minimalBytes(v) {
  let x = BigInt(v);
  const out = [];
  do { out.unshift(Number(x & 0xffn)); x >>= 8n; } while (x > 0n);
  return out;
}
function beBytes(v, n) {
  let x = BigInt(v);
  const out = new Uint8Array(n);
  for (let i = n - 1; i >= 0; i--) { out[i] = Number(x & 0xffn); x >>= 8n; }
  return out;
}

/** The SFrame header (§4.3) for a KID and CTR (numbers or bigints below 2^64). */
export function encodeHeader(kid, ctr) {
  const k = BigInt(kid), c = BigInt(ctr);
  if (k < 0n || c < 0n || k >= 1n << 64n || c >= 1n << 64n) throw new RangeError('KID and CTR must fit in 64 bits');
  const kb = k < 8n ? [] : minimalBytes(k);
  const cb = c < 8n ? [] : minimalBytes(c);
  const config = (kb.length ? 0x80 | ((kb.length - 1) << 4) : Number(k) << 4)
    | (cb.length ? 0x08 | (cb.length - 1) : Number(c));
  return Uint8Array.from([config, ...kb, ...cb]);
}

/** Parses the header at buf[offset]: {kid, ctr (bigints), length} or null if too short. */
export function parseHeader(buf, offset = 0) {
  if (buf.length <= offset) return null;
  const config = buf[offset];
  let p = offset + 1;
  const field = (extended, bits) => {
    if (!extended) return bits;
    const len = bits + 1;
    if (p + len > buf.length) return null;
    let v = 0n;
    for (let i = 0; i < len; i++) v = (v << 8n) | BigInt(buf[p + i]);
    p += len;
    return v;
  };
  const kid = field(config & 0x80, (config >> 4) & 7);
  if (kid === null) return null;
  const ctr = field(config & 0x08, config & 7);
  if (ctr === null) return null;
  return { kid: BigInt(kid), ctr: BigInt(ctr), length: p - offset };
}

/** The KID of an MLS sender (§5.2): context << (S+E) | leaf << E | epoch mod 2^E. */
export function mlsKid(leaf, epoch, context = 0) {
  if (leaf < 0 || leaf >= 1 << INDEX_BITS) throw new RangeError('leaf index out of range');
  return (BigInt(context) << BigInt(INDEX_BITS + EPOCH_BITS)) | (BigInt(leaf) << BigInt(EPOCH_BITS)) | BigInt(epoch % (1 << EPOCH_BITS));
}
export function kidParts(kid) {
  const k = BigInt(kid);
  return { epochBits: Number(k & ((1n << BigInt(EPOCH_BITS)) - 1n)), leaf: Number((k >> BigInt(EPOCH_BITS)) & ((1n << BigInt(INDEX_BITS)) - 1n)), context: k >> BigInt(INDEX_BITS + EPOCH_BITS) };
}

/** derive_key_salt (§4.4.2) as bytes: {key: 16 bytes, salt: 12 bytes}. */
export async function deriveKeySaltBytes(baseKey, kid) {
  const ikm = await subtle.importKey('raw', baseKey, 'HKDF', false, ['deriveBits']);
  const label = (what) => new Uint8Array([...utf8.encode(`SFrame 1.0 Secret ${what} `), ...beBytes(kid, 8), ...beBytes(CIPHER_SUITE, 2)]);
  // WebCrypto HKDF with an empty salt is HKDF-Expand(HKDF-Extract("", base_key), info, L).
  const bits = async (info, n) => new Uint8Array(await subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info }, ikm, n * 8));
  return { key: await bits(label('key'), NK), salt: await bits(label('salt'), NN) };
}

/** The key and salt for a KID, the key as a non-extractable AES-GCM CryptoKey. */
export async function deriveKeySalt(baseKey, kid) {
  const { key, salt } = await deriveKeySaltBytes(baseKey, kid);
  return { key: await subtle.importKey('raw', key, 'AES-GCM', false, ['encrypt', 'decrypt']), salt };
}

function nonceFor(salt, ctr) {
  const n = beBytes(ctr, NN);
  for (let i = 0; i < NN; i++) n[i] ^= salt[i];
  return n;
}

/**
 * How many leading bytes of a frame stay clear: VP8 keyframe 10 (frame tag, start
 * code, size), delta frame 3 (frame tag); audio none. Keyframe: bit 0 of byte 0 is 0.
 */
export function clearPrefixLength(kind, frame) {
  if (kind !== 'video' || frame.length === 0) return 0;
  return Math.min(frame.length, (frame[0] & 1) === 0 ? 10 : 3);
}

/** Encrypts one frame: prefix | header | ciphertext. `keys` from deriveKeySalt. */
export async function encryptFrame(keys, kid, ctr, frame, prefixLength = 0) {
  const prefix = frame.subarray(0, prefixLength);
  const header = encodeHeader(kid, ctr);
  const aad = new Uint8Array(header.length + prefix.length);
  aad.set(header);
  aad.set(prefix, header.length);
  const ct = new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv: nonceFor(keys.salt, ctr), additionalData: aad, tagLength: 128 }, keys.key, frame.subarray(prefixLength)));
  const out = new Uint8Array(prefixLength + header.length + ct.length);
  out.set(prefix);
  out.set(header, prefixLength);
  out.set(ct, prefixLength + header.length);
  return out;
}

/**
 * Decrypts one frame. keysFor(kid: bigint) returns keys (or a promise of them) or
 * undefined for an unknown KID. Result: {ok: true, kid, ctr, frame} or {ok: false, reason}.
 */
export async function decryptFrame(keysFor, data, prefixLength = 0) {
  const h = parseHeader(data, prefixLength);
  if (!h || data.length < prefixLength + h.length + 16) return { ok: false, reason: 'malformed' };
  const keys = await keysFor(h.kid);
  if (!keys) return { ok: false, reason: 'unknown-kid', kid: h.kid };
  const aad = new Uint8Array(h.length + prefixLength);
  aad.set(data.subarray(prefixLength, prefixLength + h.length));
  aad.set(data.subarray(0, prefixLength), h.length);
  let pt;
  try {
    pt = new Uint8Array(await subtle.decrypt({ name: 'AES-GCM', iv: nonceFor(keys.salt, h.ctr), additionalData: aad, tagLength: 128 }, keys.key, data.subarray(prefixLength + h.length)));
  } catch {
    return { ok: false, reason: 'auth', kid: h.kid };
  }
  const frame = new Uint8Array(prefixLength + pt.length);
  frame.set(data.subarray(0, prefixLength));
  frame.set(pt, prefixLength);
  return { ok: true, kid: h.kid, ctr: h.ctr, frame };
}

// The MLS cipher suite's implementation (suite 1: X25519, AES-128-GCM,
// SHA-256, Ed25519), with one exception to ts-mls's default: where the
// browser's WebCrypto X25519 cannot export an imported private key, HPKE's KEM
// is @hpke/dhkem-x25519 (X25519 in JavaScript, from noble-curves) instead.
//
// Why: Firefox ESR 140 (Debian's firefox-esr 140.10.2 here) fails `exportKey('jwk')` (OperationError) for some
// X25519 private keys imported from raw bytes, and @hpke/core exports each key
// an update path derives. A Firefox member then cannot apply a commit with an
// update path, such as the one removing someone. Both KEMs compute the same
// X25519 (RFC 7748), so members on either interoperate.

const VENDOR = '../vendor/';

/** Keys derived from this many seeds must all export for WebCrypto to be used. */
const PROBES = 8;

/**
 * @param {any} mls the ts-mls module
 * @param {string} name the suite's name
 * @param {{native?: boolean}} [choice] WebCrypto's X25519 or not (tests); by default, as the probe finds
 * @returns {Promise<any>} what ts-mls's functions take as `cipherSuite`
 */
export async function suiteImpl(mls, name, choice = {}) {
  const cs = mls.getCiphersuiteFromName(name);
  const impl = await mls.getCiphersuiteImpl(cs);
  if (choice.native ?? (await nativeX25519Works())) return impl;
  const [{ CipherSuite }, { DhkemX25519HkdfSha256 }, { makeGenericHpke }, { makeAead }, { makeKdf }] = await Promise.all([
    import(`${VENDOR}@hpke/core/esm/mod.js`),
    import(`${VENDOR}@hpke/dhkem-x25519/esm/mod.js`),
    import(`${VENDOR}ts-mls/dist/src/crypto/implementation/hpke.js`),
    import(`${VENDOR}ts-mls/dist/src/crypto/implementation/default/makeAead.js`),
    import(`${VENDOR}ts-mls/dist/src/crypto/implementation/default/makeKdfImpl.js`),
  ]);
  const [aead, aeadInterface] = await makeAead(cs.hpke.aead);
  const hpkeSuite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: makeKdf(cs.hpke.kdf), aead: aeadInterface });
  return { ...impl, hpke: await makeGenericHpke(cs.hpke, aead, hpkeSuite) };
}

/** Whether WebCrypto X25519 derives and exports private keys as @hpke/core needs. */
export async function nativeX25519Works() {
  try {
    const { DhkemX25519HkdfSha256 } = await import(`${VENDOR}@hpke/core/esm/mod.js`);
    const kem = new DhkemX25519HkdfSha256();
    for (let i = 0; i < PROBES; i++) {
      const pair = await kem.deriveKeyPair(crypto.getRandomValues(new Uint8Array(32)).buffer);
      await kem.serializePrivateKey(pair.privateKey);
    }
    return true;
  } catch {
    return false;
  }
}

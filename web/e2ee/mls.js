// The client's MLS state machine (RFC 9420) for an end-to-end encrypted meeting
// (docs/e2ee-design.md §4–§8). It speaks the mls-* signalling messages, keeps
// one group state, and reports each new epoch (verification code, SFrame base
// secret, members). The server is only the Delivery Service: it orders commits
// and relays; every secret stays here.
//
// The page imports this module dynamically, only in E2EE meetings; ts-mls (and
// its ~150 modules) is loaded by startE2ee, not when this file is parsed.

import { suiteImpl } from './suite.js';

const TS_MLS = '../vendor/ts-mls/dist/src/index.js';
// Internal ts-mls module: the public processMessage does not say who sent an
// application message, and chat must name its sender from the MLS leaf.
const TS_MLS_PROTECTION = '../vendor/ts-mls/dist/src/messageProtection.js';
// GroupInfo with the ratchet tree and no external_pub: ts-mls 1.6.4 writes that
// extension's key without its length (RFC 9420 §12.4.3.2), so openmls (the
// server's check, design §5 step 6) cannot read it; nothing here joins by
// external commit, so nothing needs it.
const TS_MLS_COMMIT = '../vendor/ts-mls/dist/src/createCommit.js';
const SUITE = 'MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519'; // 0x0001, the only one we offer
const SFRAME_LABEL = 'SFrame 1.0 Base Key'; // RFC 9605 §5.2
// Key packages kept for a Welcome: a re-sent one must not make a Welcome for an
// earlier one (already on its way) unusable.
const KEEP_KEY_PACKAGES = 3;

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: true });
export const b64 = (bytes) => {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
};
export const unb64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

/** A credential's identity as {p, n, l?, o?}, or null unless it is ours (§6). */
export function parseCredential(credential) {
  if (credential?.credentialType !== 'basic') return null;
  try {
    const id = JSON.parse(fromUtf8.decode(credential.identity));
    return typeof id?.p === 'string' && id.p !== '' ? id : null;
  } catch { return null; }
}

/** The verification code of §7 from an epoch authenticator: 48 bits as 8 emoji indexes and 15 digits. */
export function verificationCode(authenticator) {
  let n = 0n;
  for (const byte of authenticator.subarray(0, 6)) n = (n << 8n) | BigInt(byte);
  const emoji = [];
  for (let i = 7; i >= 0; i--) emoji.push(Number((n >> BigInt(6 * i)) & 63n));
  const d = n.toString().padStart(15, '0');
  return { emoji, digits: `${d.slice(0, 5)} ${d.slice(5, 10)} ${d.slice(10)}` };
}

/** The members of a ratchet tree: one entry per non-blank leaf (leaf = node index / 2). */
function membersOf(tree) {
  const out = [];
  for (let i = 0; i < tree.length; i += 2) {
    const node = tree[i];
    if (node?.nodeType !== 'leaf') continue;
    const id = parseCredential(node.leaf.credential);
    out.push({ leaf: i / 2, participantId: id?.p ?? '', name: id?.n ?? '', level: id?.l ?? 'guest', organisation: id?.o ?? null });
  }
  return out;
}

/**
 * Starts the MLS side of an E2EE meeting and sends this participant's key package.
 * `identity`: how the server verified this participant (the roster's `identity`), put into the
 * credential for the others to check (design §6). `rosterHas(pid, credential)`: whether the meeting's
 * roster has that participant, verified as the credential ({p, n, l?, o?}) says.
 * @param {{groupId: string, participantId: string, name: string, identity: {level: string, organisation?: string} | null,
 *   send: (msg: object) => void, rosterHas: (pid: string, credential: any) => boolean, onEpoch?: (e: object) => void,
 *   onChat?: (c: {from: string, text: string}) => void, onWarning?: (w: {code: string, [detail: string]: any}) => void,
 *   welcomeTimeoutMs?: number, keyPackageRetryMs?: number, nativeX25519?: boolean}} opts `nativeX25519`: WebCrypto's X25519 or
 *   not (tests); by default as suite.js finds the browser
 */
export async function startE2ee(opts) {
  const { participantId, send, rosterHas } = opts;
  const onEpoch = opts.onEpoch ?? (() => {});
  const onChat = opts.onChat ?? (() => {});
  const onWarning = opts.onWarning ?? (() => {});
  const mls = await import(TS_MLS);
  const { unprotectPrivateMessage } = await import(TS_MLS_PROTECTION);
  const { createGroupInfoWithRatchetTree } = await import(TS_MLS_COMMIT);
  const impl = await suiteImpl(mls, SUITE, { native: opts.nativeX25519 });
  // The AuthenticationService of §6: a credential counts only if it is ours and names a participant.
  const clientConfig = {
    keyRetentionConfig: mls.defaultKeyRetentionConfig, lifetimeConfig: mls.defaultLifetimeConfig,
    keyPackageEqualityConfig: mls.defaultKeyPackageEqualityConfig, paddingConfig: mls.defaultPaddingConfig,
    authService: { validateCredential: async (c) => parseCredential(c) !== null },
  };
  const verified = opts.identity && opts.identity.level !== 'guest';
  const identity = { p: participantId, n: opts.name, ...(verified ? { l: opts.identity.level, o: opts.identity.organisation } : {}) };
  const credential = { credentialType: 'basic', identity: utf8.encode(JSON.stringify(identity)) };

  let group = null;     // ClientState, or null before a create/Welcome and after removal
  // Our commits at one epoch, not merged until the server fans one back: {epoch,
  // states: Map<commit b64, ClientState>} (a takeover may ask us twice at one epoch).
  let pending = null;
  let keyPackages = []; // newest last
  let welcomeTimer = null;
  let queue = Promise.resolve(); // every state change runs in order, one at a time

  const encodeMsg = (m) => b64(mls.encodeMlsMessage(m));
  const decodeMsg = (s) => {
    const m = mls.decodeMlsMessage(unb64(s), 0)?.[0];
    if (!m) throw new Error('undecodable MLS message');
    return m;
  };
  // Secrets ts-mls says were used up (old epoch and message keys): zeroed once the
  // state that replaces them is ours, for forward secrecy in memory too.
  const wipe = (consumed) => { for (const u of consumed ?? []) mls.zeroOutUint8Array(u); };
  const epochOf = (state) => Number(state.groupContext.epoch);
  const groupInfoOf = async (state) => encodeMsg({ version: 'mls10', wireformat: 'mls_group_info',
    groupInfo: await createGroupInfoWithRatchetTree(state.groupContext, state.confirmationTag, state, state.ratchetTree, [], impl) });

  async function sendKeyPackage() {
    const kp = await mls.generateKeyPackage(credential, mls.defaultCapabilities(), mls.defaultLifetime, [], impl);
    keyPackages = [...keyPackages, kp].slice(-KEEP_KEY_PACKAGES);
    send({ type: 'mls-key-package', keyPackage: encodeMsg({ version: 'mls10', wireformat: 'mls_key_package', keyPackage: kp.publicPackage }) });
    // No create request and no Welcome in time: the request may have been lost, so offer a fresh one.
    clearTimeout(welcomeTimer);
    welcomeTimer = setTimeout(() => run(async () => { if (!group) await sendKeyPackage(); }), opts.welcomeTimeoutMs ?? 10000);
    /** @type {any} */ (welcomeTimer).unref?.(); // Node: a test's process need not wait for it
  }

  // The group is gone (removed, or behind the server): forget it and ask to be added again.
  async function lostGroup(code) {
    group = null;
    pending = null;
    onWarning({ code });
    if (code !== 'removed') await sendKeyPackage();
  }

  // before: the members of the previous epoch, or null after a create or a Welcome
  // (then added is just this participant: it cannot tell who else came in that commit).
  async function newEpoch(state, before) {
    const members = membersOf(state.ratchetTree);
    const prev = new Set(before ? before.map((m) => m.participantId) : members.map((m) => m.participantId).filter((p) => p !== participantId));
    const now = new Set(members.map((m) => m.participantId));
    group = state;
    keyPackages = [];
    clearTimeout(welcomeTimer);
    onEpoch({
      groupId: b64(state.groupContext.groupId),
      epoch: epochOf(state),
      code: verificationCode(state.keySchedule.epochAuthenticator),
      members,
      sframeSecret: await mls.mlsExporter(state.keySchedule.exporterSecret, SFRAME_LABEL, new Uint8Array(0), 16, impl),
      ownLeaf: state.privatePath.leafIndex,
      added: [...now].filter((p) => !prev.has(p)),
      removed: [...prev].filter((p) => !now.has(p)),
    });
  }

  // The server asks for a group when it has none (the first one, or a new id after
  // everyone left): it is the Delivery Service, so a group of ours it no longer has is gone.
  async function create(msg) {
    if (group) onWarning({ code: 'group-replaced', epoch: epochOf(group) });
    group = null;
    pending = null;
    const kp = keyPackages.at(-1) ?? (await sendKeyPackage(), keyPackages.at(-1));
    const state = await mls.createGroup(unb64(msg.groupId), kp.publicPackage, kp.privatePackage, [], impl, clientConfig);
    send({ type: 'mls-group-created', groupInfo: await groupInfoOf(state) });
    await newEpoch(state, null);
  }

  async function commitRequest(msg) {
    if (!group || epochOf(group) !== msg.epoch) return onWarning({ code: 'commit-request-epoch', epoch: msg.epoch });
    const proposals = [];
    for (const { participantId: pid, keyPackage } of msg.add ?? []) {
      const m = decodeMsg(keyPackage);
      // The committer checks too: a server must not slip in a ghost through it (§3).
      const claims = m.wireformat === 'mls_key_package' ? parseCredential(m.keyPackage.leafNode.credential) : null;
      if (claims?.p !== pid || !rosterHas(pid, claims)) {
        onWarning({ code: 'bad-key-package', participantId: pid });
        continue;
      }
      proposals.push({ proposalType: 'add', add: { keyPackage: m.keyPackage } });
    }
    const tree = membersOf(group.ratchetTree);
    for (const pid of msg.remove ?? []) {
      for (const m of tree) if (m.participantId === pid) proposals.push({ proposalType: 'remove', remove: { removed: m.leaf } });
    }
    // PublicMessage, so that the server can check commits (design §5, step 6); it learns nothing new.
    const r = await mls.createCommit({ state: group, cipherSuite: impl },
      { extraProposals: proposals, ratchetTreeExtension: true, wireAsPublicMessage: true });
    const commit = encodeMsg(r.commit);
    if (pending?.epoch !== msg.epoch) pending = { epoch: msg.epoch, states: new Map() };
    pending.states.set(commit, { state: r.newState, consumed: r.consumed });
    send({ type: 'mls-commit', epoch: msg.epoch, commit,
      welcome: r.welcome ? encodeMsg({ version: 'mls10', wireformat: 'mls_welcome', welcome: r.welcome }) : null,
      groupInfo: await groupInfoOf(r.newState) });
  }

  // §6: a commit may not change who a leaf is. ts-mls lets a committer's update
  // path (or an Update proposal) carry a new credential, so a committer could
  // take another participant's name in its own leaf. Every leaf that stays must
  // keep its credential; a leaf the commit removed may be filled by an add
  // (checkCommit holds those to the roster). Returns the reason, or ''.
  const credentialChange = (before, after, gone) => {
    const same = (x, y) => x.length === y.length && x.every((b, i) => b === y[i]);
    for (let i = 0; i < Math.min(before.length, after.length); i += 2) {
      const [o, n] = [before[i], after[i]];
      if (o?.nodeType !== 'leaf' || n?.nodeType !== 'leaf' || gone.has(i / 2)) continue;
      const [oc, nc] = [o.leaf.credential, n.leaf.credential];
      if (oc.credentialType !== nc.credentialType || !same(oc.identity, nc.identity)) return `credential-changed leaf ${i / 2}`;
    }
    return '';
  };

  // §3: the server says whom it asked the committer to add, by the SHA-256 of the
  // KeyPackage each sent. A commit adding anyone else (a committer's own key
  // package under a roster name), or someone by another KeyPackage, is refused.
  // (A server that lies here can add a ghost anyway: the ghost warning is for that.)
  async function unexpectedAdds(adds, expected) {
    const want = expected.map((a) => `${a.participantId} ${a.keyPackageSha256}`).sort();
    const got = [];
    for (const kp of adds) {
      const bytes = mls.encodeMlsMessage({ version: 'mls10', wireformat: 'mls_key_package', keyPackage: kp });
      got.push(`${parseCredential(kp.leafNode.credential)?.p} ${b64(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)))}`);
    }
    got.sort();
    return got.join() === want.join() ? '' : `unexpected-add ${got.filter((g) => !want.includes(g)).map((g) => g.split(' ')[0]).join(',') || '(missing)'}`;
  }

  // §6 and §3: a commit may add only people the roster shows, and nobody twice.
  const checkCommit = (tree, why) => (incoming) => {
    if (incoming.kind !== 'commit') return 'accept';
    const gone = new Set(incoming.proposals.filter((p) => p.proposal.proposalType === 'remove').map((p) => p.proposal.remove.removed));
    why.gone = gone;
    why.adds = incoming.proposals.filter((p) => p.proposal.proposalType === 'add').map((p) => p.proposal.add.keyPackage);
    const present = new Set(membersOf(tree).filter((m) => !gone.has(m.leaf)).map((m) => m.participantId));
    for (const { proposal } of incoming.proposals) {
      if (proposal.proposalType !== 'add') continue;
      const claims = parseCredential(proposal.add.keyPackage.leafNode.credential);
      const pid = claims?.p;
      if (!pid) { why.reason = 'bad-credential'; return 'reject'; }
      if (!rosterHas(pid, claims)) { why.reason = `unknown-participant ${pid}`; return 'reject'; }
      if (present.has(pid)) { why.reason = `already-member ${pid}`; return 'reject'; }
      present.add(pid);
    }
    return 'accept';
  };

  async function commit(msg) {
    if (!group) return; // not a member yet: our Welcome comes separately
    const before = membersOf(group.ratchetTree);
    const ours = pending?.epoch === msg.epoch && msg.from === participantId ? pending.states.get(msg.commit) : undefined;
    if (ours) {
      pending = null;
      wipe(ours.consumed);
      return newEpoch(ours.state, before);
    }
    if (msg.epoch < epochOf(group)) return onWarning({ code: 'old-commit', epoch: msg.epoch });
    if (msg.epoch > epochOf(group)) return lostGroup('behind');
    if (pending?.epoch === msg.epoch) pending = null; // another commit won this epoch
    const why = { reason: '' };
    let result;
    try {
      const m = decodeMsg(msg.commit);
      if (m.wireformat !== 'mls_public_message' && m.wireformat !== 'mls_private_message') throw new Error('not a handshake message');
      result = await mls.processMessage(m, group, mls.emptyPskIndex, checkCommit(group.ratchetTree, why), impl);
      const moved = result.kind === 'newState' && (Number(result.newState.groupContext.epoch) === msg.epoch + 1
        || result.newState.groupActiveState.kind === 'removedFromGroup');
      if (!moved && !why.reason) throw new Error('not a commit');
      if (!why.reason) why.reason = credentialChange(group.ratchetTree, result.newState.ratchetTree, why.gone ?? new Set());
      if (!why.reason && msg.adds) why.reason = await unexpectedAdds(why.adds ?? [], msg.adds);
    } catch (e) {
      why.reason = `invalid: ${e?.message ?? e}`;
    }
    if (why.reason) {
      onWarning({ code: 'commit-refused', epoch: msg.epoch, reason: why.reason });
      return send({ type: 'mls-commit-failed', epoch: msg.epoch, reason: why.reason });
    }
    wipe(result.consumed);
    if (result.newState.groupActiveState.kind === 'removedFromGroup') return lostGroup('removed');
    return newEpoch(result.newState, before);
  }

  async function welcome(msg) {
    const m = decodeMsg(msg.welcome);
    if (m.wireformat !== 'mls_welcome') throw new Error('not a Welcome');
    for (const kp of [...keyPackages].reverse()) {
      let state;
      try {
        state = await mls.joinGroup(m.welcome, kp.publicPackage, kp.privatePackage, mls.emptyPskIndex, impl, undefined, undefined, clientConfig);
      } catch { continue; } // made for another of our key packages, or not for us
      pending = null;
      return newEpoch(state, null);
    }
    onWarning({ code: 'welcome-unusable' });
  }

  async function app(msg) {
    if (!group) return;
    const m = decodeMsg(msg.message);
    if (m.wireformat !== 'mls_private_message') throw new Error('not a PrivateMessage');
    const pm = m.privateMessage;
    // As ts-mls's processPrivateMessage, but keeping the sender's leaf.
    const old = pm.epoch < group.groupContext.epoch ? group.historicalReceiverData.get(pm.epoch) : null;
    if (pm.epoch > group.groupContext.epoch || (pm.epoch < group.groupContext.epoch && !old)) return onWarning({ code: 'undecryptable', from: msg.from });
    const src = old ?? { senderDataSecret: group.keySchedule.senderDataSecret, secretTree: group.secretTree, ratchetTree: group.ratchetTree, groupContext: group.groupContext };
    let r;
    try {
      r = await unprotectPrivateMessage(src.senderDataSecret, pm, src.secretTree, src.ratchetTree, src.groupContext, group.clientConfig.keyRetentionConfig, impl);
    } catch { return onWarning({ code: 'undecryptable', from: msg.from }); }
    group = old
      ? { ...group, historicalReceiverData: new Map(group.historicalReceiverData).set(pm.epoch, { ...old, secretTree: r.tree }) }
      : { ...group, secretTree: r.tree };
    wipe(r.consumed);
    if (r.content.content.contentType !== 'application') return;
    const senderLeaf = r.content.content.sender.leafIndex;
    const from = parseCredential(src.ratchetTree[senderLeaf * 2]?.leaf?.credential)?.p;
    if (!from) return;
    if (msg.from && msg.from !== from) onWarning({ code: 'sender-mismatch', from, claimed: msg.from });
    let body;
    try { body = JSON.parse(fromUtf8.decode(r.content.content.applicationData)); } catch { return; }
    if (body?.t === 'chat' && typeof body.text === 'string') onChat({ from, text: body.text });
  }

  async function sendChat(text) {
    if (!group) throw new Error('not in the encrypted group yet');
    const r = await mls.createApplicationMessage(group, utf8.encode(JSON.stringify({ t: 'chat', text })), impl);
    group = r.newState;
    wipe(r.consumed);
    send({ type: 'mls-app', message: encodeMsg({ version: 'mls10', wireformat: 'mls_private_message', privateMessage: r.privateMessage }) });
  }

  function run(fn) {
    const p = queue.then(fn);
    queue = p.catch(() => {});
    return p;
  }

  async function dispatch(msg) {
    switch (msg.type) {
      case 'mls-create-request': return create(msg);
      case 'mls-commit-request': return commitRequest(msg);
      case 'mls-commit': return commit(msg);
      case 'mls-welcome': return welcome(msg);
      case 'mls-app': return app(msg);
      // Another commit won (or a chat was late: the error does not say which). The
      // winner comes as mls-commit and replaces our pending commit there; ours is
      // merged only if the server fans back exactly it.
      // A key package refused as rate-limited (the server takes one every 5 s;
      // nothing else is sent before the group exists): a fresh one just after.
      case 'error':
        if (msg.code === 'rate-limited' && !group) {
          clearTimeout(welcomeTimer);
          welcomeTimer = setTimeout(() => run(async () => { if (!group) await sendKeyPackage(); }), opts.keyPackageRetryMs ?? 5100);
          /** @type {any} */ (welcomeTimer).unref?.();
        }
        return;
      default: return;
    }
  }

  await run(sendKeyPackage);
  return {
    /** Any server message whose type starts with "mls-", and the errors mls-stale-epoch and rate-limited. */
    handle: (msg) => run(() => dispatch(msg)).catch((e) => onWarning({ code: 'bad-message', type: msg?.type, reason: String(e?.message ?? e) })),
    sendChat: (text) => run(() => sendChat(text)),
    members: () => (group ? membersOf(group.ratchetTree) : []),
    /** The page resumed and may have missed messages: ask to be added again. */
    rejoin: () => run(() => lostGroup('rejoin')),
    epoch: () => (group ? epochOf(group) : null),
    stop: () => { clearTimeout(welcomeTimer); group = null; pending = null; },
  };
}

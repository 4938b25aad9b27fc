// web/e2ee/mls.js, three (and a ghost) participants in Node, with a small relay
// (mls-relay.mjs) playing the Delivery Service of docs/e2ee-design.md §5 (the real
// one lives in convene-meeting). Checks: create, two adds, equal verification
// codes and SFrame secrets that change each epoch, chat, a refused stale commit,
// a refused ghost add, and a removal after which the removed one reads nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { verificationCode } from '../../web/e2ee/mls.js';
import { relay, GROUP_ID } from './mls-relay.mjs';

const last = (p) => p.epochs.at(-1);
const codeOf = (p) => JSON.stringify(last(p).code);
const hex = (u) => Buffer.from(u).toString('hex');

test('verification code: 48 bits as 8 six-bit emoji and 15 digits', () => {
  const c = verificationCode(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 9, 9]));
  assert.deepEqual(c.emoji, [63, 63, 63, 63, 63, 63, 63, 62]);
  assert.equal(c.digits, '28147 49767 10654'); // 2^48 - 2
  assert.equal(verificationCode(new Uint8Array(32)).digits, '00000 00000 00000');
  assert.deepEqual(verificationCode(Uint8Array.from([4, 16, 0x41, 0, 0, 0])).emoji, [1, 1, 1, 1, 0, 0, 0, 0]);
});

test('three participants: create, adds, codes, chat, stale commit, ghost, removal', async () => {
  const r = relay();
  const rosterA = new Set(['a', 'b', 'c']); // each participant's view of the meeting's roster
  const roster = new Set(['a', 'b', 'c']);
  const a = await r.join('a', rosterA);
  await r.settle();
  assert.equal(last(a).epoch, 0);
  assert.deepEqual(last(a).added, ['a']);
  assert.equal(r.epoch, 0);

  const b = await r.join('b', roster);
  r.request('a', r.waitingKps.splice(0));
  await r.settle();
  const c = await r.join('c', roster);
  r.request('a', r.waitingKps.splice(0));
  await r.settle();
  assert.equal(r.epoch, 2);
  for (const p of [a, b, c]) assert.equal(last(p).epoch, 2);
  assert.deepEqual(last(a).added, ['c']);
  assert.deepEqual(b.epochs.map((e) => e.added), [['b'], ['c']]);
  // One code and one SFrame secret for everyone, different in each epoch.
  assert.equal(codeOf(b), codeOf(a));
  assert.equal(codeOf(c), codeOf(a));
  assert.equal(hex(last(c).sframeSecret), hex(last(a).sframeSecret));
  assert.equal(last(a).sframeSecret.length, 16);
  const codes = a.epochs.map((e) => JSON.stringify(e.code));
  assert.equal(new Set(codes).size, 3, 'the code changes with every epoch');
  assert.equal(last(b).code.digits.length, 17);
  assert.deepEqual(new Set([last(a).ownLeaf, last(b).ownLeaf, last(c).ownLeaf]), new Set([0, 1, 2]));
  assert.deepEqual(b.e2ee.members().map((m) => [m.leaf, m.participantId, m.name]), [[0, 'a', 'A'], [1, 'b', 'B'], [2, 'c', 'C']]);

  // Chat: the sender comes from the MLS leaf, not the relay's `from`.
  await a.e2ee.sendChat('hello, encrypted');
  await r.settle();
  assert.deepEqual(b.chats, [{ from: 'a', text: 'hello, encrypted' }]);
  assert.deepEqual(c.chats, [{ from: 'a', text: 'hello, encrypted' }]);
  const chatMsg = r.sent.filter((s) => s.msg.type === 'mls-app').at(-1).msg;
  assert.ok(!Buffer.from(chatMsg.message, 'base64').toString('latin1').includes('hello'), 'chat travels encrypted');
  r.deliver('b', chatMsg); // a replay: its key generation is spent
  await r.settle();
  assert.equal(b.warnings.at(-1).code, 'undecryptable');
  assert.equal(b.chats.length, 1);
  await a.e2ee.sendChat('who sent this?');
  b.inbox.at(-1).from = 'c'; // the relay names the wrong sender
  await r.settle();
  assert.equal(b.warnings.at(-1).code, 'sender-mismatch');
  assert.deepEqual(b.chats.at(-1), { from: 'a', text: 'who sent this?' });

  // Two committers at epoch 2: a wins, b's commit is stale and b follows a's.
  r.request('a', [], []);
  r.deliver('b', { type: 'mls-commit-request', epoch: 2, add: [], remove: [], deadlineMs: 2000 });
  await r.settle();
  const stale = r.sent.filter((s) => s.msg.type === 'mls-commit' && s.msg.epoch === 2);
  assert.equal(stale.length, 2);
  assert.equal(r.epoch, 3);
  for (const p of [a, b, c]) assert.equal(last(p).epoch, 3);
  assert.equal(codeOf(b), codeOf(a));
  assert.equal(codeOf(c), codeOf(a));
  // b's losing commit, replayed to c as if it won the next epoch: refused, nothing forks.
  const loser = stale.find((s) => s.pid === 'b').msg.commit;
  r.deliver('c', { type: 'mls-commit', epoch: 3, commit: loser, from: 'b' });
  await r.settle();
  assert.equal(last(c).epoch, 3);
  assert.equal(r.failed.at(-1).pid, 'c');
  assert.equal(r.failed.at(-1).epoch, 3);
  await a.e2ee.sendChat('still one group');
  await r.settle();
  assert.deepEqual(c.chats.at(-1), { from: 'a', text: 'still one group' });
  // A chat of epoch 3 that reaches b only after epoch 4 began is still read (RFC 9420 §14).
  await a.e2ee.sendChat('late but fine');
  const late = b.inbox.pop();
  r.request('c', [], []);
  await r.settle();
  assert.equal(last(b).epoch, 4);
  r.deliver('b', late);
  await r.settle();
  assert.deepEqual(b.chats.at(-1), { from: 'a', text: 'late but fine' });

  // A ghost: the committer's roster has "g" (a server lied to it), the others' do not.
  rosterA.add('g');
  const g = await r.join('g', rosterA);
  r.request('a', r.waitingKps.splice(0));
  await a.e2ee.handle(a.inbox.shift()); // only the request: a commits the add of g
  const failedBefore = r.failed.length;
  for (const p of [b, c]) while (p.inbox.length) await p.e2ee.handle(p.inbox.shift());
  assert.equal(r.failed.length, failedBefore + 2, 'b and c report the ghost commit');
  assert.deepEqual(r.failed.slice(-2).map((f) => [f.pid, f.epoch]), [['b', 4], ['c', 4]]);
  assert.match(r.failed.at(-1).reason, /unknown-participant g/);
  assert.equal(last(b).epoch, 4);
  assert.equal(codeOf(b), codeOf(c));
  // Roll back as the server does: a gets stale-epoch instead of its commit, g no Welcome.
  a.inbox.length = 0;
  g.inbox.length = 0;
  r.epoch = 4;
  r.members = ['a', 'b', 'c'];
  r.deliver('a', { type: 'error', code: 'mls-stale-epoch' });
  await r.settle();
  assert.equal(last(a).epoch, 4);
  assert.equal(g.epochs.length, 0);

  // Remove c: a new epoch for a and b. c is not told (as the server does), keeps its
  // epoch-4 state and, given the next chat anyway, cannot read it: it has no epoch-5 keys.
  const removal = r.sent.length;
  r.request('a', [], ['c']);
  await r.settle();
  assert.equal(last(a).epoch, 5);
  assert.equal(codeOf(a), codeOf(b));
  assert.deepEqual(last(a).removed, ['c']);
  assert.deepEqual(last(b).members.map((m) => m.participantId), ['a', 'b']);
  assert.equal(last(c).epoch, 4);
  await a.e2ee.sendChat('after c left');
  await r.settle();
  assert.deepEqual(b.chats.at(-1), { from: 'a', text: 'after c left' });
  const cChats = c.chats.length;
  r.deliver('c', r.sent.filter((s) => s.msg.type === 'mls-app').at(-1).msg); // c keeps receiving
  await r.settle();
  assert.equal(c.chats.length, cChats, 'the removed participant cannot read the next chat');
  assert.equal(c.warnings.at(-1).code, 'undecryptable');
  // Had c been sent the removing commit, it would know it was removed.
  r.deliver('c', { type: 'mls-commit', epoch: 4, commit: r.sent.slice(removal).find((s) => s.msg.type === 'mls-commit').msg.commit, from: 'a' });
  await r.settle();
  assert.equal(c.warnings.at(-1).code, 'removed');
  assert.equal(c.e2ee.epoch(), null);
  r.stop();
});


test('a key package refused as rate-limited goes again after the server\'s 5 s, not after the 10 s wait for a Welcome', async () => {
  const r = relay();
  const roster = new Set(['a', 'b']);
  await r.join('a', roster);
  await r.settle();
  const b = await r.join('b', roster, { keyPackageRetryMs: 100 });
  const kps = () => r.sent.filter((s) => s.pid === 'b' && s.msg.type === 'mls-key-package').length;
  assert.equal(kps(), 1);
  await b.e2ee.handle({ type: 'error', code: 'rate-limited', message: 'too fast' });
  for (let i = 0; i < 100 && kps() < 2; i++) await new Promise((res) => setTimeout(res, 10));
  assert.equal(kps(), 2, 'b offered a key package again');
  r.request('a', r.waitingKps.splice(-1, 1));
  await r.settle();
  assert.equal(last(b).epoch, 1, 'and was added with it');
  await b.e2ee.handle({ type: 'error', code: 'rate-limited', message: 'a reaction, say' });
  await new Promise((res) => setTimeout(res, 250));
  assert.equal(kps(), 2, 'in the group: a rate-limited error is not about a key package');
  r.stop();
});

test('no Welcome in time, asked twice at one epoch, behind: the group is kept or asked for again', async () => {
  const r = relay();
  const roster = new Set(['a', 'b']);
  const a = await r.join('a', roster);
  await r.settle();
  const b = await r.join('b', roster, { welcomeTimeoutMs: 100 });
  const kps = () => r.sent.filter((s) => s.pid === 'b' && s.msg.type === 'mls-key-package').length;
  assert.equal(kps(), 1);
  for (let i = 0; i < 100 && kps() < 2; i++) await new Promise((res) => setTimeout(res, 10));
  assert.equal(kps(), 2, 'b offered a fresh key package');
  // The Welcome made for b's first key package still works.
  r.request('a', r.waitingKps.splice(0, 1));
  await r.settle();
  assert.equal(last(b).epoch, 1);
  assert.equal(codeOf(b), codeOf(a));
  const before = kps();
  await new Promise((res) => setTimeout(res, 250));
  assert.equal(kps(), before, 'no more key packages once in the group');
  // Asked twice at one epoch (a takeover that came back to a): the first answer wins, a
  // gets mls-stale-epoch for the second and still merges the first when it is fanned back.
  r.request('a', [], []);
  r.request('a', [], []);
  await r.settle();
  assert.equal(r.sent.filter((s) => s.msg.type === 'mls-commit' && s.msg.epoch === 1).length, 2);
  assert.equal(last(a).epoch, 2);
  assert.equal(last(b).epoch, 2);
  assert.equal(codeOf(a), codeOf(b));
  assert.equal(r.failed.length, 0);
  // b missed a commit (it resumed late): the next one is from a later epoch.
  r.deliver('b', { type: 'mls-commit', epoch: 6, commit: 'AAAA', from: 'a' });
  await r.settle();
  assert.equal(b.warnings.at(-1).code, 'behind');
  assert.equal(b.e2ee.epoch(), null);
  assert.equal(kps(), before + 1);
  r.stop();
});

test('members with WebCrypto X25519 and with X25519 in JavaScript share one group (Firefox takes the latter)', async () => {
  const r = relay();
  const roster = new Set(['a', 'b', 'c']);
  const a = await r.join('a', roster, { nativeX25519: true });
  await r.settle();
  const b = await r.join('b', roster, { nativeX25519: false });
  r.request('a', r.waitingKps.splice(0));
  await r.settle();
  const c = await r.join('c', roster, { nativeX25519: true });
  // b, in JavaScript, commits the add: a and c decrypt its update path.
  r.request('b', r.waitingKps.splice(0));
  await r.settle();
  assert.equal(r.epoch, 2);
  for (const p of [a, b, c]) assert.equal(last(p).epoch, 2);
  // a removes c: b decrypts a's update path with the JavaScript KEM.
  r.request('a', [], ['c']);
  await r.settle();
  assert.equal(r.epoch, 3);
  assert.deepEqual(r.failed, []);
  assert.equal(last(a).epoch, 3);
  assert.equal(last(b).epoch, 3);
  assert.equal(codeOf(a), codeOf(b));
  assert.equal(hex(last(a).sframeSecret), hex(last(b).sframeSecret));
  r.stop();
});


test('a credential says how its owner was verified, and the committer holds it to the roster', async () => {
  const r = relay();
  // The roster as everyone's client shows it: e is a guest, b a member of the Home Office.
  const roster = new Map([['a', null], ['b', { level: 'member', organisation: 'Home Office' }], ['e', null]]);
  const rosterHas = (pid, claims) => roster.has(pid) &&
    (claims?.l ?? 'guest') === (roster.get(pid)?.level ?? 'guest') && (claims?.o ?? null) === (roster.get(pid)?.organisation ?? null);
  const a = await r.join('a', new Set(), { rosterHas });
  await r.settle();
  // e's key package claims a sign-in e did not make (the server refuses that; a must too).
  await r.join('e', new Set(), { rosterHas, identity: { level: 'member', organisation: 'Home Office' } });
  r.request('a', r.waitingKps.splice(0));
  await r.settle();
  assert.equal(a.warnings.at(-1)?.code, 'bad-key-package');
  assert.deepEqual(a.warnings.at(-1)?.participantId, 'e');
  assert.deepEqual(last(a).members.map((m) => m.participantId), ['a'], 'e was not added');
  // b's is true: added, and every member sees how b was verified.
  const b = await r.join('b', new Set(), { rosterHas, identity: { level: 'member', organisation: 'Home Office' } });
  r.request('a', r.waitingKps.splice(0));
  await r.settle();
  for (const p of [a, b]) {
    assert.deepEqual(last(p).members.map((m) => [m.participantId, m.level, m.organisation]),
      [['a', 'guest', null], ['b', 'member', 'Home Office']]);
  }
  assert.equal(codeOf(a), codeOf(b));
  r.stop();
});

/**
 * web/e2ee/mls.js with a committer that, when asked to commit, writes
 * `forge.as` into its own leaf's credential (its update path carries it) and
 * removes the one it impersonates, or adds a key package of its own named
 * `forge.add`: a copy beside symlinks to the real modules, so it runs the same ts-mls.
 */
async function forgingMls() {
  const { mkdtempSync, mkdirSync, readFileSync, writeFileSync, readdirSync, symlinkSync } = await import('node:fs');
  const { join: pathJoin } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const web = new URL('../../web/', import.meta.url).pathname;
  const dir = mkdtempSync(pathJoin(tmpdir(), 'convene-forge-'));
  mkdirSync(pathJoin(dir, 'e2ee'));
  symlinkSync(pathJoin(web, 'vendor'), pathJoin(dir, 'vendor'));
  for (const f of readdirSync(pathJoin(web, 'e2ee'))) if (f !== 'mls.js') symlinkSync(pathJoin(web, 'e2ee', f), pathJoin(dir, 'e2ee', f));
  const real = readFileSync(pathJoin(web, 'e2ee', 'mls.js'), 'utf8');
  const anchor = '    // PublicMessage, so that the server can check commits';
  assert.ok(real.includes(anchor), 'the patch still fits mls.js');
  writeFileSync(pathJoin(dir, 'e2ee', 'mls.js'), real.replace(anchor, `    if (opts.forge?.add) {
      const fake = await mls.generateKeyPackage({ credentialType: 'basic', identity: utf8.encode(JSON.stringify({ p: opts.forge.add, n: 'Dee' })) }, mls.defaultCapabilities(), mls.defaultLifetime, [], impl);
      proposals.push({ proposalType: 'add', add: { keyPackage: fake.publicPackage } });
    }
    if (opts.forge?.as) {
      const me = group.privatePath.leafIndex;
      const tree = group.ratchetTree.slice();
      const forged = { credentialType: 'basic', identity: utf8.encode(JSON.stringify({ p: opts.forge.as, n: 'forged' })) };
      tree[me * 2] = { ...tree[me * 2], leaf: { ...tree[me * 2].leaf, credential: forged } };
      group = { ...group, ratchetTree: tree };
      for (const m of membersOf(tree)) if (m.participantId === opts.forge.as && m.leaf !== me) proposals.push({ proposalType: 'remove', remove: { removed: m.leaf } });
    }
${anchor}`));
  return (await import(pathJoin(dir, 'e2ee', 'mls.js'))).startE2ee;
}

test('a committer cannot take another member\'s name in its own leaf: the others refuse the commit', async () => {
  const forging = await forgingMls();
  const r = relay();
  const roster = new Set(['m', 'a', 'b']);
  const forge = { as: null };
  const m = await r.join('m', roster, { startE2ee: forging, forge });
  await r.settle();
  const a = await r.join('a', roster);
  r.request('m', r.waitingKps.splice(0));
  await r.settle();
  const b = await r.join('b', roster);
  r.request('m', r.waitingKps.splice(0));
  await r.settle();
  assert.equal(last(b).epoch, 2);
  // Now m commits as "a", removing the real a.
  forge.as = 'a';
  r.request('m', [], []);
  await r.settle();
  const refused = r.failed.find((f) => f.pid === 'b');
  assert.ok(refused, `b refuses the commit: ${JSON.stringify(r.failed)}`);
  assert.match(refused.reason, /credential-changed leaf 0/);
  assert.equal(last(b).epoch, 2, 'b stays where it was');
  assert.deepEqual(b.e2ee.members().map((x) => x.participantId), ['m', 'a', 'b'], 'nobody is shown under a stolen name');
  r.stop();
});

test('a committer cannot add a key package of its own under the name of someone the server did not ask it to add', async () => {
  const forging = await forgingMls();
  const r = relay();
  const roster = new Set(['m', 'a', 'd']);
  const forge = { add: null };
  await r.join('m', roster, { startE2ee: forging, forge });
  await r.settle();
  const a = await r.join('a', roster);
  r.request('m', r.waitingKps.splice(0));
  await r.settle();
  assert.equal(last(a).epoch, 1);
  // d is on the roster but has not asked in; m adds a "d" of its own anyway.
  forge.add = 'd';
  r.request('m', [], []);
  await r.settle();
  const refused = r.failed.find((f) => f.pid === 'a');
  assert.ok(refused, `a refuses the commit: ${JSON.stringify(r.failed)}`);
  assert.match(refused.reason, /unexpected-add d/);
  assert.deepEqual(a.e2ee.members().map((x) => x.participantId), ['m', 'a'], 'no "d" that m holds the keys of');
  r.stop();
});

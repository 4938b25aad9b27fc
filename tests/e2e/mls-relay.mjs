// A small relay playing the Delivery Service of docs/e2ee-design.md §5 for
// web/e2ee/mls.js members in Node (the real one lives in convene-meeting):
// used by e2ee-mls.test.mjs and e2ee-cost.bench.mjs.
import { createHash } from 'node:crypto';
import { startE2ee, b64 } from '../../web/e2ee/mls.js';

export const GROUP_ID = b64(new TextEncoder().encode('meeting-1234'));

/** The relay: one epoch counter, the first member creates, the first member commits. */
export function relay() {
  const people = new Map(); // pid -> {e2ee, inbox, log}
  const r = { epoch: null, members: [], sent: [], creator: null, waitingKps: [], failed: [] };
  const deliver = (pid, msg) => people.get(pid)?.inbox.push(msg);
  r.deliver = deliver;
  r.onClient = (pid, msg) => {
    r.sent.push({ pid, msg });
    switch (msg.type) {
      case 'mls-key-package':
        if (r.epoch === null && !r.creator) { r.creator = pid; deliver(pid, { type: 'mls-create-request', groupId: GROUP_ID }); }
        else r.waitingKps.push({ participantId: pid, keyPackage: msg.keyPackage });
        break;
      case 'mls-group-created': r.epoch = 0; r.members = [pid]; r.groupInfo = msg.groupInfo; break;
      case 'mls-commit': {
        if (msg.epoch !== r.epoch) { deliver(pid, { type: 'error', code: 'mls-stale-epoch' }); break; }
        r.epoch += 1;
        r.groupInfo = msg.groupInfo;
        const added = r.lastRequest?.add.map((a) => a.participantId) ?? [];
        const removed = r.lastRequest?.remove ?? [];
        // As the server (protocol.md §5.24): a member the commit removes is not sent it.
        // As the server: whom it asked to add, by the SHA-256 of their KeyPackage.
        const adds = (r.lastRequest?.add ?? []).map((a) => ({
          participantId: a.participantId,
          keyPackageSha256: createHash('sha256').update(Buffer.from(a.keyPackage, 'base64')).digest('base64'),
        }));
        for (const m of r.members) if (!removed.includes(m)) deliver(m, { type: 'mls-commit', epoch: msg.epoch, commit: msg.commit, from: pid, adds });
        r.members = r.members.filter((m) => !removed.includes(m)).concat(added);
        if (msg.welcome) for (const a of added) deliver(a, { type: 'mls-welcome', welcome: msg.welcome, epoch: r.epoch });
        break;
      }
      case 'mls-commit-failed': r.failed.push({ pid, ...msg }); break;
      case 'mls-app': for (const m of r.members) if (m !== pid) deliver(m, { ...msg, from: pid }); break;
    }
  };
  r.request = (to, add, remove = []) => {
    r.lastRequest = { add, remove };
    deliver(to, { type: 'mls-commit-request', epoch: r.epoch, add, remove, deadlineMs: 2000 });
  };
  /** Runs every inbox until all are empty (messages in order per participant). */
  r.settle = async () => {
    for (let busy = true; busy;) {
      busy = false;
      for (const p of people.values()) {
        while (p.inbox.length) { busy = true; await p.e2ee.handle(p.inbox.shift()); }
      }
    }
  };
  r.stop = () => { for (const p of people.values()) p.e2ee.stop(); };
  r.join = async (pid, roster, extra = {}) => {
    const p = { inbox: [], epochs: [], chats: [], warnings: [] };
    people.set(pid, p);
    // extra.startE2ee: another build of mls.js (a test's hostile member).
    p.e2ee = await (extra.startE2ee ?? startE2ee)({
      groupId: GROUP_ID, participantId: pid, name: pid.toUpperCase(), identity: null,
      send: (msg) => r.onClient(pid, msg), rosterHas: (x, claims) => roster.has(x) && !claims?.l,
      onEpoch: (e) => p.epochs.push(e), onChat: (c) => p.chats.push(c), onWarning: (w) => p.warnings.push(w), ...extra,
    });
    return p;
  };
  return r;
}

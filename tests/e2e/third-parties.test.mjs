// No third parties: a whole meeting (a host and a guest with cameras and
// microphones, chat, a screen share, the invitation, the connectivity check)
// makes no request to any origin but the server's, and the browser reports
// no Content-Security-Policy violation (something blocked would have been a
// request elsewhere, or inline code the policy forbids).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchPerson, createMeeting, join, joinAsHost, until, decodingVideos } from './harness.mjs';

let server;
const people = [];
const requests = [];

before(async () => {
  server = await startServer();
});

after(async () => {
  for (const p of people) await p.browser.close().catch(() => {});
  server?.stop();
});

/** A person whose every request, socket and CSP violation is recorded. */
async function person(name) {
  const p = await launchPerson();
  people.push(p);
  const context = p.page.context();
  context.on('request', (r) => requests.push({ who: name, url: r.url() }));
  p.page.on('websocket', (ws) => requests.push({ who: name, url: ws.url() }));
  p.page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) requests.push({ who: name, url: `csp-violation: ${m.text()}` });
  });
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      /** @type {any} */ (window).__csp = [...(/** @type {any} */ (window).__csp || []), `${e.violatedDirective} ${e.blockedURI}`];
    });
  });
  return p;
}

test('a whole meeting asks nothing of any other origin', async () => {
  const origin = new URL(server.url).origin;
  const host = await person('host');
  const guest = await person('guest');
  const { link, hostLink } = await createMeeting(host.page, server.url, 'Own origin only');
  await host.page.getByLabel('Invitation to send').waitFor({ state: 'visible' });
  await joinAsHost(host.page, hostLink, 'Hana');
  await join(guest.page, link, 'Gus');
  await until('both decode video', async () => (await decodingVideos(host.page)) >= 1 && (await decodingVideos(guest.page)) >= 1, 20000);

  // Chat both ways.
  for (const [p, text] of [[host, 'Hello from Hana'], [guest, 'Hello from Gus']]) {
    if ((await p.page.locator('#chat-btn').getAttribute('aria-expanded')) !== 'true') await p.page.locator('#chat-btn').click();
    await p.page.locator('#chat-input').fill(text);
    await p.page.locator('#chat-send').click();
  }
  await until('chat arrives', async () => (await guest.page.locator('#chat-log').textContent()).includes('Hello from Hana'));

  // A screen share, seen by the guest.
  await host.page.getByRole('button', { name: 'Share screen' }).click();
  await until('the guest sees the shared screen', () => guest.page.locator('#stage video').count());
  await until('the guest decodes two videos', async () => (await decodingVideos(guest.page)) >= 2, 20000);

  // The connectivity check page too.
  await guest.page.goto(`${server.url}/check`);
  await guest.page.waitForLoadState('networkidle').catch(() => {});

  for (const p of [host, guest]) {
    const violations = await p.page.evaluate(() => /** @type {any} */ (window).__csp || []);
    assert.deepEqual(violations, [], 'no CSP violations');
  }
  assert.ok(requests.length > 10, `requests were recorded (${requests.length})`);
  const elsewhere = requests.filter(({ url }) => {
    if (url.startsWith('data:') || url.startsWith('blob:')) return false;
    try {
      const u = new URL(url);
      const asHttp = u.protocol === 'ws:' || u.protocol === 'wss:' ? `${u.protocol === 'ws:' ? 'http' : 'https'}://${u.host}` : u.origin;
      return asHttp !== origin;
    } catch {
      return true;
    }
  });
  assert.deepEqual(elsewhere, [], 'every request goes to the server itself');
});

// Verified identities in real Chromium, against two real OpenID providers: a
// member and a partner sign in with their own organisations, skip the lobby by
// the meeting's rule and see each other's badges; an unverified guest waits,
// marked as a guest to the host.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as pathJoin } from 'node:path';
import { startServer, startProvider, freePort, launchPerson, until, decodingVideos, peopleNames, ROOT } from './harness.mjs';

let server;
/** What the test provider calls a multi-factor sign-in (ACR_MFA in tests/oidc/provider.mjs). */
const MFA_ACR = 'urn:convene:test:mfa';
const providers = [];
const people = [];

before(async () => {
  const convenePort = await freePort();
  const home = await startProvider({
    port: await freePort(), keyId: 'home-1', org: 'home', convenePort,
    users: [{ username: 'alice', email: 'alice@home.example', name: 'Alice Archer' }],
  });
  const partner = await startProvider({
    port: await freePort(), keyId: 'partner-1', org: 'partner-agency', convenePort,
    users: [{ username: 'pam', email: 'pam@partner.example', name: 'Pam Partner' }],
  });
  providers.push(home, partner);
  const config = pathJoin(mkdtempSync(pathJoin(tmpdir(), 'convene-e2e-config-')), 'convene.toml');
  writeFileSync(config, `
[home]
name = "Home Department"
domains = ["home.example"]
[home.provider]
issuer = "${home.issuer}"
client_id = "convene"
client_secret = "${home.secret}"
step_up_acr_values = ["${MFA_ACR}"]
step_up_prompt_login = true

[[partner]]
id = "partner-agency"
name = "Partner Agency"
domains = ["partner.example"]
[partner.provider]
issuer = "${partner.issuer}"
client_id = "convene"
client_secret = "${partner.secret}"
`);
  server = await startServer(['--config', config], { port: convenePort });
});

after(async () => {
  for (const p of people) await p.browser.close().catch(() => {});
  server?.stop();
  for (const p of providers) p.stop();
});

/** On the provider's own page: the login form. */
async function providerLogin(page, username, { mfa = false } = {}) {
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill('pw');
  if (mfa) await page.getByLabel('Use my security key').check();
  await page.getByRole('button', { name: 'Sign in' }).click();
}

test('a member and a partner see each other verified; a guest waits marked as a guest', async () => {
  const alice = await launchPerson();
  const pam = await launchPerson();
  const gail = await launchPerson();
  people.push(alice, pam, gail);

  // Alice signs in with her own organisation and creates a meeting whose lobby
  // lets signed-in members and partners straight in.
  await alice.page.goto(server.url);
  await alice.page.getByText(`Hosted by Home Department · ${server.url}`).waitFor();
  assert.equal(await alice.page.getByLabel('Meeting title').isVisible(), false, 'creating needs a member');
  await alice.page.getByRole('link', { name: 'Sign in with Home Department' }).click();
  await providerLogin(alice.page, 'alice', { mfa: true });
  await alice.page.getByText('Signed in as Alice Archer').waitFor();
  await alice.page.getByText('Member, Home Department · multi-factor sign-in').waitFor();
  await alice.page.getByLabel('Meeting title').fill('Joint planning');
  await alice.page.getByLabel('Lobby: people wait until a host lets them in').check();
  await alice.page.getByText('More settings').click();
  await alice.page.getByLabel('With the lobby on, who goes straight in').selectOption('members-and-partners');
  await alice.page.getByRole('button', { name: 'Create meeting' }).click();
  // The link is filled in when the meeting exists: reading it sooner gave "".
  await alice.page.getByRole('heading', { name: 'Your meeting is ready' }).waitFor();
  const link = await alice.page.getByLabel('Join link').inputValue();
  await alice.page.getByRole('link', { name: 'Go to the meeting as host' }).click();
  await until('the verified name filled in', async () => (await alice.page.getByLabel('Your name').inputValue()) === 'Alice Archer');
  assert.equal(await alice.page.getByLabel('Your name').isEditable(), false, 'a verified name is not typed');
  await alice.page.getByRole('button', { name: 'Join meeting' }).click();
  await alice.page.locator('#meeting').waitFor({ state: 'visible' });

  // Pam, from the partner organisation: the join page says who hosts first;
  // she signs in with her own organisation and goes straight in.
  await pam.page.goto(link);
  const hosted = pam.page.locator('#hosted-by');
  await until('hosted-by shown', async () => (await hosted.textContent()) === `Hosted by Home Department · ${server.url}`);
  await pam.page.getByRole('link', { name: 'Sign in with Partner Agency' }).click();
  await providerLogin(pam.page, 'pam');
  await pam.page.getByText('Signed in as Pam Partner').waitFor();
  assert.equal(new URL(pam.page.url()).pathname, new URL(link).pathname, 'back on the join page');
  await pam.page.waitForFunction(() => /** @type {HTMLVideoElement} */ (document.getElementById('preview'))?.videoWidth > 0);
  await pam.page.getByRole('button', { name: 'Join meeting' }).click();
  await pam.page.locator('#meeting').waitFor({ state: 'visible' });

  // An unverified guest waits in the lobby; the host sees the Guest badge.
  await gail.page.goto(link);
  await gail.page.getByLabel('Your name').fill('Gail Guest');
  await gail.page.getByRole('button', { name: 'Join meeting' }).click();
  await gail.page.getByRole('heading', { name: 'Waiting to be let in' }).waitFor();
  await gail.page.locator('#lobby').getByText(`Hosted by Home Department · ${server.url}`).waitFor();
  await until('the host sees the guest waiting', async () =>
    ((await alice.page.locator('#lobby-list').textContent()) || '').includes('Gail GuestGuest (unverified)'));

  for (const p of [alice, pam]) {
    await p.page.getByRole('button', { name: 'People' }).click();
    await until('both in the list', async () => (await peopleNames(p.page)).length === 2);
    await until('decoding the other', async () => (await decodingVideos(p.page)) >= 1, 20000);
  }
  const seenByPam = (await peopleNames(pam.page)).join(' | ');
  assert.match(seenByPam, /Alice Archer.*Member, Home Department/);
  assert.doesNotMatch(seenByPam, /multi-factor/, 'only hosts see how people signed in');
  const seenByAlice = (await peopleNames(alice.page)).join(' | ');
  assert.match(seenByAlice, /Pam Partner.*Partner: Partner Agency · single-factor sign-in/);
  // The badges are on the video tiles too.
  // On tiles, one word, with the details as its description (shown on hover and focus).
  await pam.page.locator('.tile .id-badge', { hasText: 'Member' }).waitFor();
  await pam.page.locator('.tile .id-tip', { hasText: 'Member, Home Department' }).waitFor({ state: 'attached' });
  await alice.page.screenshot({ path: pathJoin(ROOT, 'docs', 'screenshots', 'verified-identities.png') });
});

test('bug 10: the join page says what the meeting requires, and a member without a second factor signs in again with one', async () => {
  const alice = await launchPerson();
  const gail = await launchPerson();
  const again = await launchPerson();
  people.push(alice, gail, again);

  // Verified people only, each with a second factor.
  await alice.page.goto(server.url);
  await alice.page.getByRole('link', { name: 'Sign in with Home Department' }).click();
  await providerLogin(alice.page, 'alice', { mfa: true });
  await alice.page.getByText('Signed in as Alice Archer').waitFor();
  await alice.page.getByLabel('Meeting title').fill('Board');
  await alice.page.getByText('More settings').click();
  await alice.page.getByLabel('Unverified guests may join').uncheck();
  await alice.page.getByLabel('Members and partners must sign in with a second factor').check();
  await alice.page.getByRole('button', { name: 'Create meeting' }).click();
  await alice.page.getByRole('heading', { name: 'Your meeting is ready' }).waitFor();
  const link = await alice.page.getByLabel('Join link').inputValue();

  // A guest is told before typing anything, and offered no guest join.
  await gail.page.goto(link);
  const needs = gail.page.getByRole('region', { name: 'To join this meeting' });
  await needs.getByText('Only people verified by their organisation’s sign-in may join: no guests.').waitFor();
  await needs.getByText('Members and partners must sign in with a second factor').waitFor();
  await needs.getByText('This meeting does not admit guests. Sign in with your organisation to join.').waitFor();
  assert.equal(await gail.page.getByText('Or join as a guest').isVisible(), false, 'no guest join offered');
  assert.equal(await gail.page.getByRole('button', { name: 'Join meeting' }).isDisabled(), true);

  // A member signed in with a password only is told, and signs in again with a second factor:
  // the provider is asked for it (acr_values) and to authenticate again (prompt=login).
  await again.page.goto(link);
  await again.page.getByRole('link', { name: 'Sign in with Home Department' }).click();
  await providerLogin(again.page, 'alice');
  await again.page.getByText('Signed in as Alice Archer').waitFor();
  await again.page.getByText('You signed in without a second factor, and this meeting needs one.').waitFor();
  assert.equal(await again.page.getByRole('button', { name: 'Join meeting' }).isDisabled(), true);
  const authorize = again.page.waitForRequest((r) => r.url().includes('/auth?') && r.url().includes('client_id=convene'));
  await again.page.getByRole('link', { name: 'Sign in again with a second factor (Home Department)' }).click();
  const asked = new URL((await authorize).url()).searchParams;
  assert.equal(asked.get('prompt'), 'login');
  assert.equal(asked.get('acr_values'), MFA_ACR);
  await providerLogin(again.page, 'alice', { mfa: true });
  await again.page.getByText('Member, Home Department · multi-factor sign-in').waitFor();
  assert.equal(new URL(again.page.url()).pathname, new URL(link).pathname, 'back on the join page');
  await until('join offered', async () => !(await again.page.getByRole('button', { name: 'Join meeting' }).isDisabled()));
  assert.equal(await again.page.getByText('You signed in without a second factor').isVisible(), false);
});

test('an encrypted meeting: a member, a partner and a guest in one group, each credential saying how they were verified', async () => {
  const alice = await launchPerson();
  const pam = await launchPerson();
  const gail = await launchPerson();
  people.push(alice, pam, gail);
  await alice.page.goto(server.url);
  await alice.page.getByRole('link', { name: 'Sign in with Home Department' }).click();
  await providerLogin(alice.page, 'alice', { mfa: true });
  await alice.page.getByText('Signed in as Alice Archer').waitFor();
  await alice.page.getByLabel('Meeting title').fill('Sealed planning');
  await alice.page.getByLabel(/End-to-end encrypted/).check();
  await alice.page.getByRole('button', { name: 'Create meeting' }).click();
  await alice.page.getByRole('heading', { name: 'Your meeting is ready' }).waitFor();
  const link = await alice.page.getByLabel('Join link').inputValue();
  await alice.page.getByRole('link', { name: 'Go to the meeting as host' }).click();
  await until('the verified name filled in', async () => (await alice.page.getByLabel('Your name').inputValue()) === 'Alice Archer');
  await alice.page.getByRole('button', { name: 'Join meeting' }).click();
  await alice.page.locator('#meeting').waitFor({ state: 'visible' });

  await pam.page.goto(link);
  await pam.page.getByRole('link', { name: 'Sign in with Partner Agency' }).click();
  await providerLogin(pam.page, 'pam');
  await pam.page.getByText('Signed in as Pam Partner').waitFor();
  await pam.page.waitForFunction(() => /** @type {HTMLVideoElement} */ (document.getElementById('preview'))?.videoWidth > 0);
  await pam.page.getByRole('button', { name: 'Join meeting' }).click();
  await pam.page.locator('#meeting').waitFor({ state: 'visible' });

  await gail.page.goto(link);
  await gail.page.getByLabel('Your name').fill('Gail Guest');
  await gail.page.getByRole('button', { name: 'Join meeting' }).click();
  await gail.page.locator('#meeting').waitFor({ state: 'visible' });

  // The server took each key package only because its credential said what it
  // verified (a member, a partner, a guest); each page checked the others'
  // against its list, and shows no warning.
  const pages = [alice.page, pam.page, gail.page];
  const groupOf = (page) => page.evaluate(() => /** @type {any} */ (window).conveneE2ee || null);
  await until('all three in one group with one code', async () => {
    const gs = await Promise.all(pages.map(groupOf));
    return gs.every((g) => g && g.members.length === 3 && g.code === gs[0].code);
  }, 20000);
  for (const page of pages) assert.equal(await page.locator('#e2ee-warning').isVisible(), false);
});

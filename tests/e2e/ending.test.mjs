// How a session ends, as the person it ends for sees it: the meeting ended
// (also while waiting in the lobby, and when opening its link later), or a host
// removed them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchPerson, createMeeting, join, until, peopleNames } from './harness.mjs';

let server;
const people = [];

before(async () => {
  server = await startServer();
});

after(async () => {
  for (const p of people) await p.browser.close().catch(() => {});
  server?.stop();
});

/** How many WebSockets the page has opened so far. */
const sockets = (page) => page.evaluate(() => /** @type {any} */ (window).__sockets.length);

/** The host goes in through the host link. */
async function hostJoins(page, name) {
  await page.getByRole('link', { name: 'Go to the meeting as host' }).click();
  await page.getByText('You are joining as a host.').waitFor();
  await page.getByLabel('Your name').fill(name);
  await page.getByRole('button', { name: 'Join meeting' }).click();
  await page.locator('#meeting').waitFor({ state: 'visible' });
}

test('a guest waiting in the lobby is told the meeting ended, and stops reconnecting', async () => {
  const host = await launchPerson();
  const guest = await launchPerson();
  const later = await launchPerson();
  people.push(host, guest, later);

  const { link } = await createMeeting(host.page, server.url, 'Short stand-up', {
    setup: (page) => page.getByLabel('Lobby: people wait until a host lets them in').check(),
  });
  await hostJoins(host.page, 'Hana');

  await guest.page.goto(link);
  await guest.page.getByLabel('Your name').fill('Gus');
  await guest.page.getByRole('button', { name: 'Join meeting' }).click();
  await guest.page.getByRole('heading', { name: 'Waiting to be let in' }).waitFor();
  await host.page.getByText('1 waiting in the lobby').waitFor();
  const before = await sockets(guest.page);

  host.page.on('dialog', (d) => d.accept());
  await host.page.getByRole('button', { name: 'End meeting for all' }).click();
  await host.page.getByRole('heading', { name: 'This meeting has ended' }).waitFor();

  await guest.page.getByRole('heading', { name: 'This meeting has ended' }).waitFor({ timeout: 10000 });
  await guest.page.getByText('Hana ended the meeting for everyone.').waitFor();
  assert.equal(await guest.page.getByRole('heading', { name: 'Waiting to be let in' }).isVisible(), false);
  assert.equal(await guest.page.getByRole('button', { name: 'Rejoin' }).isVisible(), false, 'nothing to rejoin');
  assert.equal(await sockets(guest.page), before, 'told on the socket it had, not after a reconnect');
  await new Promise((r) => setTimeout(r, 12000));
  assert.equal(await sockets(guest.page), before, 'no reconnecting once the meeting ended');
  assert.equal(await guest.page.getByRole('heading', { name: 'This meeting has ended' }).isVisible(), true);

  // Opening the link of the ended meeting says so, instead of offering to join.
  await later.page.goto(link);
  await later.page.getByRole('heading', { name: 'This meeting has ended' }).waitFor();
  assert.equal(await later.page.getByRole('button', { name: 'Join meeting' }).isVisible(), false);
  assert.equal(await later.page.getByLabel('Your name').isVisible(), false);
  assert.equal(await sockets(later.page), 0, 'no attempt to join');
});

test('a removed guest is told a host removed them, not that they left', async () => {
  const host = await launchPerson();
  const guest = await launchPerson();
  people.push(host, guest);

  const { link } = await createMeeting(host.page, server.url, 'Planning');
  await hostJoins(host.page, 'Hana');
  await join(guest.page, link, 'Gus');
  await until('both in the list', async () => (await peopleNames(host.page)).length === 2);

  await host.page.getByRole('button', { name: 'People' }).click();
  await host.page.getByRole('button', { name: 'Remove Gus' }).click();
  await host.page.getByLabel('Do not let them rejoin this meeting').check();
  await host.page.getByRole('dialog').getByRole('button', { name: 'Remove' }).click();
  await guest.page.getByRole('heading', { name: 'A host removed you from the meeting' }).waitFor();
  await guest.page.getByText('Hana removed you from the meeting. You cannot rejoin it.').waitFor();
  assert.equal(await guest.page.getByRole('heading', { name: 'You left the meeting' }).count(), 0);
  assert.equal(await guest.page.getByRole('button', { name: 'Rejoin' }).isVisible(), false);
});

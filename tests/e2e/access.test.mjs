// A host creates a meeting with a passcode; a guest needs the passcode to get in.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchPerson, createMeeting, until, decodingVideos, peopleNames } from './harness.mjs';

let server;
const people = [];

before(async () => {
  server = await startServer();
});

after(async () => {
  for (const p of people) await p.browser.close().catch(() => {});
  server?.stop();
});

test('host link and passcode', async () => {
  const host = await launchPerson();
  const guest = await launchPerson();
  people.push(host, guest);

  const { link, hostLink } = await createMeeting(host.page, server.url, 'Restricted briefing', {
    setup: async (page) => {
      await page.getByLabel('Passcode (optional)').fill('blue 4711');
      await page.getByLabel('Lobby: people wait until a host lets them in').check();
    },
  });
  assert.ok(!link.includes('blue') && !link.includes('host='), 'the join link carries neither passcode nor host key');
  assert.match(hostLink, /#host=[0-9a-f]{32}$/);

  // The host goes in through the host link: no passcode asked.
  await host.page.getByRole('link', { name: 'Go to the meeting as host' }).click();
  await host.page.getByText('You are joining as a host.').waitFor();
  assert.equal(new URL(host.page.url()).hash, '', 'the host key is taken out of the address bar');
  assert.equal(await host.page.getByLabel('Meeting passcode').isVisible(), false);
  await host.page.getByLabel('Your name').fill('Hana Hughes');
  await host.page.getByRole('button', { name: 'Join meeting' }).click();
  await host.page.locator('#meeting').waitFor({ state: 'visible' });

  // A name that imitates a role is refused on the pre-join screen, saying why.
  await guest.page.goto(link);
  await guest.page.getByLabel('Your name').fill('Gus (host)');
  await guest.page.getByLabel('Meeting passcode').fill('blue 4711');
  await guest.page.getByRole('button', { name: 'Join meeting' }).click();
  await guest.page.getByText('roles and sign-in are shown by Convene itself').waitFor();
  assert.equal(await guest.page.locator('#meeting').isVisible(), false);

  // The guest must give the passcode; a wrong one is refused with a message.
  await guest.page.getByLabel('Your name').fill('Gus Grant');
  await guest.page.getByLabel('Meeting passcode').fill('red 1234');
  await guest.page.getByRole('button', { name: 'Join meeting' }).click();
  await guest.page.getByText('that passcode is not right').waitFor();
  assert.equal(await guest.page.locator('#meeting').isVisible(), false);
  await guest.page.getByLabel('Meeting passcode').fill('blue 4711');
  await guest.page.getByRole('button', { name: 'Join meeting' }).click();
  // Right passcode: into the lobby, seeing nothing of the meeting until admitted.
  await guest.page.getByRole('heading', { name: 'Waiting to be let in' }).waitFor();
  await guest.page.getByText('A host will let you in shortly.').waitFor();
  assert.equal(await guest.page.locator('#meeting').isVisible(), false);
  assert.equal((await peopleNames(guest.page)).length, 0, 'no participant list in the lobby');
  await host.page.getByText('1 waiting in the lobby').waitFor();
  await host.page.getByRole('button', { name: 'Admit Gus Grant' }).click();
  await guest.page.locator('#meeting').waitFor({ state: 'visible' });

  for (const p of [host, guest]) {
    await until('both in the list', async () => (await peopleNames(p.page)).length === 2);
    await until('decoding the other', async () => (await decodingVideos(p.page)) >= 1, 20000);
  }
  const names = await peopleNames(guest.page);
  assert.ok(names.some((n) => n.startsWith('Hana Hughes') && n.includes('host')), names.join(' | '));
  // The role is said apart from the typed name, never in the same text.
  const hostRow = guest.page.locator('#people li', { hasText: 'Hana Hughes' });
  assert.equal(await hostRow.locator('bdi.name').textContent(), 'Hana Hughes');
  assert.match((await hostRow.locator('.tags').textContent()) || '', /host/);
  assert.equal(await guest.page.getByRole('button', { name: 'Lock meeting' }).isVisible(), false, 'no host controls for guests');
  // The host sees which path each person's media takes (for support); the guest sees no one's.
  await until('the host sees the guest\'s media path', async () => (await peopleNames(host.page)).some((n) => n.startsWith('Gus') && n.includes('media direct over UDP')));
  assert.ok((await peopleNames(guest.page)).every((n) => !n.includes('media ')), 'paths are for hosts only');

  // The host mutes the guest: the guest is told and shows as muted.
  await host.page.getByRole('button', { name: 'People' }).click();
  await host.page.getByRole('button', { name: 'Mute Gus Grant' }).click();
  await guest.page.getByText('Hana Hughes muted you.').waitFor();
  await until('the guest shown muted', async () => (await peopleNames(host.page)).some((n) => n.startsWith('Gus') && n.includes('microphone off')));
  assert.equal(await guest.page.getByRole('button', { name: 'Unmute' }).isEnabled(), true, 'unmuting is allowed by default');

  // The host turns chat off for participants: the guest's chat is disabled, with the reason.
  await host.page.getByRole('button', { name: 'Settings' }).click();
  await host.page.getByLabel('Who may chat').selectOption('hosts');
  await host.page.getByRole('button', { name: 'Save settings' }).click();
  await guest.page.getByRole('button', { name: 'Chat' }).click();
  await guest.page.getByText('You cannot chat: chat is turned off for you in this meeting.').waitFor();
  assert.equal(await guest.page.getByLabel('Message').isDisabled(), true);

  // The host stops the guest's camera: the guest is told, and the others no longer see it.
  await host.page.getByRole('button', { name: 'Stop camera of Gus Grant' }).click();
  await guest.page.getByText('Hana Hughes stopped your camera.').waitFor();
  await guest.page.getByRole('button', { name: 'Start camera' }).waitFor();
  await until('the guest shown without camera', async () => (await peopleNames(host.page)).some((n) => n.startsWith('Gus') && n.includes('camera off')));

  // The host removes the guest and bars them: told, gone, and unable to come back.
  await host.page.getByRole('button', { name: 'Remove Gus Grant' }).click();
  await host.page.getByLabel('Do not let them rejoin this meeting').check();
  await host.page.getByRole('dialog').getByRole('button', { name: 'Remove' }).click();
  await guest.page.getByText('Hana Hughes removed you from the meeting. You cannot rejoin it.').waitFor();
  await until('the guest gone', async () => (await peopleNames(host.page)).length === 1);
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal((await peopleNames(host.page)).length, 1, 'the removed guest did not reconnect');
  await guest.page.goto(link);
  await guest.page.getByLabel('Your name').fill('Gus under another name');
  await guest.page.getByLabel('Meeting passcode').fill('blue 4711');
  await guest.page.getByRole('button', { name: 'Join meeting' }).click();
  await guest.page.getByText('a host removed you from this meeting; you cannot rejoin it').waitFor();

  // Locked: a newcomer with the right passcode is turned away.
  const newcomer = await launchPerson();
  people.push(newcomer);
  await host.page.getByRole('button', { name: 'Lock meeting' }).click();
  await host.page.getByText('Locked', { exact: true }).waitFor();
  await newcomer.page.goto(link);
  await newcomer.page.getByLabel('Your name').fill('Lee');
  await newcomer.page.getByLabel('Meeting passcode').fill('blue 4711');
  await newcomer.page.getByRole('button', { name: 'Join meeting' }).click();
  await newcomer.page.getByText('this meeting is locked').waitFor();

  // Ending: the meeting closes for the host too, and no one gets in afterwards.
  host.page.on('dialog', (d) => d.accept());
  await host.page.getByRole('button', { name: 'End meeting for all' }).click();
  await host.page.getByText('Hana Hughes ended the meeting for everyone.').waitFor();
  // A join from a form opened before the end is told so…
  await newcomer.page.getByLabel('Your name').fill('Lee once more');
  await newcomer.page.getByRole('button', { name: 'Join meeting' }).click();
  await newcomer.page.getByRole('heading', { name: 'This meeting has ended' }).waitFor();
  // …and the link opened afresh offers no join form.
  await newcomer.page.reload();
  await newcomer.page.getByRole('heading', { name: 'This meeting has ended' }).waitFor();
  assert.equal(await newcomer.page.getByLabel('Your name').isVisible(), false);
});

// Dutch and Swedish in real Chromium (issue 17, Languages): the language comes
// from the browser's, or from the picker, and the picker's choice is kept for
// the browser; the home page, the created meeting, the join page, the lobby,
// the meeting and the check page read in that language, refusals from the
// server are told by their code in it, and axe finds nothing on any of them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchPerson, until, axe } from './harness.mjs';

let server;
const people = [];

before(async () => {
  server = await startServer();
});

after(async () => {
  for (const p of people) await p.browser.close().catch(() => {});
  server?.stop();
});

async function person(options) {
  const p = await launchPerson(options);
  people.push(p);
  return p;
}

/**
 * English words that show a page was left partly untranslated. Names, titles,
 * levels and addresses in these tests have none of them.
 */
const ENGLISH = /\b(the|this|not|no|and|you|your|meeting|join|with|please|people|settings|leave|mute|camera off|share screen|sign in|create|check|waiting)\b/i;

/** Lines of the page's visible text that read as English (device names from the fake devices aside). */
async function englishLines(page) {
  const text = await page.evaluate(() => document.body.innerText);
  return text.split('\n').map((l) => l.trim()).filter((l) => l && ENGLISH.test(l) && !/^fake|default/i.test(l));
}

async function lang(page) {
  return page.evaluate(() => document.documentElement.lang);
}

test('Dutch from the browser: home, a created meeting, joining as host, the meeting and its panels', async () => {
  const host = await person({ locale: 'nl-NL' });
  const { page } = host;
  await page.goto(server.url);
  await page.getByRole('button', { name: 'Vergadering aanmaken' }).waitFor();
  assert.equal(await lang(page), 'nl');
  assert.equal(await page.getByLabel('Taal').inputValue(), 'nl', 'the picker shows the language in use');
  assert.deepEqual(await englishLines(page), [], 'English on the home page');
  assert.deepEqual(await axe(page), [], 'axe on the Dutch home page');

  await page.getByLabel('Onderwerp van de vergadering').fill('Overleg over de begroting');
  await page.getByLabel('Toegangscode (niet verplicht)').fill('tulpen 4711');
  await page.getByText('Wachtruimte: deelnemers wachten tot een organisator hen toelaat').click();
  await page.getByRole('button', { name: 'Vergadering aanmaken' }).click();
  await page.getByRole('heading', { name: 'Uw vergadering staat klaar' }).waitFor();
  await page.getByRole('heading', { name: 'Uitnodiging' }).waitFor();
  const invitation = await page.getByLabel('Uitnodiging om te versturen').inputValue();
  assert.ok(invitation.includes('Deelnemen aan de vergadering: '), invitation);
  assert.ok(invitation.includes('Voor deze vergadering is een toegangscode nodig.'), invitation);
  assert.ok(!invitation.includes('tulpen'), 'no passcode in the invitation');
  const link = await page.getByLabel('Deelnamelink').inputValue();
  const hostLink = await page.getByLabel('Uw organisatorlink').inputValue();
  assert.deepEqual(await englishLines(page), [], 'English on the created meeting');
  assert.deepEqual(await axe(page), [], 'axe with the meeting created');

  // The join page, as host.
  await page.goto(hostLink);
  await page.getByText('U neemt deel als organisator.').waitFor();
  await page.waitForFunction(() => /** @type {HTMLVideoElement} */ (document.getElementById('preview'))?.videoWidth > 0);
  assert.equal(await lang(page), 'nl');
  assert.deepEqual(await englishLines(page), [], 'English on the join page');
  assert.deepEqual(await axe(page), [], 'axe on the Dutch join page');
  await page.getByLabel('Uw naam').fill('Hanneke');
  await page.getByRole('button', { name: 'Deelnemen', exact: true }).click();
  await page.locator('#meeting').waitFor({ state: 'visible' });
  for (const name of ['Dempen', 'Camera uitzetten', 'Scherm delen', 'Deelnemers', 'Chat', 'Verlaten', 'Instellingen', 'Uitnodigen', 'Vergadering vergrendelen']) {
    await page.getByRole('button', { name, exact: true }).waitFor();
  }

  // A Swedish guest: a wrong passcode is refused in Swedish, then the lobby is Swedish too.
  const guest = await person({ locale: 'sv-SE' });
  await guest.page.goto(link);
  await guest.page.getByLabel('Ditt namn').fill('Sven');
  await guest.page.getByLabel('Mötets lösenkod').fill('fel kod');
  await guest.page.waitForFunction(() => /** @type {HTMLVideoElement} */ (document.getElementById('preview'))?.videoWidth > 0);
  assert.equal(await lang(guest.page), 'sv');
  assert.deepEqual(await englishLines(guest.page), [], 'English on the Swedish join page');
  assert.deepEqual(await axe(guest.page), [], 'axe on the Swedish join page');
  await guest.page.getByRole('button', { name: 'Delta i mötet' }).click();
  await guest.page.getByText('Lösenkoden stämmer inte.').waitFor();
  await guest.page.getByLabel('Mötets lösenkod').fill('tulpen 4711');
  await guest.page.getByRole('button', { name: 'Delta i mötet' }).click();
  await guest.page.getByRole('heading', { name: 'Du väntar på att bli insläppt' }).waitFor();
  await guest.page.getByText('En värd släpper snart in dig.').waitFor();
  assert.deepEqual(await englishLines(guest.page), [], 'English in the Swedish lobby');
  assert.deepEqual(await axe(guest.page), [], 'axe in the Swedish lobby');

  // The host admits from the lobby panel, in Dutch.
  await page.getByRole('heading', { name: 'In de wachtruimte (1)' }).waitFor();
  await page.getByText('1 persoon in de wachtruimte').waitFor();
  assert.deepEqual(await englishLines(page), [], 'English with someone in the lobby');
  await page.getByRole('button', { name: 'Sven toelaten' }).click();
  await guest.page.locator('#meeting').waitFor({ state: 'visible' });
  for (const name of ['Stäng av ljud', 'Stäng av kamera', 'Dela skärm', 'Deltagare', 'Chatt', 'Lämna']) {
    await guest.page.getByRole('button', { name, exact: true }).waitFor();
  }

  // People and chat, in each language; the time is written the language's way.
  await page.getByRole('button', { name: 'Deelnemers', exact: true }).click();
  await page.getByRole('heading', { name: 'Deelnemers (2)' }).waitFor();
  await page.getByRole('button', { name: 'Sven dempen' }).waitFor();
  await page.getByRole('combobox', { name: 'Rol van Sven' }).waitFor();
  await page.getByRole('button', { name: 'Chat', exact: true }).click();
  await page.getByLabel('Bericht').fill('Goedemorgen');
  await page.getByRole('button', { name: 'Versturen' }).click();
  await guest.page.getByRole('button', { name: /^Chatt/ }).getByText('1 nytt').waitFor();
  await guest.page.getByRole('button', { name: /^Chatt/ }).click();
  await guest.page.locator('#chat-log li', { hasText: 'Goedemorgen' }).waitFor();
  const time = await page.locator('#chat-log time').first().textContent();
  assert.match(time || '', /^\d{2}:\d{2}$/, 'a 24-hour time in Dutch');
  await page.getByText(/^De chat wordt (niet bewaard: alleen wie nu deelneemt, ziet de berichten|\d+ dagen? bewaard\. Wie later deelneemt, kan de chat lezen)\.$/).waitFor();
  await until('both tiles in each page', async () => (await page.locator('#grid .tile').count()) === 2 && (await guest.page.locator('#grid .tile').count()) === 2);
  assert.deepEqual(await englishLines(page), [], 'English in the Dutch meeting');
  assert.deepEqual(await englishLines(guest.page), [], 'English in the Swedish meeting');
  assert.deepEqual(await axe(page), [], 'axe in the Dutch meeting, People and Chat open');
  assert.deepEqual(await axe(guest.page), [], 'axe in the Swedish meeting, Chat open');

  // The host's dialogs.
  await page.getByRole('button', { name: 'Instellingen', exact: true }).click();
  await page.getByRole('heading', { name: 'Instellingen van de vergadering' }).waitFor();
  assert.deepEqual(await englishLines(page), [], 'English in the settings dialog');
  assert.deepEqual(await axe(page), [], 'axe with the settings dialog open');
  // Chat for hosts only: the guest is told why, in Swedish (the server's reason has no code: matched by its words).
  await page.getByLabel('Wie mag chatten').selectOption('hosts');
  await page.getByRole('button', { name: 'Instellingen opslaan' }).click();
  await guest.page.getByText('Du kan inte chatta: chatten är avstängd för dig i det här mötet.').waitFor();
  assert.deepEqual(await englishLines(guest.page), [], 'English in the Swedish meeting with chat off');
  // A host mutes the guest: said in Swedish, with the host's name.
  await page.getByRole('button', { name: 'Sven dempen' }).click();
  await guest.page.getByText('Hanneke stängde av ditt ljud.').waitFor();
  await guest.page.getByRole('button', { name: 'Slå på ljud', exact: true }).waitFor();
  await page.getByRole('button', { name: 'Sven verwijderen' }).click();
  await page.getByRole('heading', { name: 'Sven verwijderen?' }).waitFor();
  assert.deepEqual(await axe(page), [], 'axe with the remove dialog open');
  await page.getByRole('button', { name: 'Verwijderen', exact: true }).click();
  await guest.page.getByRole('heading', { name: 'En värd tog bort dig från mötet' }).waitFor();
  await guest.page.getByText('Hanneke tog bort dig från mötet.').waitFor();
  assert.deepEqual(await axe(guest.page), [], 'axe on the Swedish page after removal');
});

test('the picker changes the language, and the choice is kept after a reload and on other pages', async () => {
  const { page } = await person();
  await page.goto(server.url);
  await page.getByRole('button', { name: 'Create meeting' }).waitFor();
  assert.equal(await lang(page), 'en');
  await page.getByLabel('Language').selectOption('sv');
  await page.getByRole('button', { name: 'Skapa möte' }).waitFor();
  assert.equal(await lang(page), 'sv');
  assert.deepEqual(await englishLines(page), [], 'English on the Swedish home page');
  assert.deepEqual(await axe(page), [], 'axe on the Swedish home page');
  await page.reload();
  await page.getByRole('button', { name: 'Skapa möte' }).waitFor();
  assert.equal(await lang(page), 'sv', 'kept after a reload');

  // A level the settings fall short of: each requirement said in Swedish.
  await page.getByLabel('Mötets namn').fill('Planering');
  await page.getByLabel('Skyddsnivå', { exact: true }).selectOption('official-sensitive');
  await page.getByRole('button', { name: 'Skapa möte' }).click();
  await page.getByText('Mötet uppfyller inte kraven för sin skyddsnivå:').waitFor();
  await page.getByText('OFFICIAL-SENSITIVE kräver en lösenkod').waitFor();
  await page.getByText('OFFICIAL-SENSITIVE tillåter högst 50 deltagare').waitFor();
  assert.deepEqual(await englishLines(page), [], 'English in the refusal');
  assert.deepEqual(await axe(page), [], 'axe with the refusal shown');
  await page.getByLabel('Skyddsnivå', { exact: true }).selectOption('official');
  await page.getByRole('button', { name: 'Skapa möte' }).click();
  await page.getByRole('heading', { name: 'Ditt möte är klart' }).waitFor();
  const hostLink = await page.getByLabel('Din värdlänk').inputValue();
  assert.deepEqual(await englishLines(page), [], 'English on the Swedish created meeting');

  // The join page, in the kept language; there the picker turns it to Dutch.
  await page.goto(hostLink);
  await page.getByText('Du deltar som värd.').waitFor();
  await page.getByLabel('Språk').selectOption('nl');
  await page.getByText('U neemt deel als organisator.').waitFor();
  assert.equal(await lang(page), 'nl');
  await page.reload();
  await page.getByText('U neemt deel als organisator.').waitFor();
  await page.waitForFunction(() => /** @type {HTMLVideoElement} */ (document.getElementById('preview'))?.videoWidth > 0);
  await page.getByLabel('Uw naam').fill('Hanneke');
  await page.getByRole('button', { name: 'Deelnemen', exact: true }).click();
  await page.locator('#meeting').waitFor({ state: 'visible' });
  // Raising to a level that needs a passcode, in a meeting without one: refused, and said in Dutch.
  await page.getByLabel('Rubricering van de vergadering').selectOption('official-sensitive');
  await page.getByRole('button', { name: 'Rubricering wijzigen' }).click();
  await page.getByText('Niet mogelijk met deze rubricering: OFFICIAL-SENSITIVE vereist een toegangscode.').waitFor();
  await page.getByRole('button', { name: 'Dempen', exact: true }).click();
  await page.getByRole('button', { name: 'Dempen opheffen', exact: true }).waitFor();
  assert.deepEqual(await englishLines(page), [], 'English in the meeting');
  assert.deepEqual(await axe(page), [], 'axe in the Dutch meeting, alone');
  // Dutch words are longer: on a phone every control still fits the screen.
  await page.setViewportSize({ width: 390, height: 844 });
  await until('the page fits 390 px', async () => (await page.evaluate(() => document.documentElement.scrollWidth)) <= 390);
  const off = await page.$$eval('#host-controls button, #host-controls select, .controls button', (els) => els
    .filter((el) => /** @type {HTMLElement} */ (el).offsetParent !== null)
    .map((el) => ({ what: el.textContent?.trim(), ...el.getBoundingClientRect().toJSON() }))
    .filter((r) => r.left < 0 || r.right > 390));
  assert.deepEqual(off, [], 'Dutch controls off a 390 px screen');
  assert.deepEqual(await axe(page), [], 'axe in the Dutch meeting at 390 px');
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.getByRole('button', { name: 'Verlaten' }).click();
  await page.getByRole('heading', { name: 'U hebt de vergadering verlaten' }).waitFor();
  assert.deepEqual(await axe(page), [], 'axe on the Dutch page after leaving');

  // The check page and a meeting that does not exist, in the kept language.
  await page.goto(`${server.url}/check`);
  await page.getByRole('heading', { name: 'Test uw verbinding' }).waitFor();
  assert.equal(await lang(page), 'nl');
  await page.getByRole('button', { name: 'Test opnieuw uitvoeren' }).and(page.locator(':enabled')).waitFor({ timeout: 30000 });
  assert.deepEqual(await englishLines(page), [], 'English on the check page');
  assert.deepEqual(await axe(page), [], 'axe on the Dutch check page');
  await page.goto(`${server.url}/m/aaaa-bbbb-cccc`);
  await page.getByRole('heading', { name: 'Vergadering niet gevonden' }).waitFor();
  assert.deepEqual(await axe(page), [], 'axe on the Dutch not-found page');
  await page.getByLabel('Taal').selectOption('en');
  await page.getByRole('heading', { name: 'Meeting not found' }).waitFor();
  assert.equal(await lang(page), 'en', 'back to English');
});

// The pre-join screen: what the meeting is and requires, who you are, your
// camera and microphone (previewed, with a level meter), then Join.
import { t } from './i18n.js';
import { $, state, meetingId } from './meeting-state.js';
import { loadSession, renderSignIn, orgName } from './identity.js';
import { showRequirements } from './requirements.js';
import { showLevel } from './host.js';
import { getMedia, fillDevices, showPreview, chooseBeforeJoin } from './devices.js';
import { joinClicked } from './stage.js';
import { prepareE2ee } from './e2ee-meeting.js';
import { joinedWithoutDevices } from './webinar.js';

/** The meeting as /api/meetings says it (null: there is no such meeting; UNREACHABLE: not just now), asked once, at once. */
const UNREACHABLE = Object.freeze({ unreachable: true });
const meetingInfo = fetch(`/api/meetings/${meetingId}`)
  .then((res) => (res.ok ? res.json() : res.status === 404 ? null : UNREACHABLE))
  .catch(() => UNREACHABLE);
import { e2eeCapable } from './e2ee-support.js';

/**
 * The meeting as /api/meetings says it, on the pre-join screen.
 * @param {string | undefined} hostKey
 * @param {() => void} ended called when the meeting has ended (nothing to join)
 */
export async function loadMeeting(hostKey, ended) {
  const m = await meetingInfo;
  if (!m) { location.replace('/'); return; }
  if (m === UNREACHABLE) {
    // The server cannot reach the meeting just now (or did not answer): say
    // so and load the page again in a few seconds, its address (and any
    // host key or resume token in it) kept.
    $('join-error').textContent = t('meeting.unavailable');
    $('join-error').hidden = false;
    setTimeout(() => location.reload(), 3000 + Math.random() * 7000);
    return;
  }
  // On an edge of a large webinar (cascading), a host's page goes to the
  // meeting's own node, where the stage is (`stage`: not sent to an edge
  // again); the host key goes with it in the fragment, which no server sees.
  if (hostKey && typeof m.edgeOf === 'string') {
    const query = new URLSearchParams(location.search);
    query.set('stage', '1');
    location.replace(`${m.edgeOf}${location.pathname}?${query}#${new URLSearchParams({ host: hostKey })}`);
    return;
  }
  document.title = `${m.title} · Convene`;
  if (m.ended) {
    // Nothing to join: say so instead of showing the form.
    state.meetingOver = true;
    ended();
    return;
  }
  for (const el of document.querySelectorAll('.meeting-title')) el.textContent = m.title;
  if (m.settings?.e2ee && e2eeCapable()) prepareE2ee();
  showLevel(m.level);
  const hosted = t('common.hosted-by', { org: orgName(m.hostedBy), server: m.server });
  $('hosted-by').textContent = hosted;
  for (const el of document.querySelectorAll('.lobby-hosted')) el.textContent = hosted;
  const session = await loadSession();
  if (session.signIn.length || session.signedIn) {
    $('identity').hidden = false;
    renderSignIn(session, $('sign-in'), location.pathname);
  }
  if (session.signedIn && session.signedIn.level !== 'guest') {
    $('guest-note').hidden = true;
    $('name').value = session.signedIn.name || '';
    $('name').readOnly = true;
    $('name-hint').hidden = false;
  }
  // What the meeting requires, up front; no join as a guest where guests are not admitted.
  const mayTry = showRequirements($('requirements'), m, session, location.pathname);
  if (m.settings?.guestsAllowed === false) $('guest-note').hidden = true;
  $('join').disabled = !mayTry && !hostKey;
  const needPasscode = m.passcodeRequired && !hostKey;
  $('passcode-row').hidden = !needPasscode;
  $('passcode').required = needPasscode;
  $('host-note').hidden = !hostKey;
}

/**
 * @param {string | undefined} hostKey
 * @param {(name: string, credentials: {passcode?: string, hostKey?: string}) => void} enter
 * @param {{name: string, cameraOff: boolean, micOff: boolean} | null} resumeHere sent here
 *   from a node that was lost, to resume: the form is filled in as before and a note
 *   says why; the person clicks Join
 */
export function setupPrejoin(hostKey, enter, resumeHere = null) {
  $('name').value = localStorage.getItem('convene-name') || '';
  // Wire the form first: a quick click must not submit it natively. Joining waits
  // for the devices, so nobody joins without the camera they were shown.
  const mediaReady = (async () => {
    // A webinar's attendee watches and listens: no camera or microphone is
    // asked for unless a host brings them on stage (a host link is on stage).
    const m = await meetingInfo;
    if (m?.settings?.webinar && !hostKey) {
      $('prejoin-devices').hidden = true;
      $('preview-box').hidden = true;
      $('attendee-note').hidden = false;
      joinedWithoutDevices();
      return;
    }
    try {
      await getMedia();
      await fillDevices();
    } catch (e) {
      $('device-error').textContent = t('prejoin.device-error', { detail: e instanceof Error ? e.message : String(e) });
      $('device-error').hidden = false;
    }
  })();
  const choose = () => chooseBeforeJoin($('camera-select').value, $('mic-select').value).catch(() => {});
  $('camera-select').addEventListener('change', choose);
  $('mic-select').addEventListener('change', choose);
  $('join-camera-off').addEventListener('change', showPreview);
  if (resumeHere) {
    // Never joined without a click: a link anyone can make may carry a
    // fragment like this one. Joining, the resume token (now in this tab's
    // storage) brings the person back as who they were.
    $('join-camera-off').checked = resumeHere.cameraOff;
    $('join-mic-off').checked = resumeHere.micOff;
    if (resumeHere.name && !$('name').readOnly) $('name').value = resumeHere.name;
    $('moved-note').hidden = false;
  }
  $('join-form').addEventListener('submit', async (/** @type {Event} */ e) => {
    e.preventDefault();
    const name = $('name').value.trim();
    if (!name) return;
    localStorage.setItem('convene-name', name);
    joinClicked();
    $('join-error').hidden = true;
    await mediaReady;
    enter(name, { passcode: $('passcode').value || undefined, hostKey });
  });
}

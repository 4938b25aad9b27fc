// Self-test of the test OpenID Connect provider (provider.mjs): runs the whole
// authorization code + PKCE flow with plain fetch, as a relying party would.
// Run: node --test tests/oidc/selftest.mjs

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, createPublicKey, randomBytes, verify } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const PROVIDER = join(dirname(fileURLToPath(import.meta.url)), 'provider.mjs');
const CLIENT = { client_id: 'convene', client_secret: 's3cret', redirect_uri: 'http://127.0.0.1:5999/auth/callback' };
const USERS = [
  { username: 'alice', password: 'pw-alice', sub: 'alice-1', email: 'alice@home.example', email_verified: true, name: 'Alice Archer' },
  { username: 'bob', password: 'pw-bob', sub: 'bob-1', email: 'bob@home.example', email_verified: false, name: 'Bob Baker' },
];

const children = new Set();

// A free loopback port, picked by the kernel.
async function freePort() {
  const srv = createServer().listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

// Starts provider.mjs and waits for its {"ready":true,...} line.
/**
 * Start a provider and wait for its readiness line: up to 30 s (a first start
 * on a cold machine loads many files), killed and tried again on silence (a
 * start once sat idle, never listening, in a clean CI run).
 */
async function startProvider(port, keyId) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(port, keyId);
    } catch (err) {
      if (attempt >= 3 || !String(err.message).startsWith('provider not ready')) throw err;
      console.error(`${err.message}; trying again`);
    }
  }
}

async function startOnce(port, keyId) {
  const config = {
    port,
    keyId,
    clients: [{ client_id: CLIENT.client_id, client_secret: CLIENT.client_secret, redirect_uris: [CLIENT.redirect_uri] }],
    users: USERS,
  };
  const child = spawn(process.execPath, [PROVIDER], {
    env: { ...process.env, OIDC_CONFIG: JSON.stringify(config) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  child.on('exit', () => children.delete(child));
  const lines = createInterface({ input: child.stdout });
  // The first stdout line is the readiness line; exiting or silence is a failure.
  const ready = await new Promise((resolve, reject) => {
    const done = (fn, value) => {
      clearTimeout(timer);
      lines.off('line', onLine);
      child.off('exit', onExit);
      fn(value);
    };
    const onLine = (line) => { try { done(resolve, JSON.parse(line)); } catch (err) { done(reject, err); } };
    const onExit = (code) => done(reject, new Error(`provider exited (${code}): ${stderr}`));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      done(reject, new Error(`provider not ready: ${stderr}`));
    }, 30000);
    lines.on('line', onLine);
    child.on('exit', onExit);
  });
  assert.equal(ready.ready, true);
  return { child, ready };
}

async function stopProvider(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const [code] = await exited;
  assert.equal(code, 0, 'provider exits cleanly on SIGTERM');
}

// A tiny cookie jar: name -> value, for one host (paths ignored, which only
// means a few extra cookies are sent).
class Jar {
  cookies = new Map();

  store(res) {
    for (const header of res.headers.getSetCookie()) {
      const [pair, ...attrs] = header.split(';');
      const i = pair.indexOf('=');
      const name = pair.slice(0, i).trim();
      const value = pair.slice(i + 1).trim();
      const expires = attrs.find((a) => a.trim().toLowerCase().startsWith('expires='));
      if (!value || (expires && new Date(expires.split('=')[1]) < new Date())) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  header() {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

async function get(jar, url) {
  const res = await fetch(url, { redirect: 'manual', headers: { cookie: jar.header() } });
  jar.store(res);
  return res;
}

async function postForm(url, form, headers = {}) {
  return fetch(url, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form).toString(),
  });
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');

function decodeJwt(jwt) {
  const [h, p, s] = jwt.split('.');
  return { header: JSON.parse(Buffer.from(h, 'base64url')), payload: JSON.parse(Buffer.from(p, 'base64url')), signed: `${h}.${p}`, signature: Buffer.from(s, 'base64url') };
}

// Starts an authorization request and follows redirects to the login page.
// Returns what the relying party would keep (state, nonce, code_verifier).
async function beginLogin(meta, jar, { pkce = true } = {}) {
  const state = b64url(randomBytes(16));
  const nonce = b64url(randomBytes(16));
  const verifier = b64url(randomBytes(32));
  const url = new URL(meta.authorization_endpoint);
  url.search = new URLSearchParams({
    client_id: CLIENT.client_id,
    redirect_uri: CLIENT.redirect_uri,
    response_type: 'code',
    scope: 'openid email profile',
    state,
    nonce,
    ...(pkce ? { code_challenge: b64url(createHash('sha256').update(verifier).digest()), code_challenge_method: 'S256' } : {}),
  });
  const res = await get(jar, url);
  assert.equal(res.status, 303);
  return { location: new URL(res.headers.get('location'), meta.issuer), state, nonce, verifier };
}

async function login(meta, jar, login, { username, password, mfa }) {
  assert.match(login.location.pathname, /^\/interaction\/[\w-]+$/);
  const pageRes = await get(jar, login.location);
  assert.equal(pageRes.status, 200);
  const html = await pageRes.text();
  const action = /<form method="post" action="([^"]+)"/.exec(html)[1];
  const res = await fetch(new URL(action, meta.issuer), {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: jar.header() },
    body: new URLSearchParams({ username, password, ...(mfa ? { mfa: '1' } : {}) }).toString(),
  });
  jar.store(res);
  return { res, html, action };
}

// Follows the provider's redirects until it sends the browser back to the client.
async function followToCallback(meta, jar, res) {
  for (let hops = 0; hops < 5; hops += 1) {
    assert.ok([302, 303].includes(res.status), `redirect expected, got ${res.status}: ${await res.text()}`);
    const next = new URL(res.headers.get('location'), meta.issuer);
    if (next.href.startsWith(CLIENT.redirect_uri)) return next.searchParams;
    res = await get(jar, next);
  }
  throw new Error('too many redirects');
}

async function exchange(meta, code, verifier, { auth = 'basic' } = {}) {
  const form = { grant_type: 'authorization_code', code, redirect_uri: CLIENT.redirect_uri, code_verifier: verifier };
  const headers = {};
  if (auth === 'basic') {
    headers.authorization = `Basic ${Buffer.from(`${CLIENT.client_id}:${CLIENT.client_secret}`).toString('base64')}`;
  } else {
    Object.assign(form, { client_id: CLIENT.client_id, client_secret: CLIENT.client_secret });
  }
  const res = await postForm(meta.token_endpoint, form, headers);
  return { status: res.status, body: await res.json() };
}

// The full flow for one user: returns the callback params and the token response.
async function fullFlow(meta, user, { mfa, auth }) {
  const jar = new Jar();
  const begun = await beginLogin(meta, jar);
  const { res } = await login(meta, jar, begun, { username: user.username, password: user.password, mfa });
  const params = await followToCallback(meta, jar, res);
  assert.equal(params.get('state'), begun.state);
  assert.equal(params.get('iss'), meta.issuer);
  const code = params.get('code');
  assert.ok(code);
  const token = await exchange(meta, code, begun.verifier, { auth });
  return { begun, code, token };
}

after(async () => {
  // Whatever happened, leave no provider behind.
  for (const child of children) child.kill('SIGKILL');
});

describe('test OIDC provider', () => {
  let port;
  let provider;
  let meta;
  let jwks;

  before(async () => {
    port = await freePort();
    provider = await startProvider(port, 'home-1');
    meta = await (await fetch(`http://127.0.0.1:${port}/.well-known/openid-configuration`)).json();
    jwks = await (await fetch(meta.jwks_uri)).json();
  });

  after(async () => { await stopProvider(provider.child); });

  test('announces readiness and discovery', () => {
    assert.deepEqual(provider.ready, { ready: true, issuer: `http://127.0.0.1:${port}`, kid: 'home-1' });
    assert.equal(meta.issuer, `http://127.0.0.1:${port}`);
    assert.deepEqual(meta.code_challenge_methods_supported, ['S256']);
    assert.ok(meta.token_endpoint_auth_methods_supported.includes('client_secret_basic'));
    assert.ok(meta.token_endpoint_auth_methods_supported.includes('client_secret_post'));
    assert.deepEqual(jwks.keys.map((k) => k.kid), ['home-1']);
    assert.equal(jwks.keys[0].alg, 'RS256');
    assert.equal(jwks.keys[0].d, undefined, 'no private key material in the JWKS');
  });

  test('login page is a plain accessible form', async () => {
    const jar = new Jar();
    const begun = await beginLogin(meta, jar);
    const res = await get(jar, begun.location);
    const html = await res.text();
    assert.match(html, /<html lang="en">/);
    assert.match(html, /<title>[^<]+<\/title>/);
    assert.match(html, /<label for="username">Username<\/label>/);
    assert.match(html, /<input id="username" name="username"/);
    assert.match(html, /<label for="password">Password<\/label>/);
    assert.match(html, /<input id="password" name="password" type="password"/);
    assert.match(html, /<input id="mfa" name="mfa" type="checkbox" value="1">/);
    assert.match(html, /<label for="mfa">Use my security key<\/label>/);
    assert.match(html, /<button type="submit">Sign in<\/button>/);
    assert.match(html, new RegExp(`action="${begun.location.pathname}/login"`));
  });

  test('password + security key: ID token has claims, nonce, amr pwd+hwk and the mfa acr', async () => {
    const [alice] = USERS;
    const { begun, token } = await fullFlow(meta, alice, { mfa: true, auth: 'basic' });
    assert.equal(token.status, 200, JSON.stringify(token.body));
    assert.equal(token.body.token_type, 'Bearer');
    const { header, payload, signed, signature } = decodeJwt(token.body.id_token);
    assert.equal(header.alg, 'RS256');
    assert.equal(header.kid, 'home-1');
    const key = createPublicKey({ key: jwks.keys.find((k) => k.kid === header.kid), format: 'jwk' });
    assert.ok(verify('sha256', Buffer.from(signed), key, signature), 'ID token signature verifies with the JWKS key');
    assert.equal(payload.iss, meta.issuer);
    assert.equal(payload.aud, CLIENT.client_id);
    assert.equal(payload.sub, 'alice-1');
    assert.equal(payload.nonce, begun.nonce);
    assert.equal(payload.email, 'alice@home.example');
    assert.equal(payload.email_verified, true);
    assert.equal(payload.name, 'Alice Archer');
    assert.deepEqual(payload.amr, ['pwd', 'hwk']);
    assert.equal(payload.acr, 'urn:convene:test:mfa');
    assert.ok(payload.exp - payload.iat <= 600);
  });

  test('password only (client_secret_post): amr pwd and the pwd acr', async () => {
    const [, bob] = USERS;
    const { begun, token } = await fullFlow(meta, bob, { mfa: false, auth: 'post' });
    assert.equal(token.status, 200, JSON.stringify(token.body));
    const { payload } = decodeJwt(token.body.id_token);
    assert.equal(payload.sub, 'bob-1');
    assert.equal(payload.nonce, begun.nonce);
    assert.equal(payload.email, 'bob@home.example');
    assert.equal(payload.email_verified, false);
    assert.equal(payload.name, 'Bob Baker');
    assert.deepEqual(payload.amr, ['pwd']);
    assert.equal(payload.acr, 'urn:convene:test:pwd');
  });

  test('a wrong password shows the error and the form again', async () => {
    const jar = new Jar();
    const begun = await beginLogin(meta, jar);
    const { res } = await login(meta, jar, begun, { username: 'alice', password: 'nope' });
    assert.equal(res.status, 200);
    const html = await res.text();
    assert.match(html, /role="alert"[^>]*>Wrong username or password</);
    assert.match(html, /name="password" type="password"/);
    // The same interaction still accepts the right password afterwards.
    const retry = await login(meta, jar, begun, { username: 'alice', password: 'pw-alice' });
    const params = await followToCallback(meta, jar, retry.res);
    assert.ok(params.get('code'));
  });

  test('an authorization code works only once', async () => {
    const { code, begun, token } = await fullFlow(meta, USERS[0], { mfa: false, auth: 'basic' });
    assert.equal(token.status, 200);
    const again = await exchange(meta, code, begun.verifier);
    assert.equal(again.status, 400);
    assert.equal(again.body.error, 'invalid_grant');
  });

  test('a wrong code_verifier is refused', async () => {
    const jar = new Jar();
    const begun = await beginLogin(meta, jar);
    const { res } = await login(meta, jar, begun, { username: 'alice', password: 'pw-alice' });
    const params = await followToCallback(meta, jar, res);
    const wrong = await exchange(meta, params.get('code'), b64url(randomBytes(32)));
    assert.equal(wrong.status, 400);
    assert.equal(wrong.body.error, 'invalid_grant');
  });

  test('PKCE is required even for a confidential client', async () => {
    const jar = new Jar();
    const begun = await beginLogin(meta, jar, { pkce: false });
    assert.ok(begun.location.href.startsWith(CLIENT.redirect_uri), begun.location.href);
    assert.equal(begun.location.searchParams.get('error'), 'invalid_request');
    assert.match(begun.location.searchParams.get('error_description'), /PKCE/);
  });

  test('restart with another keyId rotates the signing key', async () => {
    await stopProvider(provider.child);
    provider = await startProvider(port, 'home-2');
    assert.equal(provider.ready.kid, 'home-2');
    const rotated = await (await fetch(meta.jwks_uri)).json();
    assert.deepEqual(rotated.keys.map((k) => k.kid), ['home-2']);
    assert.notEqual(rotated.keys[0].n, jwks.keys[0].n);
    const { token } = await fullFlow(meta, USERS[0], { mfa: true, auth: 'basic' });
    assert.equal(decodeJwt(token.body.id_token).header.kid, 'home-2');
  });
});

// A small, real OpenID Connect provider for Convene's tests, built on the
// certified `oidc-provider` package. One process = one provider instance, so
// tests can run a "home organisation" and some "partner organisations" side by
// side on loopback ports.
//
// Configuration is JSON in the OIDC_CONFIG environment variable:
//   {
//     "port": 4011,                        // listens on 127.0.0.1:<port> only
//     "issuer": "http://127.0.0.1:4011",   // optional, this is the default
//     "keyId": "home-1",                   // kid of a fresh RS256 signing key
//     "clients": [{"client_id": "convene", "client_secret": "s3cret",
//                  "redirect_uris": ["http://127.0.0.1:5000/auth/callback"]}],
//     "users": [{"username": "alice", "password": "pw", "sub": "alice-1",
//                "email": "alice@home.example", "email_verified": true,
//                "name": "Alice Archer"}]
//   }
// When it listens it prints one JSON line on stdout:
//   {"ready":true,"issuer":"http://127.0.0.1:4011","kid":"home-1"}
// Everything else (oidc-provider's notices included) goes to stderr.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import Provider from 'oidc-provider';

// stdout carries only the readiness line; oidc-provider prints its development
// notices with console.info, so send those (and any console.log) to stderr.
console.log = console.error;
console.info = console.error;

const config = JSON.parse(process.env.OIDC_CONFIG ?? '{}');
const port = Number(config.port);
if (!Number.isInteger(port) || port <= 0) {
  console.error('OIDC_CONFIG.port must be a positive integer');
  process.exit(2);
}
const issuer = config.issuer ?? `http://127.0.0.1:${port}`;
const kid = config.keyId ?? 'key-1';
const users = config.users ?? [];

const ACR_PWD = 'urn:convene:test:pwd';
const ACR_MFA = 'urn:convene:test:mfa';

// A new key on every start: restarting with another keyId is a key rotation.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };

// Confidential clients (with a secret) may use client_secret_basic or
// client_secret_post: oidc-provider accepts either one for a client registered
// with one of them. Clients without a secret are public ("none").
const clients = (config.clients ?? []).map((c) => ({
  grant_types: ['authorization_code'],
  response_types: ['code'],
  token_endpoint_auth_method: c.client_secret ? 'client_secret_basic' : 'none',
  ...c,
}));

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [signingKey] },
  // Cookies are signed; random keys are fine for a throwaway test provider.
  // No `secure` override is needed: oidc-provider only marks cookies Secure
  // when the request itself came over https.
  cookies: { keys: [randomBytes(32).toString('hex')] },
  // Only what Convene uses: the authorization code flow, secret-based client
  // authentication (or none for public clients).
  responseTypes: ['code'],
  clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'none'],
  pkce: { required: () => true }, // every client, confidential ones too (S256 only in v9)
  acrValues: [ACR_PWD, ACR_MFA],
  // acr and amr sit in the openid scope so they always reach the ID token,
  // not only when a client asks for them with the claims/acr_values params.
  claims: {
    openid: ['sub', 'acr', 'amr', 'auth_time'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  // Put the scoped claims (email, name) into the ID token itself instead of
  // only into the userinfo response.
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: false }, // our own login page below
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  // No consent screen: grant whatever OIDC scopes and claims the client asks
  // for, so the only interaction ever is login.
  async loadExistingGrant(ctx) {
    const { oidc } = ctx;
    const { Grant } = oidc.provider;
    const grantId = oidc.session.grantIdFor(oidc.client.clientId);
    let grant = grantId ? await Grant.find(grantId) : undefined;
    if (!grant || grant.accountId !== oidc.session.accountId) {
      grant = new Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
    }
    grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
    grant.addOIDCClaims([...oidc.requestParamClaims]);
    await grant.save();
    return grant;
  },
  async findAccount(ctx, sub) {
    const user = users.find((u) => u.sub === sub);
    if (!user) return undefined;
    return {
      accountId: sub,
      // oidc-provider filters these down to what the granted scopes allow.
      async claims() {
        return { sub, email: user.email, email_verified: user.email_verified, name: user.name };
      },
    };
  },
  ttl: {
    AccessToken: 600,
    AuthorizationCode: 60,
    IdToken: 600,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
  },
  // Server-side clients only; no browser needs CORS on client endpoints.
  clientBasedCORS: () => false,
  async renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = page('Sign-in error', `<h1>Sign-in error</h1><p role="alert">${escape(out.error)}: ${escape(out.error_description ?? '')}</p>`);
  },
});

provider.on('server_error', (ctx, err) => console.error('server_error', err));

function escape(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escape(title)}</title></head>
<body><main>${body}</main></body>
</html>`;
}

function loginPage(uid, { username = '', error } = {}) {
  return page(`Sign in – ${issuer}`, `
<h1>Sign in</h1>
<p>Test identity provider at ${escape(issuer)}</p>
${error ? `<p role="alert" id="error">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
  <p><label for="username">Username</label>
     <input id="username" name="username" autocomplete="username" required value="${escape(username)}"${error ? ' aria-describedby="error"' : ''}></p>
  <p><label for="password">Password</label>
     <input id="password" name="password" type="password" autocomplete="current-password" required></p>
  <p><input id="mfa" name="mfa" type="checkbox" value="1">
     <label for="mfa">Use my security key</label></p>
  <p><button type="submit">Sign in</button></p>
</form>`);
}

function send(res, status, html) {
  res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(html);
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 64 * 1024) throw new Error('form too large');
  }
  return new URLSearchParams(body);
}

// The login interaction: GET shows the form, POST checks it. Everything else
// goes to oidc-provider (a Koa app).
async function interaction(req, res, uid, action) {
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    // No or expired interaction cookie: the flow has to start over at the client.
    return send(res, 400, page('Sign-in expired', `<h1>Sign-in expired</h1><p role="alert">${escape(err.error_description ?? err.message)}</p>`));
  }
  if (details.uid !== uid || details.prompt.name !== 'login') {
    return send(res, 400, page('Unexpected interaction', '<h1>Unexpected interaction</h1>'));
  }
  if (req.method === 'GET' && action === undefined) {
    return send(res, 200, loginPage(uid));
  }
  if (req.method === 'POST' && action === 'login') {
    const form = await readForm(req);
    const username = form.get('username') ?? '';
    const user = users.find((u) => u.username === username && u.password === form.get('password'));
    if (!user) {
      return send(res, 200, loginPage(uid, { username, error: 'Wrong username or password' }));
    }
    const mfa = form.get('mfa') === '1';
    return provider.interactionFinished(req, res, {
      login: {
        accountId: user.sub,
        amr: mfa ? ['pwd', 'hwk'] : ['pwd'],
        acr: mfa ? ACR_MFA : ACR_PWD,
      },
    }, { mergeWithLastSubmission: false });
  }
  return send(res, 405, page('Method not allowed', '<h1>Method not allowed</h1>'));
}

const providerCallback = provider.callback();
const server = createServer((req, res) => {
  const m = /^\/interaction\/([\w-]+)(?:\/(\w+))?\/?$/.exec(new URL(req.url, issuer).pathname);
  if (!m) return providerCallback(req, res);
  interaction(req, res, m[1], m[2]).catch((err) => {
    console.error('interaction error', err);
    if (!res.headersSent) send(res, 500, page('Error', '<h1>Internal error</h1>'));
    else res.end();
  });
});

server.on('error', (err) => {
  console.error('listen error', err);
  process.exit(1);
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ ready: true, issuer, kid })}\n`);
});

function stop() {
  server.close(() => process.exit(0));
  server.closeAllConnections(); // keep-alive sockets would hold close() open
  setTimeout(() => process.exit(0), 2000).unref(); // never hang a test's teardown
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

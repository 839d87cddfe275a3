// A real OpenID Connect provider for Parley's SSO tests: node's oidc-provider (OpenID
// Certified), with its own login and consent pages, one client registered for Parley, people
// with groups, and signing keys that rotate while it runs.
//
// Environment: PORT (0 picks a free one), CLIENT_ID, CLIENT_SECRET, REDIRECT_URIS (comma
// separated), USERS (JSON: {"login": {"email": ..., "name": ..., "groups": [...]}}).
// Prints one JSON line {"issuer": ...} on stdout once it listens.
//
// Test controls (this provider only, under /__test__/, JSON bodies):
//   POST /__test__/users      replace the people (the same shape as USERS)
//   POST /__test__/rotate     {"retire_previous": bool}: a new signing key, published first
//                             and used from now on; the previous ones stay published unless
//                             retired
//   POST /__test__/misbehave  {"mode": "wrong_issuer" | "wrong_audience" | "wrong_nonce" |
//                             "expired" | "unknown_key" | null}: the token endpoint's next ID
//                             tokens are re-signed with the provider's own key but that one
//                             claim wrong (or, for unknown_key, with a key it never published)
//   POST /__test__/hold       {"path": "/token" | "/jwks" | "/me" | ... | null}: requests to
//                             that path wait, unanswered, until held again with null (a slow
//                             provider, for as long as a test needs); every control answers
//                             {"held": n}, how many requests wait now
import http from 'node:http';

import * as jose from 'jose';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT || 0);
const clientId = process.env.CLIENT_ID || 'parley';
const clientSecret = process.env.CLIENT_SECRET || 'parley-test-secret';
const redirectUris = (process.env.REDIRECT_URIS || '').split(',').filter(Boolean);
let users = JSON.parse(process.env.USERS || '{}');
let misbehaviour = null;
let holdPath = null;
let held = []; // the release of each request waiting on holdPath

let keyNumber = 0;
async function newSigningKey() {
  keyNumber += 1;
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  const jwk = await jose.exportJWK(privateKey);
  return { ...jwk, kid: `key-${keyNumber}-${Date.now()}`, alg: 'RS256', use: 'sig' };
}

let signingKeys = [await newSigningKey()];

function configuration() {
  return {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: redirectUris,
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_post',
      },
    ],
    // PKCE on every authorization request, whatever the client: Parley must send it.
    pkce: { required: () => true },
    jwks: { keys: signingKeys },
    scopes: ['openid', 'email', 'profile', 'groups'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    async findAccount(_ctx, id) {
      const person = users[id];
      if (!person) return undefined;
      return {
        accountId: id,
        // Read at userinfo time, so a change of groups shows at the next sign-in.
        async claims() {
          const now = users[id] || person;
          return {
            sub: id,
            email: now.email,
            email_verified: now.email_verified ?? true,
            name: now.name || id,
            groups: now.groups || [],
          };
        },
      };
    },
    features: { devInteractions: { enabled: true } },
    cookies: { keys: ['parley-test-provider-cookie-key'] },
    ttl: { IdToken: 3600, AccessToken: 3600, Session: 3600, Interaction: 600, Grant: 3600 },
  };
}

function mangle(claims) {
  const now = Math.floor(Date.now() / 1000);
  switch (misbehaviour) {
    case 'wrong_issuer':
      return { ...claims, iss: 'https://impostor.example' };
    case 'wrong_audience':
      return { ...claims, aud: 'some-other-client' };
    case 'wrong_nonce':
      return { ...claims, nonce: 'not-the-nonce-parley-sent' };
    case 'expired':
      return { ...claims, iat: now - 7200, exp: now - 3600 };
    default:
      return claims;
  }
}

function build() {
  const provider = new Provider(`http://127.0.0.1:${server.address().port}`, configuration());
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path === '/token' && misbehaviour && ctx.body?.id_token) {
      const claims = mangle(jose.decodeJwt(ctx.body.id_token));
      // "unknown_key": signed by a key the provider never published.
      const [current] = misbehaviour === 'unknown_key' ? [await newSigningKey()] : signingKeys;
      const key = await jose.importJWK(current, 'RS256');
      ctx.body = {
        ...ctx.body,
        id_token: await new jose.SignJWT(claims)
          .setProtectedHeader({ alg: 'RS256', kid: current.kid, typ: 'JWT' })
          .sign(key),
      };
    }
  });
  return provider;
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : {};
}

let handler;
const server = http.createServer(async (req, res) => {
  if (req.url.startsWith('/__test__/') && req.method === 'POST') {
    const body = await readJson(req);
    if (req.url === '/__test__/users') users = body;
    else if (req.url === '/__test__/misbehave') misbehaviour = body.mode || null;
    else if (req.url === '/__test__/hold') {
      holdPath = body.path || null;
      if (!holdPath) {
        const waiting = held;
        held = [];
        for (const release of waiting) release();
      }
    } else if (req.url === '/__test__/rotate') {
      const fresh = await newSigningKey();
      signingKeys = body.retire_previous ? [fresh] : [fresh, ...signingKeys];
      // A new Provider with the new key set; grants and sessions live in the memory adapter,
      // which every instance shares.
      handler = build().callback();
    } else if (req.url !== '/__test__/held') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({ kids: signingKeys.map((key) => key.kid), misbehaviour, held: held.length }),
    );
    return;
  }
  if (holdPath && req.url.split('?')[0] === holdPath) {
    await new Promise((release) => held.push(release));
  }
  handler(req, res);
});

server.listen(port, '127.0.0.1', () => {
  handler = build().callback();
  process.stdout.write(`${JSON.stringify({ issuer: `http://127.0.0.1:${server.address().port}` })}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { SignJWT, createRemoteJWKSet, decodeJwt, generateKeyPair, jwtVerify } from 'jose';

import {
  Browser, M2M, WEB, authorize, baseConfig, exchangeCode, getJson, machineToken, startIdp, tokenRequest,
} from '../test-support/harness.mjs';

let idp;
let token;
before(async () => {
  idp = await startIdp(baseConfig({ managementApi: { pageSize: 2, retryAfter: 3 } }));
});
after(async () => { await idp?.stop(); });

const roles = (id, query = '', bearer = token) => getJson(
  idp.url(`/api/v2/users/${id}/roles${query}`),
  bearer ? { authorization: `Bearer ${bearer}` } : {},
);
const stats = async () => (await getJson(idp.url('/__test/stats'))).body;

describe('client credentials with Auth0\'s audience parameter', () => {
  test('yields an RS256 JWT for the Management API audience', async () => {
    const res = await machineToken(idp);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.token_type, 'Bearer');
    assert.equal(typeof res.body.expires_in, 'number');
    assert.ok(res.body.expires_in > 0);
    token = res.body.access_token;
    const jwks = createRemoteJWKSet(new URL(idp.url('/.well-known/jwks.json')));
    const { payload, protectedHeader } = await jwtVerify(token, jwks, {
      issuer: idp.issuer, audience: idp.url('/api/v2/'), algorithms: ['RS256'],
    });
    assert.equal(protectedHeader.alg, 'RS256');
    assert.equal(payload.aud, `${idp.issuer}api/v2/`);
    assert.equal(payload.client_id, M2M.client_id);
    assert.deepEqual(payload.scope.split(' ').sort(), ['read:roles', 'read:users']);
    assert.equal(payload.gty, 'client-credentials');
  });

  test('works with client_secret_basic too', async () => {
    const res = await tokenRequest(idp, { grant_type: 'client_credentials', audience: idp.url('/api/v2/') }, { basic: M2M });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(decodeJwt(res.body.access_token).aud, idp.url('/api/v2/'));
  });

  test('an unknown or missing audience is refused as Auth0 does', async () => {
    const unknown = await machineToken(idp, { audience: 'https://elsewhere.test/api/' });
    assert.equal(unknown.status, 403);
    assert.equal(unknown.body.error, 'access_denied');
    const missing = await machineToken(idp, { audience: '' });
    assert.equal(missing.status, 403);
    assert.equal(missing.body.error, 'access_denied');
  });

  test('a wrong secret or a web client gets no token', async () => {
    const wrong = await machineToken(idp, { client_secret: 'nope' });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.error, 'invalid_client');
    const web = await machineToken(idp, { client_id: WEB.client_id, client_secret: WEB.client_secret });
    assert.equal(web.status, 400);
    assert.match(web.body.error_description, /grant type is not allowed/);
  });
});

describe('GET /api/v2/users/{id}/roles', () => {
  test('returns Auth0-shaped roles of a URL-encoded user id, paginated', async () => {
    const first = await roles('auth0%7Calice', '?per_page=2&page=0');
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.deepEqual(first.body, [
      { id: 'rol_A', name: 'admin', description: 'admin role' },
      { id: 'rol_E', name: 'editor', description: 'editor role' },
    ]);
    const second = await roles('auth0%7Calice', '?per_page=2&page=1');
    assert.deepEqual(second.body.map((r) => r.name), ['viewer']);
    const third = await roles('auth0%7Calice', '?per_page=2&page=2');
    assert.deepEqual(third.body, []);
  });

  test('include_totals=true wraps the page with start, limit and total', async () => {
    const res = await roles('auth0%7Calice', '?include_totals=true&per_page=1&page=2');
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, {
      roles: [{ id: 'rol_V', name: 'viewer', description: 'viewer role' }], start: 2, limit: 1, total: 3,
    });
  });

  test('per_page defaults to the configured pageSize', async () => {
    const res = await roles('auth0%7Calice', '?include_totals=true');
    assert.equal(res.body.limit, 2);
    assert.equal(res.body.roles.length, 2);
  });

  test('bad pagination parameters are a 400', async () => {
    assert.equal((await roles('auth0%7Calice', '?per_page=0')).status, 400);
    assert.equal((await roles('auth0%7Calice', '?page=-1')).status, 400);
    assert.equal((await roles('auth0%7Calice', '?per_page=101')).status, 400);
  });

  test('an unknown user is a 404 JSON error', async () => {
    const res = await roles('auth0%7Cnobody');
    assert.equal(res.status, 404);
    assert.equal(res.body.statusCode, 404);
    assert.match(res.headers.get('content-type'), /json/);
  });

  test('no token, a forged or edited token, or garbage is a 401', async () => {
    assert.equal((await roles('auth0%7Calice', '', null)).status, 401);

    const { privateKey } = await generateKeyPair('RS256');
    const { kid } = (await getJson(idp.url('/.well-known/jwks.json'))).body.keys[0];
    const forged = await new SignJWT({ scope: 'read:users read:roles', client_id: M2M.client_id })
      .setProtectedHeader({ alg: 'RS256', kid, typ: 'at+jwt' })
      .setIssuer(idp.issuer).setAudience(idp.url('/api/v2/')).setSubject(M2M.client_id)
      .setIssuedAt().setExpirationTime('5m')
      .sign(privateKey);
    const res = await roles('auth0%7Calice', '', forged);
    assert.equal(res.status, 401);
    assert.equal(res.body.statusCode, 401);

    const [, payload, signature] = token.split('.');
    const tampered = JSON.parse(Buffer.from(payload, 'base64url'));
    tampered.scope += ' update:users';
    const edited = `${token.split('.')[0]}.${Buffer.from(JSON.stringify(tampered)).toString('base64url')}.${signature}`;
    assert.equal((await roles('auth0%7Calice', '', edited)).status, 401);

    assert.equal((await roles('auth0%7Calice', '', 'not-a-jwt')).status, 401);
  });

  test('a token the IdP signed for another audience (an ID token) is a 401', async () => {
    const flow = await authorize(idp, new Browser(), { scope: 'openid' });
    const { body } = await exchangeCode(idp, flow);
    assert.equal(decodeJwt(body.id_token).aud, WEB.client_id);
    const res = await roles('auth0%7Calice', '', body.id_token);
    assert.equal(res.status, 401);
    assert.match(idp.stderr(), /"aud"/, 'the reason is logged');
  });

  test('a token without read:roles is a 403', async () => {
    const narrow = await machineToken(idp, { scope: 'read:users' });
    assert.equal(narrow.status, 200, JSON.stringify(narrow.body));
    assert.equal(decodeJwt(narrow.body.access_token).scope, 'read:users');
    const res = await roles('auth0%7Calice', '', narrow.body.access_token);
    assert.equal(res.status, 403);
  });

  test('an unencoded | in the id works as well', async () => {
    const res = await roles('auth0|bob');
    assert.equal(res.status, 200);
    assert.deepEqual(res.body.map((r) => r.name), ['viewer']);
  });

  test('an expired token is a 401', async () => {
    const short = await startIdp(baseConfig({ accessTokenTTL: 1 }));
    try {
      const res = await machineToken(short);
      assert.equal(res.body.expires_in, 1);
      await new Promise((r) => { setTimeout(r, 2100); });
      const late = await getJson(short.url('/api/v2/users/auth0%7Calice/roles'), {
        authorization: `Bearer ${res.body.access_token}`,
      });
      assert.equal(late.status, 401);
      assert.match(late.body.message, /Expired/);
    } finally {
      await short.stop();
    }
  });

  test('a token for another IdP run (other keys) is a 401', async () => {
    const other = await startIdp();
    try {
      const res = await machineToken(other);
      assert.equal(res.status, 200);
      assert.equal((await roles('auth0%7Calice', '', res.body.access_token)).status, 401);
    } finally {
      await other.stop();
    }
  });
});

describe('test controls', () => {
  test('/__test/stats counts token and roles requests, /__test/reset zeroes them', async () => {
    await fetch(idp.url('/__test/reset'), { method: 'POST' });
    const zero = await stats();
    assert.equal(zero.token, 0);
    assert.equal(zero.roles, 0);
    await machineToken(idp);
    await roles('auth0%7Calice');
    await roles('auth0%7Cbob');
    const now = await stats();
    assert.equal(now.token, 1);
    assert.equal(now.tokenByGrant.client_credentials, 1);
    assert.equal(now.roles, 2);
  });

  test('POST /__test/roles-fail makes the roles endpoint answer 429 with Retry-After until cleared', async () => {
    const set = await fetch(idp.url('/__test/roles-fail'), { method: 'POST' });
    assert.equal(set.status, 200);
    for (let i = 0; i < 2; i += 1) {
      const res = await roles('auth0%7Calice');
      assert.equal(res.status, 429);
      assert.equal(res.headers.get('retry-after'), '3');
      assert.equal(res.body.statusCode, 429);
    }
    await fetch(idp.url('/__test/roles-fail'), { method: 'DELETE' });
    assert.equal((await roles('auth0%7Calice')).status, 200);
  });

  test('roles-fail with times fails that many requests, then recovers', async () => {
    await fetch(idp.url('/__test/roles-fail'), {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ status: 503, times: 1, retryAfter: 0 }),
    });
    assert.equal((await roles('auth0%7Calice')).status, 503);
    assert.equal((await roles('auth0%7Calice')).status, 200);
  });

  test('managementApi.failWith in the config starts in 429 mode', async () => {
    const failing = await startIdp(baseConfig({ managementApi: { failWith: 429 } }));
    try {
      const t = await machineToken(failing);
      const res = await getJson(failing.url('/api/v2/users/auth0%7Calice/roles'), { authorization: `Bearer ${t.body.access_token}` });
      assert.equal(res.status, 429);
      assert.equal(res.headers.get('retry-after'), '1');
    } finally {
      await failing.stop();
    }
  });

  test('--roles-fail 429 on the command line does the same', async () => {
    const failing = await startIdp(baseConfig(), { args: ['--roles-fail', '429'] });
    try {
      const res = await getJson(failing.url('/api/v2/users/auth0%7Calice/roles'));
      assert.equal(res.status, 429);
    } finally {
      await failing.stop();
    }
  });
});

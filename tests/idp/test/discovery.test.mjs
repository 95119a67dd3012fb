import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { getJson, startIdp } from '../test-support/harness.mjs';

let idp;
before(async () => { idp = await startIdp(); });
after(async () => { await idp?.stop(); });

test('the ready line names an issuer with a trailing slash on the listening port', () => {
  assert.match(idp.issuer, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  assert.equal(idp.issuer, `http://127.0.0.1:${idp.port}/`);
  assert.ok(idp.port > 0);
  assert.deepEqual(Object.keys(JSON.parse(idp.stdout().split('\n')[0])), ['ready', 'issuer', 'port']);
});

test('discovery has the issuer and Auth0 paths', async () => {
  const { status, body } = await getJson(idp.url('/.well-known/openid-configuration'));
  assert.equal(status, 200);
  assert.equal(body.issuer, idp.issuer);
  assert.equal(body.authorization_endpoint, idp.url('/authorize'));
  assert.equal(body.token_endpoint, idp.url('/oauth/token'));
  assert.equal(body.userinfo_endpoint, idp.url('/userinfo'));
  assert.equal(body.jwks_uri, idp.url('/.well-known/jwks.json'));
  assert.deepEqual(body.code_challenge_methods_supported, ['S256']);
  assert.ok(body.id_token_signing_alg_values_supported.includes('RS256'));
  for (const scope of ['openid', 'profile', 'email', 'offline_access']) {
    assert.ok(body.scopes_supported.includes(scope), scope);
  }
  assert.ok(body.claims_supported.includes('https://example.com/roles'));
});

test('the JWKS has one RSA signing key', async () => {
  const { status, body } = await getJson(idp.url('/.well-known/jwks.json'));
  assert.equal(status, 200);
  assert.equal(body.keys.length, 1);
  const [key] = body.keys;
  assert.equal(key.kty, 'RSA');
  assert.equal(key.alg, 'RS256');
  assert.ok(key.kid);
  assert.equal(key.d, undefined, 'no private parts published');
});

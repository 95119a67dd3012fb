import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';

import {
  Browser, ROLES_CLAIM, WEB, authorize, authorizeUrl, baseConfig, exchangeCode, formAction, getJson,
  pkcePair, startIdp, tokenRequest,
} from '../test-support/harness.mjs';

let idp;
let jwks;
before(async () => {
  idp = await startIdp(baseConfig({ idTokenTTL: 5 }));
  jwks = createRemoteJWKSet(new URL(idp.url('/.well-known/jwks.json')));
});
after(async () => { await idp?.stop(); });

const verifyIdToken = (token, nonce) => jwtVerify(token, jwks, {
  issuer: idp.issuer, audience: WEB.client_id, algorithms: ['RS256'],
}).then(({ payload, protectedHeader }) => {
  if (nonce !== undefined) assert.equal(payload.nonce, nonce);
  return { payload, protectedHeader };
});

describe('authorization code + PKCE through the login form', () => {
  const browser = new Browser();
  let first;
  let tokens;

  test('the login form is shown, and logging in returns code and state to the client', async () => {
    first = await authorize(idp, browser);
    assert.equal(first.sawLoginForm, true);
    assert.ok(first.code);
    assert.equal(first.returnedState, first.state);
  });

  test('the code exchange yields an RS256 ID token with email and the roles claim', async () => {
    const res = await exchangeCode(idp, first);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    tokens = res.body;
    assert.equal(tokens.token_type, 'Bearer');
    assert.ok(tokens.access_token);
    assert.ok(tokens.refresh_token, 'offline_access yields a refresh token without prompt=consent');
    const { payload, protectedHeader } = await verifyIdToken(tokens.id_token, first.nonce);
    assert.equal(protectedHeader.alg, 'RS256');
    assert.equal(payload.sub, 'auth0|alice');
    assert.equal(payload.email, 'alice@example.com');
    assert.equal(payload.email_verified, true);
    assert.equal(payload.name, 'Alice');
    assert.deepEqual(payload[ROLES_CLAIM], ['admin', 'editor', 'viewer']);
    assert.ok(payload.exp - payload.iat <= 5, 'idTokenTTL from the config');
  });

  test('userinfo answers with the same claims for the access token', async () => {
    const { status, body } = await getJson(idp.url('/userinfo'), { authorization: `Bearer ${tokens.access_token}` });
    assert.equal(status, 200);
    assert.equal(body.sub, 'auth0|alice');
    assert.equal(body.email, 'alice@example.com');
    assert.deepEqual(body[ROLES_CLAIM], ['admin', 'editor', 'viewer']);
  });

  test('the same browser authorizes again without the login form (IdP session)', async () => {
    const again = await authorize(idp, browser);
    assert.equal(again.sawLoginForm, false);
    const res = await exchangeCode(idp, again);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const { payload } = await verifyIdToken(res.body.id_token, again.nonce);
    assert.equal(payload.sub, 'auth0|alice');
  });

  test('without offline_access the same browser is sent straight back with a code', async () => {
    const again = await authorize(idp, browser, { scope: 'openid email' });
    assert.equal(again.sawLoginForm, false);
    assert.equal(again.requests, 1, '/authorize redirects to the client at once');
    const res = await exchangeCode(idp, again);
    assert.equal(res.status, 200);
    assert.equal(res.body.refresh_token, undefined);
    const { payload } = await verifyIdToken(res.body.id_token, again.nonce);
    assert.equal(payload.email, 'alice@example.com');
    assert.deepEqual(payload[ROLES_CLAIM], ['admin', 'editor', 'viewer'], 'roles claim rides on openid');
  });

  test('a fresh browser must log in again', async () => {
    const other = await authorize(idp, new Browser(), { user: 'auth0|bob' });
    assert.equal(other.sawLoginForm, true);
    const res = await exchangeCode(idp, other);
    const { payload } = await verifyIdToken(res.body.id_token, other.nonce);
    assert.equal(payload.sub, 'auth0|bob');
    assert.equal(payload.email_verified, false);
    assert.deepEqual(payload[ROLES_CLAIM], ['viewer']);
  });

  test('the refresh-token grant returns a new ID token with the roles claim', async () => {
    await new Promise((r) => { setTimeout(r, 1100); }); // a later iat
    const res = await tokenRequest(idp, {
      grant_type: 'refresh_token',
      refresh_token: tokens.refresh_token,
      client_id: WEB.client_id,
      client_secret: WEB.client_secret,
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.ok(res.body.id_token);
    assert.notEqual(res.body.id_token, tokens.id_token);
    const { payload } = await verifyIdToken(res.body.id_token);
    assert.equal(payload.sub, 'auth0|alice');
    assert.equal(payload.email, 'alice@example.com');
    assert.deepEqual(payload[ROLES_CLAIM], ['admin', 'editor', 'viewer']);
    assert.ok(payload.iat > decodeJwt(tokens.id_token).iat);
  });

  test('client_secret_basic works at the token endpoint as well as client_secret_post', async () => {
    const res = await tokenRequest(idp, { grant_type: 'refresh_token', refresh_token: tokens.refresh_token }, { basic: WEB });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.ok(res.body.id_token);
  });

  test('a wrong client secret is refused', async () => {
    const res = await tokenRequest(idp, {
      grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: WEB.client_id, client_secret: 'nope',
    });
    assert.equal(res.status, 401);
    assert.equal(res.body.error, 'invalid_client');
  });
});

describe('replaying a code', () => {
  test('is refused, and revokes what the code had issued (as RFC 6749 suggests)', async () => {
    const flow = await authorize(idp, new Browser());
    const good = await exchangeCode(idp, flow);
    assert.equal(good.status, 200);
    const replay = await exchangeCode(idp, flow);
    assert.equal(replay.status, 400);
    assert.equal(replay.body.error, 'invalid_grant');
    const refresh = await tokenRequest(idp, {
      grant_type: 'refresh_token', refresh_token: good.body.refresh_token, client_id: WEB.client_id, client_secret: WEB.client_secret,
    });
    assert.equal(refresh.status, 400);
    assert.match(idp.stderr(), /authorization code already consumed/, 'the reason is logged');
  });
});

describe('the login form', () => {
  test('an unknown user gets the form again with an error', async () => {
    const browser = new Browser();
    const { challenge } = pkcePair();
    const { last } = await browser.follow(authorizeUrl(idp, {
      response_type: 'code', client_id: WEB.client_id, redirect_uri: WEB.redirect_uri, scope: 'openid',
      state: 's1', code_challenge: challenge, code_challenge_method: 'S256',
    }));
    const action = formAction(last);
    assert.ok(action, 'a form with an action');
    assert.match(last.text, /name="login"/);
    assert.match(last.text, /name="password"/);
    const denied = await browser.request(action, { method: 'POST', form: { login: 'auth0|mallory', password: 'x' } });
    assert.equal(denied.status, 401);
    assert.match(denied.text, /Wrong username or password/);
    assert.equal(formAction(denied), action);
    const ok = await browser.request(action, { method: 'POST', form: { login: 'auth0|alice', password: 'x' } });
    assert.ok(ok.status >= 300 && ok.status < 400, String(ok.status));
    assert.ok(ok.location.startsWith(idp.url('/authorize/')), ok.location);
  });
});

describe('PKCE is required for the confidential client', () => {
  test('an authorization request without code_challenge is refused', async () => {
    const { last } = await new Browser().follow(authorizeUrl(idp, {
      response_type: 'code', client_id: WEB.client_id, redirect_uri: WEB.redirect_uri, scope: 'openid', state: 's2',
    }), { stopAt: WEB.redirect_uri });
    assert.ok(last.location?.startsWith(WEB.redirect_uri), `${last.status} ${last.location}`);
    const params = new URL(last.location).searchParams;
    assert.equal(params.get('error'), 'invalid_request');
    assert.match(params.get('error_description'), /PKCE/);
    assert.equal(params.get('state'), 's2');
  });

  test('a wrong code_verifier fails the exchange', async () => {
    const flow = await authorize(idp, new Browser(), { scope: 'openid' });
    const res = await exchangeCode(idp, { ...flow, pkce: pkcePair() });
    assert.equal(res.status, 400);
    assert.equal(res.body.error, 'invalid_grant');
  });

  test('an unregistered redirect_uri is refused with an error page, not a redirect', async () => {
    const { challenge } = pkcePair();
    const res = await new Browser().request(authorizeUrl(idp, {
      response_type: 'code', client_id: WEB.client_id, redirect_uri: 'http://evil.test/cb', scope: 'openid',
      code_challenge: challenge, code_challenge_method: 'S256',
    }));
    assert.equal(res.status, 400);
    assert.equal(res.location, null);
    assert.match(res.text, /redirect_uri/);
  });
});

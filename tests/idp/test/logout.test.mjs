import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Browser, WEB, authorize, startIdp } from '../test-support/harness.mjs';

let idp;
before(async () => { idp = await startIdp(); });
after(async () => { await idp?.stop(); });

const logoutUrl = (params) => {
  const u = new URL('/v2/logout', idp.issuer);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  return u.href;
};

test('/v2/logout ends the IdP session and redirects to an allowed returnTo', async () => {
  const browser = new Browser();
  assert.equal((await authorize(idp, browser)).sawLoginForm, true);
  assert.equal((await authorize(idp, browser)).sawLoginForm, false, 'signed in at the IdP');

  const res = await browser.request(logoutUrl({ client_id: WEB.client_id, returnTo: WEB.logout_url }));
  assert.equal(res.status, 302);
  assert.equal(res.location, WEB.logout_url);
  assert.ok(!browser.jar.names(idp.issuer).includes('_session'), 'session cookie cleared');

  assert.equal((await authorize(idp, browser)).sawLoginForm, true, 'must log in again');
});

test('the session is ended server-side too, not only by clearing the cookie', async () => {
  const browser = new Browser();
  await authorize(idp, browser);
  const kept = browser.jar.entries(idp.issuer);
  assert.ok(kept.some(([name]) => name === '_session'));
  await browser.request(logoutUrl({ client_id: WEB.client_id, returnTo: WEB.logout_url }));
  // A browser that kept the old cookies (a replay) is not signed in any more.
  const replay = new Browser();
  for (const [name, value] of kept) replay.jar.set(idp.issuer, name, value);
  assert.equal((await authorize(idp, replay)).sawLoginForm, true);
});

test('/v2/logout refuses a returnTo that is not an allowed logout URL', async () => {
  const browser = new Browser();
  await authorize(idp, browser);
  const res = await browser.request(logoutUrl({ client_id: WEB.client_id, returnTo: 'http://evil.test/' }));
  assert.equal(res.status, 400);
  assert.equal(res.location, null);
  assert.equal((await authorize(idp, browser)).sawLoginForm, false, 'a refused logout keeps the session');
});

test('/v2/logout with an unknown client_id is a 400', async () => {
  const res = await new Browser().request(logoutUrl({ client_id: 'nope', returnTo: WEB.logout_url }));
  assert.equal(res.status, 400);
});

test('/v2/logout without returnTo goes to the client\'s first allowed logout URL', async () => {
  const res = await new Browser().request(logoutUrl({ client_id: WEB.client_id }));
  assert.equal(res.status, 302);
  assert.equal(res.location, WEB.logout_url);
});

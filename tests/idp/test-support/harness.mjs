// Test helpers: start server.mjs as a child process, and a tiny browser (fetch + cookie jar +
// manual redirects) that drives the login form the way an end-to-end test would.

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SERVER = join(dirname(fileURLToPath(import.meta.url)), '..', 'server.mjs');

export const WEB = {
  client_id: 'web-app',
  client_secret: 'web-secret',
  redirect_uri: 'http://app.test/oauth2/callback',
  logout_url: 'http://app.test/.pomerium/signed_out',
};
export const M2M = { client_id: 'm2m-app', client_secret: 'm2m-secret' };
export const ROLES_CLAIM = 'https://example.com/roles';

export function baseConfig(overrides = {}) {
  return {
    clients: [{
      client_id: WEB.client_id,
      client_secret: WEB.client_secret,
      redirect_uris: [WEB.redirect_uri],
      post_logout_redirect_uris: [WEB.logout_url],
    }],
    machineClient: { ...M2M },
    rolesClaim: ROLES_CLAIM,
    users: [
      {
        sub: 'auth0|alice', email: 'alice@example.com', email_verified: true, name: 'Alice',
        roles: ['admin', 'editor', 'viewer'], role_ids: ['rol_A', 'rol_E', 'rol_V'],
      },
      { sub: 'auth0|bob', email: 'bob@example.com', email_verified: false, name: 'Bob', roles: ['viewer'] },
    ],
    ...overrides,
  };
}

// Starts the IdP on an ephemeral port and resolves once it printed its ready line.
export async function startIdp(config = baseConfig(), { args = [], env = {} } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'idp-test-'));
  const configFile = join(dir, 'config.json');
  writeFileSync(configFile, JSON.stringify(config));
  const child = spawn(process.execPath, [SERVER, '--port', '0', '--config', configFile, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));

  const ready = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`IdP not ready after 20s\n${stderr}`)), 20000);
    child.stdout.setEncoding('utf8').on('data', (d) => {
      stdout += d;
      const nl = stdout.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        try {
          resolve(JSON.parse(stdout.slice(0, nl)));
        } catch (err) {
          reject(new Error(`bad ready line ${JSON.stringify(stdout)}: ${err.message}`));
        }
      }
    });
    exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`IdP exited (${code}) before ready\n${stderr}`));
    });
  });

  return {
    ...ready,
    child,
    exited,
    stdout: () => stdout,
    stderr: () => stderr,
    url: (path) => new URL(path, ready.issuer).href,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const result = await exited;
      rmSync(dir, { recursive: true, force: true });
      return result;
    },
  };
}

// A cookie jar keyed by host and cookie name. It ignores Path and Domain: enough for one IdP.
export class CookieJar {
  #cookies = new Map();

  store(url, response) {
    const host = new URL(url).host;
    const jar = this.#cookies.get(host) ?? new Map();
    this.#cookies.set(host, jar);
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const gone = attrs.some((a) => {
        const [k, v] = a.trim().split('=');
        if (/^max-age$/i.test(k)) return Number(v) <= 0;
        if (/^expires$/i.test(k)) return Date.parse(a.trim().slice(8)) <= Date.now();
        return false;
      });
      if (gone || value === '') jar.delete(name);
      else jar.set(name, value);
    }
  }

  set(url, name, value) {
    const host = new URL(url).host;
    if (!this.#cookies.has(host)) this.#cookies.set(host, new Map());
    this.#cookies.get(host).set(name, value);
  }

  header(url) {
    const jar = this.#cookies.get(new URL(url).host);
    if (!jar || jar.size === 0) return undefined;
    return [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  names(url) {
    return [...(this.#cookies.get(new URL(url).host)?.keys() ?? [])];
  }

  entries(url) {
    return [...(this.#cookies.get(new URL(url).host) ?? [])];
  }
}

export class Browser {
  jar = new CookieJar();

  async request(url, { method = 'GET', form, headers = {} } = {}) {
    const h = { ...headers };
    const cookie = this.jar.header(url);
    if (cookie) h.cookie = cookie;
    let body;
    if (form) {
      h['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(form).toString();
    }
    const res = await fetch(url, { method, headers: h, body, redirect: 'manual' });
    this.jar.store(url, res);
    const text = await res.text();
    const location = res.headers.get('location');
    return { url, status: res.status, headers: res.headers, text, location: location && new URL(location, url).href };
  }

  // Follows redirects until a non-redirect answer or a Location starting with `stopAt`
  // (the relying party's callback, which nothing serves in these tests). Returns every hop.
  async follow(url, { stopAt, ...init } = {}) {
    const hops = [];
    let res = await this.request(url, init);
    hops.push(res);
    for (let i = 0; i < 20 && res.location && res.status >= 300 && res.status < 400; i += 1) {
      if (stopAt && res.location.startsWith(stopAt)) break;
      res = await this.request(res.location);
      hops.push(res);
    }
    return { last: res, hops };
  }
}

const b64url = (buf) => buf.toString('base64url');

export function pkcePair() {
  const verifier = b64url(randomBytes(32));
  const challenge = b64url(createHash('sha256').update(verifier).digest());
  return { verifier, challenge };
}

export function authorizeUrl(idp, params) {
  const u = new URL('/authorize', idp.issuer);
  for (const [k, v] of Object.entries(params)) if (v !== undefined) u.searchParams.set(k, v);
  return u.href;
}

// The login-form recipe: find `action="..."`, post login + password url-encoded.
export function formAction(page) {
  const m = /<form[^>]*\saction="([^"]+)"/i.exec(page.text);
  if (!m) return undefined;
  return new URL(m[1].replace(/&#38;/g, '&'), page.url).href;
}

// Runs /authorize through the login form (if shown) up to the redirect to the client.
// Returns { code, state, returnedState, params, sawLoginForm, requests (HTTP requests made), pkce, nonce }.
export async function authorize(idp, browser, {
  user = 'auth0|alice', scope = 'openid profile email offline_access', client = WEB, extra = {},
} = {}) {
  const pkce = pkcePair();
  const state = b64url(randomBytes(12));
  const nonce = b64url(randomBytes(12));
  const start = authorizeUrl(idp, {
    response_type: 'code',
    client_id: client.client_id,
    redirect_uri: client.redirect_uri,
    scope,
    state,
    nonce,
    code_challenge: pkce.challenge,
    code_challenge_method: 'S256',
    ...extra,
  });
  let { last, hops } = await browser.follow(start, { stopAt: client.redirect_uri });
  let requests = hops.length;
  let sawLoginForm = false;
  if (last.status === 200 && formAction(last)) {
    sawLoginForm = true;
    ({ last, hops } = await browser.follow(formAction(last), {
      method: 'POST', form: { login: user, password: 'any' }, stopAt: client.redirect_uri,
    }));
    requests += hops.length;
  }
  if (!last.location?.startsWith(client.redirect_uri)) {
    throw new Error(`authorize did not come back to the client: ${last.status} ${last.location ?? ''}\n${last.text.slice(0, 500)}`);
  }
  const params = new URL(last.location).searchParams;
  return {
    code: params.get('code'), state, returnedState: params.get('state'), params, sawLoginForm, requests, pkce, nonce,
  };
}

export async function tokenRequest(idp, form, { basic } = {}) {
  const headers = { 'content-type': 'application/x-www-form-urlencoded' };
  if (basic) {
    headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(basic.client_id)}:${encodeURIComponent(basic.client_secret)}`).toString('base64')}`;
  }
  const res = await fetch(idp.url('/oauth/token'), { method: 'POST', headers, body: new URLSearchParams(form).toString() });
  return { status: res.status, body: await res.json() };
}

export async function exchangeCode(idp, { code, pkce }, client = WEB) {
  return tokenRequest(idp, {
    grant_type: 'authorization_code',
    code,
    redirect_uri: client.redirect_uri,
    code_verifier: pkce.verifier,
    client_id: client.client_id,
    client_secret: client.client_secret,
  });
}

export async function machineToken(idp, extra = {}) {
  return tokenRequest(idp, {
    grant_type: 'client_credentials',
    client_id: M2M.client_id,
    client_secret: M2M.client_secret,
    audience: idp.url('/api/v2/'),
    ...extra,
  });
}

export async function getJson(url, headers = {}) {
  const res = await fetch(url, { headers });
  const text = await res.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: res.status, headers: res.headers, body };
}

#!/usr/bin/env node
// A local OpenID Connect provider shaped like an Auth0 tenant, for Portcullis' end-to-end tests
// and the local demo. The OIDC side is the real `oidc-provider`; only the parts Auth0 has and
// OIDC does not (/v2/logout, the Management API's user roles, the `audience` parameter) are
// written here. See README.md for the contract.
//
// stdout carries exactly one line, the readiness JSON; everything else goes to stderr.

import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';

// oidc-provider prints notices with console.info (stdout). Keep stdout for the ready line.
console.log = console.error;
console.info = console.error;
console.debug = console.error;

const { default: Provider, errors } = await import('oidc-provider');
const { createLocalJWKSet, exportJWK, generateKeyPair, jwtVerify } = await import('jose');

const log = (...parts) => process.stderr.write(`[idp] ${parts.join(' ')}\n`);

// ---------------------------------------------------------------------------------------------
// Options: flags win over environment variables, which win over defaults.

function readOptions(argv, env) {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      config: { type: 'string' },
      issuer: { type: 'string' },
      'roles-fail': { type: 'string' },
      verbose: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stderr.write(`usage: node server.mjs [--port N] [--host H] [--config FILE] [--issuer URL]
                      [--roles-fail STATUS] [--verbose]
  env: IDP_PORT, IDP_HOST, IDP_CONFIG, IDP_ISSUER, IDP_ROLES_FAIL, IDP_VERBOSE=1
`);
    process.exit(0);
  }
  const portText = values.port ?? env.IDP_PORT ?? '0';
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`--port must be an integer 0..65535, got ${JSON.stringify(portText)}`);
  }
  const rolesFail = values['roles-fail'] ?? env.IDP_ROLES_FAIL;
  return {
    port,
    host: values.host ?? env.IDP_HOST ?? '127.0.0.1',
    configFile: values.config ?? env.IDP_CONFIG,
    issuer: values.issuer ?? env.IDP_ISSUER,
    rolesFail: rolesFail ? Number(rolesFail) : undefined,
    verbose: Boolean(values.verbose || env.IDP_VERBOSE === '1'),
  };
}

// ---------------------------------------------------------------------------------------------
// Configuration file.

const DEFAULTS = {
  rolesClaim: 'https://example.com/roles',
  idTokenTTL: 3600,
  accessTokenTTL: 86400,
  refreshTokenTTL: 30 * 24 * 3600,
  sessionTTL: 14 * 24 * 3600,
  rotateRefreshTokens: false,
};

function loadConfig(file) {
  const raw = file ? JSON.parse(readFileSync(file, 'utf8')) : {};
  const config = { ...DEFAULTS, ...raw };
  config.clients = (raw.clients ?? []).map((c, i) => {
    if (!c.client_id || !c.client_secret) {
      throw new Error(`clients[${i}] needs client_id and client_secret`);
    }
    return {
      client_id: String(c.client_id),
      client_secret: String(c.client_secret),
      redirect_uris: c.redirect_uris ?? c.callbacks ?? [],
      post_logout_redirect_uris:
        c.post_logout_redirect_uris ?? c.allowed_logout_urls ?? c.allowedLogoutUrls ?? [],
    };
  });
  config.machineClient = raw.machineClient
    ? { client_id: String(raw.machineClient.client_id), client_secret: String(raw.machineClient.client_secret) }
    : undefined;

  const catalog = new Map((raw.roles ?? []).map((r) => [r.name, r]));
  config.users = (raw.users ?? []).map((u, i) => {
    if (!u.sub) throw new Error(`users[${i}] needs sub`);
    const names = u.roles ?? [];
    const roles = names.map((name, j) => ({
      id: u.role_ids?.[j] ?? catalog.get(name)?.id ?? `rol_${Buffer.from(name).toString('hex').slice(0, 16)}`,
      name,
      description: catalog.get(name)?.description ?? `${name} role`,
    }));
    return {
      sub: String(u.sub),
      email: u.email,
      email_verified: u.email_verified ?? true,
      name: u.name ?? u.email ?? u.sub,
      nickname: u.nickname ?? (u.email ? u.email.split('@')[0] : undefined),
      picture: u.picture,
      roles,
    };
  });
  const api = raw.managementApi ?? {};
  config.managementApi = {
    pageSize: api.pageSize ?? 50,
    maxPageSize: api.maxPageSize ?? 100,
    failWith: api.failWith,
    retryAfter: api.retryAfter ?? 1,
  };
  for (const key of ['idTokenTTL', 'accessTokenTTL', 'refreshTokenTTL', 'sessionTTL']) {
    if (!Number.isInteger(config[key]) || config[key] <= 0) {
      throw new Error(`${key} must be a positive integer (seconds)`);
    }
  }
  return config;
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

// RFC 6749 2.3.1: the Basic credentials are form-urlencoded before base64.
function decodeBasic(header) {
  const m = /^Basic\s+(\S+)$/i.exec(header ?? '');
  if (!m) return undefined;
  const text = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon < 0) return undefined;
  const unform = (s) => {
    try {
      return decodeURIComponent(s.replace(/\+/g, ' '));
    } catch {
      return s;
    }
  };
  return { id: unform(text.slice(0, colon)), secret: unform(text.slice(colon + 1)) };
}

function json(ctx, status, body, headers = {}) {
  ctx.status = status;
  for (const [k, v] of Object.entries(headers)) ctx.set(k, String(v));
  ctx.type = 'application/json';
  ctx.body = JSON.stringify(body);
}

// Auth0's Management API error body.
function apiError(ctx, status, error, message, errorCode, headers) {
  json(ctx, status, { statusCode: status, error, message, ...(errorCode ? { errorCode } : {}) }, headers);
}

function loginPage({ action, clientId, error, users, login }) {
  const known = users.map((u) => `<li><code>${escapeHtml(u.sub)}</code> ${escapeHtml(u.email ?? '')}</li>`).join('');
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in - Portcullis test IdP</title></head>
<body>
<h1>Sign in</h1>
<p>to continue to <code>${escapeHtml(clientId)}</code></p>
${error ? `<p id="error" role="alert">${escapeHtml(error)}</p>` : ''}
<form method="post" action="${escapeHtml(action)}">
<p><label>User id <input name="login" autofocus value="${escapeHtml(login ?? '')}"></label></p>
<p><label>Password <input name="password" type="password"></label></p>
<p><button type="submit">Continue</button></p>
</form>
<p>Any password is accepted. Configured users:</p>
<ul>${known}</ul>
</body>
</html>
`;
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const opts = readOptions(process.argv.slice(2), process.env);
  const config = loadConfig(opts.configFile);
  const usersBySub = new Map(config.users.map((u) => [u.sub, u]));

  const server = http.createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address();
  const hostForUrl = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  const issuer = opts.issuer ?? `http://${hostForUrl}:${port}/`;
  if (!issuer.endsWith('/')) throw new Error('the issuer must end with "/" (as an Auth0 tenant does)');
  const managementAudience = `${issuer}api/v2/`;
  const managementScopes = 'read:users read:roles';

  // One RS256 signing key per run.
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = randomUUID();
  const privateJwk = { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
  const { d, p, q, dp, dq, qi, ...publicJwk } = privateJwk;
  const localJwks = createLocalJWKSet({ keys: [publicJwk] });

  // Counters and failure switches the tests read and flip under /__test/.
  const freshStats = () => ({
    authorize: 0,
    logins: 0,
    token: 0,
    tokenByGrant: {},
    userinfo: 0,
    roles: 0,
    logout: 0,
  });
  let stats = freshStats();
  const initialFail = opts.rolesFail ?? config.managementApi.failWith;
  const freshFailure = () => (initialFail
    ? { status: initialFail, retryAfter: config.managementApi.retryAfter, remaining: Infinity }
    : undefined);
  let rolesFailure = freshFailure();

  const webClientIds = new Set(config.clients.map((c) => c.client_id));
  const clients = config.clients.map((c) => ({
    ...c,
    response_types: ['code'],
    grant_types: ['authorization_code', 'refresh_token'],
    token_endpoint_auth_method: 'client_secret_post',
    id_token_signed_response_alg: 'RS256',
  }));
  if (config.machineClient) {
    clients.push({
      ...config.machineClient,
      response_types: [],
      redirect_uris: [],
      grant_types: ['client_credentials'],
      token_endpoint_auth_method: 'client_secret_post',
    });
  }

  // Auth0 skips consent for first-party applications: grant whatever the request asks for.
  async function grantRequested(provider, { accountId, clientId, grantId, scope, claims }) {
    let grant = grantId ? await provider.Grant.find(grantId) : undefined;
    if (!grant || grant.accountId !== accountId || grant.clientId !== clientId) {
      grant = new provider.Grant({ accountId, clientId });
    }
    if (scope) grant.addOIDCScope(scope);
    if (claims?.length) grant.addOIDCClaims(claims);
    await grant.save();
    return grant;
  }

  const claimNames = {
    openid: ['sub', config.rolesClaim],
    profile: ['name', 'nickname', 'picture'],
    email: ['email', 'email_verified'],
  };

  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: [privateJwk] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    routes: {
      authorization: '/authorize',
      token: '/oauth/token',
      userinfo: '/userinfo',
      jwks: '/.well-known/jwks.json',
      end_session: '/oidc/logout',
      revocation: '/oauth/revoke',
    },
    scopes: ['openid', 'profile', 'email', 'offline_access'],
    claims: claimNames,
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    ttl: {
      IdToken: config.idTokenTTL,
      AccessToken: config.accessTokenTTL,
      ClientCredentials: config.accessTokenTTL,
      AuthorizationCode: 60,
      RefreshToken: config.refreshTokenTTL,
      Grant: config.refreshTokenTTL,
      Session: config.sessionTTL,
      Interaction: 3600,
    },
    rotateRefreshToken: () => config.rotateRefreshTokens,
    clientBasedCORS: () => true,
    interactions: { url: (_ctx, interaction) => `/u/login/${interaction.uid}` },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      revocation: { enabled: true, allowedPolicy: (_ctx, client, token) => token.clientId === client.clientId },
      rpInitiatedLogout: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: (_ctx, _client, oneOf) => oneOf,
        useGrantedResource: () => false,
        getResourceServerInfo: (_ctx, resource, client) => {
          if (resource === managementAudience && client.clientId === config.machineClient?.client_id) {
            return {
              scope: managementScopes,
              audience: managementAudience,
              accessTokenTTL: config.accessTokenTTL,
              accessTokenFormat: 'jwt',
              jwt: { sign: { alg: 'RS256' } },
            };
          }
          throw new errors.InvalidTarget(`unknown audience ${resource}`);
        },
      },
    },
    extraTokenClaims: (_ctx, token) => (token.kind === 'ClientCredentials'
      ? { gty: 'client-credentials', azp: token.clientId }
      : undefined),
    loadExistingGrant: async (ctx) => {
      const { session, client } = ctx.oidc;
      if (!session?.accountId) return undefined;
      return grantRequested(ctx.oidc.provider, {
        accountId: session.accountId,
        clientId: client.clientId,
        grantId: ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId),
        scope: [...ctx.oidc.requestParamOIDCScopes].join(' '),
        claims: [...ctx.oidc.requestParamClaims ?? []],
      });
    },
    findAccount: (_ctx, sub) => {
      const user = usersBySub.get(sub);
      if (!user) return undefined;
      return {
        accountId: sub,
        claims: () => ({
          sub,
          name: user.name,
          nickname: user.nickname,
          picture: user.picture,
          email: user.email,
          email_verified: user.email_verified,
          [config.rolesClaim]: user.roles.map((r) => r.name),
        }),
      };
    },
    renderError: (ctx, out, error) => {
      log('render error:', ctx.method, ctx.path, JSON.stringify(out), error?.error_detail ?? '');
      ctx.type = 'html';
      ctx.body = `<!doctype html><html><head><meta charset="utf-8"><title>Error</title></head><body>
<h1>${escapeHtml(out.error)}</h1><p>${escapeHtml(out.error_description ?? '')}</p></body></html>\n`;
    },
  });

  const explain = (name) => (ctx, err) => {
    const detail = err?.error_detail ? ` (${err.error_detail})` : '';
    const client = ctx?.oidc?.client?.clientId ? ` client=${ctx.oidc.client.clientId}` : '';
    log(`${name}: ${ctx?.method ?? ''} ${ctx?.path ?? ''}${client}: ${err?.error ?? err?.name}: ${err?.error_description ?? err?.message}${detail}`);
    if (name === 'server_error' && err?.stack) log(err.stack);
  };
  for (const event of [
    'grant.error', 'authorization.error', 'userinfo.error', 'end_session.error',
    'revocation.error', 'discovery.error', 'jwks.error', 'check_session_origin.error',
  ]) {
    provider.on(event, explain(event));
  }
  provider.on('server_error', explain('server_error'));

  // --- Auth0-shaped front door: runs before oidc-provider's own routes. ------------------------

  provider.use(async (ctx, next) => {
    const started = Date.now();
    try {
      await route(ctx, next);
    } finally {
      if (opts.verbose) log(ctx.method, ctx.url, ctx.status, `${Date.now() - started}ms`);
    }
  });

  async function route(ctx, next) {
    const { path, method } = ctx;

    if (path === '/authorize' && method === 'GET') {
      stats.authorize += 1;
      askConsentForOfflineAccess(ctx);
      return next();
    }
    if (path === '/userinfo') {
      stats.userinfo += 1;
      return next();
    }
    if (path === '/oauth/token' && method === 'POST') {
      await prepareTokenRequest(ctx);
      if (ctx.body !== undefined) return undefined;
      return next();
    }
    const login = /^\/u\/login\/([^/]+)$/.exec(path);
    if (login) return handleLogin(ctx, login[1]);
    if (path === '/v2/logout' && method === 'GET') return handleLogout(ctx);
    const roles = /^\/api\/v2\/users\/([^/]+)\/roles$/.exec(path);
    if (roles && method === 'GET') return handleRoles(ctx, roles[1]);
    if (path.startsWith('/api/v2/')) {
      return apiError(ctx, 404, 'Not Found', 'Not implemented by the test IdP');
    }
    if (path.startsWith('/__test/')) return handleTestControl(ctx);
    return next();
  }

  // oidc-provider drops `offline_access` (so issues no refresh token) unless the request has
  // prompt=consent; Auth0 has no such rule. Add it; the consent step is then approved without a
  // screen in handleLogin. prompt=none cannot be combined with consent and is left alone.
  function askConsentForOfflineAccess(ctx) {
    const query = new URLSearchParams(ctx.querystring);
    const scopes = (query.get('scope') ?? '').split(' ');
    const prompts = (query.get('prompt') ?? '').split(' ').filter(Boolean);
    if (!scopes.includes('offline_access') || prompts.includes('consent') || prompts.includes('none')) return;
    query.set('prompt', [...prompts, 'consent'].join(' '));
    ctx.querystring = query.toString();
  }

  // Rewrites the token request body so oidc-provider sees what Auth0 would accept:
  // - client_secret_basic is turned into client_secret_post (Auth0 takes either);
  // - Auth0's `audience` becomes the standard `resource` (client credentials);
  // - client credentials with no `scope` get every scope the API grants (as Auth0 does).
  async function prepareTokenRequest(ctx) {
    stats.token += 1;
    if (!ctx.is('application/x-www-form-urlencoded')) return;
    const params = new URLSearchParams(await readBody(ctx.req));
    const basic = decodeBasic(ctx.get('authorization'));
    if (basic) {
      params.set('client_id', basic.id);
      params.set('client_secret', basic.secret);
      delete ctx.req.headers.authorization;
    }
    const grantType = params.get('grant_type') ?? 'none';
    stats.tokenByGrant[grantType] = (stats.tokenByGrant[grantType] ?? 0) + 1;
    if (grantType === 'client_credentials' && !params.has('resource')) {
      const audience = params.get('audience');
      if (!audience) {
        json(ctx, 403, {
          error: 'access_denied',
          error_description: 'No audience parameter was provided, and no default audience has been configured',
        });
        return;
      }
      if (audience !== managementAudience) {
        json(ctx, 403, { error: 'access_denied', error_description: `Service not found: ${audience}` });
        return;
      }
      params.set('resource', audience);
      if (!params.get('scope')) params.set('scope', managementScopes);
    }
    params.delete('audience');
    // oidc-provider reads an already-consumed body from req.body (it logs a one-time warning).
    ctx.req.body = params.toString();
  }

  async function handleLogin(ctx, uid) {
    let details;
    try {
      details = await provider.interactionDetails(ctx.req, ctx.res);
    } catch (err) {
      log('login: no interaction:', err.message);
      ctx.status = 400;
      ctx.type = 'html';
      ctx.body = '<!doctype html><p>This sign-in attempt expired or was not started here. Start again from the application.</p>\n';
      return;
    }
    if (details.uid !== uid) {
      ctx.status = 400;
      ctx.type = 'html';
      ctx.body = '<!doctype html><p>Interaction mismatch. Start again from the application.</p>\n';
      return;
    }
    const { prompt, params } = details;
    const action = `/u/login/${uid}`;
    const finish = async (accountId, withLogin) => {
      const grant = await grantRequested(provider, {
        accountId,
        clientId: params.client_id,
        grantId: details.grantId,
        scope: params.scope,
        claims: prompt.details?.missingOIDCClaims,
      });
      const result = { consent: { grantId: grant.jti } };
      if (withLogin) result.login = { accountId, remember: true };
      const location = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
      ctx.redirect(location);
    };

    if (prompt.name !== 'login') {
      // Consent (asked for explicitly with prompt=consent): approve without a screen.
      return finish(details.session.accountId, false);
    }
    if (ctx.method === 'GET') {
      ctx.type = 'html';
      ctx.body = loginPage({ action, clientId: params.client_id, users: config.users });
      return undefined;
    }
    if (ctx.method !== 'POST') {
      ctx.status = 405;
      return undefined;
    }
    const form = new URLSearchParams(await readBody(ctx.req));
    const loginName = (form.get('login') ?? '').trim();
    const user = usersBySub.get(loginName)
      ?? config.users.find((u) => u.email && u.email.toLowerCase() === loginName.toLowerCase());
    if (!user) {
      log(`login: unknown user ${JSON.stringify(loginName)}`);
      ctx.status = 401;
      ctx.type = 'html';
      ctx.body = loginPage({
        action, clientId: params.client_id, users: config.users, login: loginName, error: 'Wrong username or password.',
      });
      return undefined;
    }
    stats.logins += 1;
    return finish(user.sub, true);
  }

  // Auth0's GET /v2/logout?client_id=...&returnTo=...
  async function handleLogout(ctx) {
    stats.logout += 1;
    const clientId = ctx.query.client_id;
    const returnTo = ctx.query.returnTo;
    const client = config.clients.find((c) => c.client_id === clientId);
    if (clientId !== undefined && !client) {
      ctx.status = 400;
      ctx.type = 'text';
      ctx.body = `unknown client_id ${clientId}\n`;
      return;
    }
    let target;
    if (returnTo !== undefined) {
      const allowed = client ? client.post_logout_redirect_uris : config.allowedLogoutUrls ?? [];
      if (!allowed.includes(returnTo)) {
        log(`logout: returnTo ${returnTo} is not an allowed logout URL of ${clientId ?? 'the tenant'}`);
        ctx.status = 400;
        ctx.type = 'text';
        ctx.body = `returnTo is not an allowed logout URL: ${returnTo}\n`;
        return;
      }
      target = returnTo;
    } else if (client?.post_logout_redirect_uris.length) {
      [target] = client.post_logout_redirect_uris;
    }

    const session = await provider.Session.get(ctx);
    if (session.jti) await session.destroy();
    const cookieName = provider.cookieName('session');
    ctx.cookies.set(cookieName, null, { path: '/' });
    ctx.cookies.set(`${cookieName}.sig`, null, { path: '/' });

    if (target) {
      ctx.redirect(target);
    } else {
      ctx.type = 'text';
      ctx.body = 'signed out\n';
    }
  }

  // The Management API stand-in: GET /api/v2/users/{id}/roles.
  async function handleRoles(ctx, rawId) {
    stats.roles += 1;
    if (rolesFailure && rolesFailure.remaining > 0) {
      rolesFailure.remaining -= 1;
      const { status, retryAfter } = rolesFailure;
      if (rolesFailure.remaining <= 0) rolesFailure = undefined;
      const reset = Math.ceil(Date.now() / 1000) + retryAfter;
      const headers = status === 429
        ? { 'Retry-After': retryAfter, 'X-RateLimit-Limit': 10, 'X-RateLimit-Remaining': 0, 'X-RateLimit-Reset': reset }
        : {};
      const label = http.STATUS_CODES[status] ?? 'Error';
      return apiError(ctx, status, label, status === 429 ? 'Global limit has been reached' : label, undefined, headers);
    }

    const header = ctx.get('authorization');
    const bearer = /^Bearer\s+(\S+)$/i.exec(header);
    if (!bearer) return apiError(ctx, 401, 'Unauthorized', 'Missing authentication');
    let claims;
    try {
      ({ payload: claims } = await jwtVerify(bearer[1], localJwks, {
        issuer,
        audience: managementAudience,
        algorithms: ['RS256'],
      }));
    } catch (err) {
      log(`roles: rejected token: ${err.code ?? err.name}: ${err.message}`);
      const expired = err.code === 'ERR_JWT_EXPIRED';
      return apiError(ctx, 401, 'Unauthorized', expired ? 'Expired token received for JSON Web Token validation' : 'Invalid token');
    }
    const granted = new Set(String(claims.scope ?? '').split(' '));
    if (!granted.has('read:roles')) {
      return apiError(ctx, 403, 'Forbidden', 'Insufficient scope, expected any of: read:roles', 'insufficient_scope');
    }

    let id;
    try {
      id = decodeURIComponent(rawId);
    } catch {
      return apiError(ctx, 400, 'Bad Request', 'Path validation error: invalid user id', 'invalid_uri');
    }
    const user = usersBySub.get(id);
    if (!user) return apiError(ctx, 404, 'Not Found', 'The user does not exist.', 'inexistent_user');

    const q = ctx.query;
    const intParam = (name, fallback, min, max) => {
      if (q[name] === undefined) return fallback;
      const n = Number(q[name]);
      if (!/^\d+$/.test(String(q[name])) || n < min || n > max) return NaN;
      return n;
    };
    const perPage = intParam('per_page', config.managementApi.pageSize, 1, config.managementApi.maxPageSize);
    const page = intParam('page', 0, 0, Number.MAX_SAFE_INTEGER);
    if (Number.isNaN(perPage) || Number.isNaN(page)) {
      return apiError(ctx, 400, 'Bad Request',
        `Query validation error: page must be an integer >= 0 and per_page 1..${config.managementApi.maxPageSize}`,
        'invalid_query_string');
    }
    const start = page * perPage;
    const slice = user.roles.slice(start, start + perPage);
    if (q.include_totals === 'true') {
      return json(ctx, 200, { roles: slice, start, limit: perPage, total: user.roles.length });
    }
    return json(ctx, 200, slice);
  }

  async function handleTestControl(ctx) {
    const { path, method } = ctx;
    if (path === '/__test/stats' && method === 'GET') return json(ctx, 200, stats);
    if (path === '/__test/reset' && method === 'POST') {
      stats = freshStats();
      rolesFailure = freshFailure();
      return json(ctx, 200, { ok: true });
    }
    if (path === '/__test/roles-fail' && method === 'POST') {
      let body = {};
      const text = await readBody(ctx.req);
      if (text.trim()) {
        try {
          body = JSON.parse(text);
        } catch {
          return json(ctx, 400, { error: 'body must be JSON' });
        }
      }
      const status = Number(body.status ?? 429);
      const retryAfter = Number(body.retryAfter ?? config.managementApi.retryAfter);
      const times = body.times === undefined ? Infinity : Number(body.times);
      if (!Number.isInteger(status) || status < 400 || status > 599 || !(times > 0) || !(retryAfter >= 0)) {
        return json(ctx, 400, { error: 'want {"status":4xx|5xx,"retryAfter":seconds,"times":n}' });
      }
      rolesFailure = { status, retryAfter, remaining: times };
      log(`test control: roles endpoint answers ${status} ${Number.isFinite(times) ? `${times} time(s)` : 'until cleared'}`);
      return json(ctx, 200, { status, retryAfter, times: Number.isFinite(times) ? times : null });
    }
    if (path === '/__test/roles-fail' && method === 'DELETE') {
      rolesFailure = undefined;
      return json(ctx, 200, { ok: true });
    }
    return json(ctx, 404, { error: 'unknown test-control endpoint' });
  }

  server.on('request', provider.callback());

  let stopping = false;
  const stop = (signal) => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: shutting down`);
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  log(`issuer ${issuer}; clients ${[...webClientIds].join(', ') || '(none)'}; machine client ${config.machineClient?.client_id ?? '(none)'}; users ${config.users.map((u) => u.sub).join(', ') || '(none)'}`);
  process.stdout.write(`${JSON.stringify({ ready: true, issuer, port })}\n`);
}

main().catch((err) => {
  log('fatal:', err?.stack ?? String(err));
  process.exit(1);
});

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { baseConfig, startIdp } from '../test-support/harness.mjs';

const SERVER = join(dirname(fileURLToPath(import.meta.url)), '..', 'server.mjs');

test('stdout has exactly the ready line; SIGTERM exits 0', async () => {
  const idp = await startIdp();
  const { code, signal } = await idp.stop();
  assert.equal(code, 0);
  assert.equal(signal, null);
  const lines = idp.stdout().split('\n').filter(Boolean);
  assert.equal(lines.length, 1, idp.stdout());
  assert.deepEqual(JSON.parse(lines[0]), { ready: true, issuer: `http://127.0.0.1:${idp.port}/`, port: idp.port });
  assert.match(idp.stderr(), /SIGTERM/);
});

test('SIGINT exits 0 as well', async () => {
  const idp = await startIdp();
  idp.child.kill('SIGINT');
  const { code } = await idp.exited;
  await idp.stop();
  assert.equal(code, 0);
});

test('--port and IDP_HOST choose where it listens', async () => {
  const probe = createServer().listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address();
  await new Promise((r) => { probe.close(r); });

  const idp = await startIdp(baseConfig(), { args: ['--port', String(port)], env: { IDP_HOST: '127.0.0.1' } });
  try {
    assert.equal(idp.port, port);
    assert.equal(idp.issuer, `http://127.0.0.1:${port}/`);
    const res = await fetch(`http://127.0.0.1:${port}/.well-known/openid-configuration`);
    assert.equal(res.status, 200);
  } finally {
    await idp.stop();
  }
});

test('a bad config file fails fast with a message on stderr and a non-zero exit', async () => {
  const child = spawn(process.execPath, [SERVER, '--config', '/nonexistent/idp.json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => { stdout += d; });
  child.stderr.on('data', (d) => { stderr += d; });
  const [code] = await once(child, 'exit');
  assert.notEqual(code, 0);
  assert.equal(stdout, '');
  assert.match(stderr, /nonexistent/);
});

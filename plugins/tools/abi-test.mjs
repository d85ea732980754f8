// End-to-end checks of the built modules in plugins/out against the
// reference host (reference-host.mjs): ABI shape, the standard plugins on
// sample input, the C and WAT examples, every hostile guest, and that a
// reused instance does not grow over many calls. Run: node tools/abi-test.mjs
// (plugins/test.sh does, when node is installed).

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import assert from 'node:assert/strict';
import { Plugin, LoadError, checkShape, onRequestWithDeadline } from './reference-host.mjs';

const out = join(dirname(fileURLToPath(import.meta.url)), '..', 'out');
const wasm = (name) => readFileSync(join(out, `${name}.wasm`));

let passed = 0;
const failures = [];
async function test(name, fn) {
  try {
    await fn();
    passed++;
  } catch (e) {
    failures.push(`${name}: ${e.stack || e}`);
  }
}

const load = (name, opts) => new Plugin(wasm(name), opts);
const loadFails = (name, opts, pattern) =>
  assert.throws(() => load(name, opts), (e) => e instanceof LoadError && pattern.test(e.message), `${name} should be refused (${pattern})`);

const GOOD = ['claims-to-headers', 'require-claims', 'tenant-guard', 'example-c', 'example-wat'];

await test('standard modules export exactly the ABI and import only portcullis', () => {
  for (const name of GOOD) {
    const shape = checkShape(wasm(name));
    const exports = shape.exports.map((e) => e.name).sort();
    assert.deepEqual(exports, ['memory', 'portcullis_abi_version', 'portcullis_alloc', 'portcullis_init', 'portcullis_on_request'], name);
    for (const i of shape.imports) assert.equal(i.module, 'portcullis', name);
  }
});

// ---- claims-to-headers ---------------------------------------------------
const C2H = {
  headers: [
    { header: 'X-User-Id', claim: 'sub', required: true },
    { header: 'X-User-Roles', claim: 'roles', array: 'join', separator: ',' },
    { header: 'X-Org', claim: 'org.tenant.id', default: 'none' },
    { header: 'X-Claims', claim: 'org', encoding: 'base64json' },
  ],
};
const C2H_ALLOW = ['x-user-id', 'x-user-roles', 'x-org', 'x-claims'];

await test('claims-to-headers maps claims in config order', () => {
  const p = load('claims-to-headers', { config: C2H, allow: C2H_ALLOW });
  const r = p.onRequest({ sub: 'u-1', roles: ['admin', 'ops'], org: { tenant: { id: 'acme' } }, n: 12.0 }, { path: '/x' });
  assert.equal(r.result, 'continue', r.error);
  assert.deepEqual(r.changes, [
    { op: 'set', name: 'x-user-id', value: 'u-1' },
    { op: 'set', name: 'x-user-roles', value: 'admin,ops' },
    { op: 'set', name: 'x-org', value: 'acme' },
    { op: 'set', name: 'x-claims', value: Buffer.from('{"tenant":{"id":"acme"}}').toString('base64') },
  ]);
  const missing = p.onRequest({ sub: 'u-2' }, {});
  assert.deepEqual(missing.changes, [
    { op: 'set', name: 'x-user-id', value: 'u-2' },
    { op: 'remove', name: 'x-user-roles' },
    { op: 'set', name: 'x-org', value: 'none' },
    { op: 'remove', name: 'x-claims' },
  ]);
  const denied = p.onRequest({}, {});
  assert.equal(denied.result, 'deny');
  assert.deepEqual(denied.deny, { status: 403, message: 'missing required claim' });
});

await test('claims-to-headers handles unicode, numbers and surrogate pairs', () => {
  const p = load('claims-to-headers', { config: { headers: [{ header: 'X-A', claim: 'a' }, { header: 'X-B', claim: 'b', array: 'json' }] }, allow: ['x-a', 'x-b'] });
  const r = p.onRequest({ a: 'Zoë 😀', b: [1, 2.5, 'é😀', true, null] }, {});
  assert.equal(r.result, 'continue', r.error);
  assert.deepEqual(r.changes, [
    { op: 'set', name: 'x-a', value: 'Zoë 😀' },
    { op: 'set', name: 'x-b', value: '[1,2.5,"\\u00e9\\ud83d\\ude00",true,null]' },
  ]);
  assert.deepEqual(JSON.parse(r.changes[1].value), [1, 2.5, 'é😀', true, null]);
});

await test('claims-to-headers rejects a bad config at load with the reason', () => {
  loadFails('claims-to-headers', { config: { headers: [{ header: 'Authorization', claim: 'sub' }] } }, /config rejected.*may never be changed/);
  loadFails('claims-to-headers', { config: {} }, /needs `headers`/);
  loadFails('claims-to-headers', {}, /needs `headers`/);
});

await test('a header outside the allow-list makes claims-to-headers fail loudly', () => {
  const p = load('claims-to-headers', { config: C2H, allow: ['x-user-id'] });
  const r = p.onRequest({ sub: 'u', roles: [] }, {});
  assert.equal(r.result, 'error');
  assert.deepEqual(r.changes, []);
  assert.equal(r.refused[0].code, 1);
  assert.match(r.logs.at(-1).message, /x-user-roles|X-User-Roles/i);
});

await test('claims with CR/LF never become headers', () => {
  const p = load('claims-to-headers', { config: C2H, allow: C2H_ALLOW });
  const r = p.onRequest({ sub: 'a\r\nX-Evil: 1' }, {});
  assert.equal(r.result, 'error');
  assert.deepEqual(r.refused, []); // caught in the guest before any host call
});

// ---- require-claims --------------------------------------------------------
await test('require-claims allows and denies', () => {
  const p = load('require-claims', {
    config: { rules: [{ claim: 'role', any_of: ['admin', 'ops'] }, { claim: 'groups', contains: 'billing' }], mode: 'all', status: 403, message: 'forbidden' },
  });
  assert.equal(p.onRequest({ role: 'ops', groups: ['billing'] }, {}).result, 'continue');
  const d = p.onRequest({ role: 'dev', groups: ['billing'] }, {});
  assert.equal(d.result, 'deny');
  assert.deepEqual(d.deny, { status: 403, message: 'forbidden' });
  loadFails('require-claims', { config: { rules: [{ claim: 'role', matches: '.*' }] } }, /unknown key `matches`/);
});

// ---- tenant-guard ------------------------------------------------------------
await test('tenant-guard compares the path segment with the claim', () => {
  const p = load('tenant-guard', { config: { segment: 2, claim: 'tenant_id', status: 403 } });
  const claims = { tenant_id: 'acme' };
  assert.equal(p.onRequest(claims, { path: '/tenants/acme/orders' }).result, 'continue');
  for (const path of ['/tenants/globex/orders', '/tenants/acme/../globex', '/tenants/acme/%2e%2e/globex', '/tenants//acme', '/tenants']) {
    const r = p.onRequest(claims, { path });
    assert.equal(r.result, 'deny', path);
    assert.equal(r.deny.status, 403);
  }
  assert.equal(p.onRequest({}, { path: '/tenants/acme' }).result, 'deny');
});

// ---- examples in other languages ----------------------------------------------
await test('example-c copies the method, ignoring a header named "method"', () => {
  const p = load('example-c', { allow: ['x-request-method'] });
  const r = p.onRequest({}, { method: 'PATCH', path: '/a', headers: { method: 'EVIL', 'x-a': '"method":"EVIL"' } });
  assert.equal(r.result, 'continue', r.error);
  assert.deepEqual(r.changes, [{ op: 'set', name: 'x-request-method', value: 'PATCH' }]);
  // Key order must not matter.
  const big = { headers: { a: 'x'.repeat(30000) }, path: '/', query: '', host: 'h', method: 'DELETE' };
  const r2 = p.onRequest({ pad: 'y'.repeat(30000) }, big);
  assert.deepEqual(r2.changes, [{ op: 'set', name: 'x-request-method', value: 'DELETE' }]);
  const refused = load('example-c', { allow: [] }).onRequest({}, {});
  assert.equal(refused.result, 'error');
});

await test('example-wat sets x-plugin-lang', () => {
  const p = load('example-wat', { allow: ['x-plugin-lang'], limits: { claimsBytes: 1 << 20 } });
  const r = p.onRequest({ sub: 'x' }, {});
  assert.equal(r.result, 'continue', r.error);
  assert.deepEqual(r.changes, [{ op: 'set', name: 'x-plugin-lang', value: 'wat' }]);
  // Inputs bigger than the initial memory make alloc grow it.
  const r2 = p.onRequest({ pad: 'z'.repeat(200000) }, {});
  assert.equal(r2.result, 'continue', r2.error);
  assert.ok(p.x.memory.buffer.byteLength > 200000);
  // Over the host's input cap: refused before the guest sees it.
  const r3 = load('example-wat', { allow: ['x-plugin-lang'] }).onRequest({ pad: 'z'.repeat(70000) }, {});
  assert.match(r3.error, /byte cap/);
});

// ---- reuse without growth --------------------------------------------------------
await test('reused Rust instances do not grow over 20000 calls', () => {
  for (const [name, opts, claims, req] of [
    ['claims-to-headers', { config: C2H, allow: C2H_ALLOW }, { sub: 'u', roles: ['a', 'b'], org: { tenant: { id: 't' } } }, {}],
    ['require-claims', { config: { rules: [{ claim: 'role', equals: 'admin' }] } }, { role: 'user' }, {}],
    ['tenant-guard', { config: { segment: 1 } }, { tenant_id: 'a' }, { path: '/a/b' }],
  ]) {
    const p = load(name, opts);
    for (let i = 0; i < 500; i++) p.onRequest(claims, req);
    const before = p.x.memory.buffer.byteLength;
    for (let i = 0; i < 20000; i++) {
      const r = p.onRequest(claims, req);
      assert.notEqual(r.result, 'error', `${name}: ${r.error}`);
    }
    assert.equal(p.x.memory.buffer.byteLength, before, `${name} memory grew`);
  }
});

await test('inputs larger than the default JSON nesting are rejected as plugin errors, not traps', () => {
  const p = load('require-claims', { config: { rules: [{ claim: 'a', exists: true }] } });
  let deep = 1;
  for (let i = 0; i < 200; i++) deep = [deep];
  const r = p.onRequest({ a: deep }, {});
  assert.equal(r.result, 'error');
  assert.equal(p.traps, 0);
  assert.match(r.logs[0].message, /nesting too deep/);
});

// ---- hostile guests ------------------------------------------------------------------
await test('hostile guests refused at load', () => {
  loadFails('hostile-wrong-abi-version', {}, /ABI version 2/);
  loadFails('hostile-missing-export', {}, /portcullis_on_request/);
  loadFails('hostile-import-wasi', {}, /wasi_snapshot_preview1\.fd_write/);
  loadFails('hostile-wrong-import-signature', {}, /portcullis\.set_header has type/);
  loadFails('hostile-init-fails', {}, /config rejected.*rejects every config/);
  loadFails('hostile-alloc-out-of-bounds', {}, /outside memory/);
});

await test('hostile guests failing per call', () => {
  const allow = { allow: ['x-user-id', 'authorization', 'host'] };
  const cases = {
    'hostile-trap': /trap/,
    'hostile-bad-return': /returned 7/,
    'hostile-deny-500': /500 outside/,
    'hostile-bad-pointer': /outside memory/,
    'hostile-deny-then-continue': /deny was called/,
    'hostile-deny-without-call': /without calling deny/,
  };
  for (const [name, pattern] of Object.entries(cases)) {
    const p = load(name, allow);
    const r = p.onRequest({}, {});
    assert.equal(r.result, 'error', name);
    assert.match(r.error, pattern, name);
  }
  const t = load('hostile-trap', allow);
  t.onRequest({}, {});
  t.onRequest({}, {});
  assert.equal(t.traps, 2); // re-created after each trap, then trapped again
});

await test('hostile guests whose header calls are refused', () => {
  const allow = ['x-user-id', 'authorization', 'host']; // even when (wrongly) allow-listed
  for (const [name, code] of [['hostile-set-authorization', 1], ['hostile-set-host', 1], ['hostile-crlf-value', 2]]) {
    const p = load(name, { allow });
    const r = p.onRequest({}, {});
    assert.equal(r.result, 'continue', name);
    assert.deepEqual(r.changes, [], name);
    assert.equal(r.refused[0].code, code, name);
    assert.equal(p.refusals, 1, name);
  }
});

await test('hostile infinite loop is stopped by a deadline', async () => {
  const r = await onRequestWithDeadline(wasm('hostile-infinite-loop'), {}, {}, {}, 300);
  assert.equal(r.result, 'error');
  assert.match(r.error, /deadline/);
});

await test('hostile memory bomb is well-formed (run it only under a real memory cap)', () => {
  const shape = checkShape(wasm('hostile-memory-bomb'));
  assert.equal(shape.memory.max, undefined);
});

if (failures.length) {
  console.error(failures.join('\n\n'));
  console.error(`abi-test: ${failures.length} failed, ${passed} passed`);
  process.exit(1);
}
console.log(`abi-test: ${passed} end-to-end checks passed (reference host, node ${process.version})`);

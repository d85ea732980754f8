// End-to-end checks of the built modules in plugins/out against the
// reference host (reference-host.mjs): ABI shape and version of each module,
// the standard plugins on sample input (ABI v2, and claims-to-headers' v1
// build giving the same outcomes), the C and WAT examples (v2, and the v1
// WAT), every hostile guest (v1 and v2), and that a reused instance does not
// grow over many calls. Run: node tools/abi-test.mjs (plugins/test.sh does,
// when node is installed).

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import assert from 'node:assert/strict';
import { Plugin, LoadError, checkShape, onRequestWithDeadline, V1_IMPORTS } from './reference-host.mjs';

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

// name -> ABI version
const GOOD = {
  'claims-to-headers': 2, 'claims-to-headers-v1': 1, 'require-claims': 2, 'tenant-guard': 2,
  'example-c': 2, 'example-wat': 2, 'example-wat-v1': 1,
};

await test('standard modules export exactly the ABI, import only portcullis, and have the expected version', () => {
  for (const [name, abi] of Object.entries(GOOD)) {
    const shape = checkShape(wasm(name));
    const exports = shape.exports.map((e) => e.name).sort();
    assert.deepEqual(exports, ['memory', 'portcullis_abi_version', 'portcullis_alloc', 'portcullis_init', 'portcullis_on_request'], name);
    for (const i of shape.imports) assert.equal(i.module, 'portcullis', name);
    assert.equal(shape.abi, abi, name);
    assert.equal(load(name, { config: name.startsWith('claims') ? C2H : name === 'require-claims' ? { rules: [{ claim: 'a', exists: true }] } : name === 'tenant-guard' ? { segment: 1 } : {} }).abi, abi, name);
  }
  // The v1 build imports only v1 functions; the v2 build reads no JSON and
  // writes headers only through header_batch.
  const v1 = checkShape(wasm('claims-to-headers-v1')).imports.map((i) => i.field);
  for (const f of v1) assert.ok(V1_IMPORTS.includes(f), `claims-to-headers-v1 imports ${f}`);
  const v2 = checkShape(wasm('claims-to-headers')).imports.map((i) => i.field).sort();
  assert.deepEqual(v2, ['claim', 'claim_count', 'claim_kind', 'deny', 'header_batch', 'log']);
});

// The same tests for the v2 build and the v1 build of claims-to-headers.
for (const C2H_NAME of ['claims-to-headers', 'claims-to-headers-v1']) {
  await test(`${C2H_NAME} maps claims in config order`, () => {
    const p = load(C2H_NAME, { config: C2H, allow: C2H_ALLOW });
    const r = p.onRequest({ sub: 'u-1', roles: ['admin', 'ops'], org: { tenant: { id: 'acme' } }, n: 12.0 }, { path: '/x' });
    assert.equal(r.result, 'continue', r.error);
    assert.deepEqual(r.changes, [
      { op: 'set', name: 'x-user-id', value: 'u-1' },
      { op: 'set', name: 'x-user-roles', value: 'admin,ops' },
      { op: 'set', name: 'x-org', value: 'acme' },
      { op: 'set', name: 'x-claims', value: Buffer.from('{"tenant":{"id":"acme"}}').toString('base64') },
    ]);
    assert.equal(r.batches, C2H_NAME === 'claims-to-headers' ? 1 : 0);
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

  await test(`${C2H_NAME} handles unicode, numbers and surrogate pairs`, () => {
    const p = load(C2H_NAME, { config: { headers: [{ header: 'X-A', claim: 'a' }, { header: 'X-B', claim: 'b', array: 'json' }] }, allow: ['x-a', 'x-b'] });
    const r = p.onRequest({ a: 'Zoë 😀', b: [1, 2.5, 'é😀', true, null] }, {});
    assert.equal(r.result, 'continue', r.error);
    assert.deepEqual(r.changes, [
      { op: 'set', name: 'x-a', value: 'Zoë 😀' },
      { op: 'set', name: 'x-b', value: '[1,2.5,"\\u00e9\\ud83d\\ude00",true,null]' },
    ]);
    assert.deepEqual(JSON.parse(r.changes[1].value), [1, 2.5, 'é😀', true, null]);
  });

  await test(`${C2H_NAME} rejects a bad config at load with the reason`, () => {
    loadFails(C2H_NAME, { config: { headers: [{ header: 'Authorization', claim: 'sub' }] } }, /config rejected.*may never be changed/);
    loadFails(C2H_NAME, { config: {} }, /needs `headers`/);
    loadFails(C2H_NAME, {}, /needs `headers`/);
    loadFails(C2H_NAME, { config: { headers: [{ header: 'X-A', claim: ['a\u0000b'] }] } }, /NUL/);
  });

  await test(`a header outside the allow-list makes ${C2H_NAME} fail loudly`, () => {
    const p = load(C2H_NAME, { config: C2H, allow: ['x-user-id'] });
    const r = p.onRequest({ sub: 'u', roles: [] }, {});
    assert.equal(r.result, 'error');
    assert.deepEqual(r.changes, []);
    assert.equal(r.refused[0].code, 1);
    assert.equal(r.refused[0].name, 'X-User-Roles');
    assert.equal(r.logs.at(-1).message, 'set_header(`X-User-Roles`) refused: not on the plugin\'s header allow-list, or forbidden');
  });

  await test(`claims with CR/LF never become headers (${C2H_NAME})`, () => {
    const p = load(C2H_NAME, { config: C2H, allow: C2H_ALLOW });
    const r = p.onRequest({ sub: 'a\r\nX-Evil: 1' }, {});
    assert.equal(r.result, 'error');
    assert.deepEqual(r.refused, []); // caught in the guest before any host call
    assert.match(r.logs.at(-1).message, /claim `sub` cannot go into header `X-User-Id`: header value contains CR, LF or NUL/);
  });
}

// ---- v1 / v2 equivalence ---------------------------------------------------
const EQ_CONFIGS = [
  C2H,
  { headers: [{ header: 'X-A', claim: 'a' }, { header: 'X-R', claim: 'roles', separator: '; ' }, { header: 'X-S', claim: 'sub' }] },
  { headers: [{ header: 'X-A', claim: 'a', array: 'json' }, { header: 'X-R', claim: 'roles', array: 'json' }, { header: 'X-S', claim: 'sub', array: 'json' }] },
  { headers: [{ header: 'X-A', claim: 'a', encoding: 'base64' }, { header: 'X-R', claim: 'roles', encoding: 'base64' }, { header: 'X-S', claim: 'sub', encoding: 'base64', array: 'json' }] },
  { headers: [{ header: 'X-A', claim: 'a', encoding: 'base64json' }, { header: 'X-R', claim: 'roles', encoding: 'base64json' }, { header: 'X-S', claim: 'sub', encoding: 'base64json' }, { header: 'X-O', claim: 'org', encoding: 'base64json' }] },
  { headers: [{ header: 'X-D', claim: ['https://example.com/roles'] }, { header: 'X-E', claim: ['a.b'] }, { header: 'X-F', claim: 'a.b' }, { header: 'X-G', claim: 'roles.1', default: '-' }, { header: 'X-T', claim: 'org.tenant.id', required: true }], missing_status: 401, missing_message: 'log in' },
];
const EQ_ALLOW = ['x-user-id', 'x-user-roles', 'x-org', 'x-claims', 'x-a', 'x-r', 'x-s', 'x-o', 'x-d', 'x-e', 'x-f', 'x-g', 'x-t'];
// JSON texts, sent verbatim (so 42.0 and 1e-7 reach the guests as written).
const EQ_CLAIMS = [
  '{"sub":"u-1","roles":["admin","ops"],"org":{"tenant":{"id":"acme"}}}',
  '{"sub":"u-1","org":null}',
  '{"roles":["a"]}',
  '{"sub":null}',
  '{}',
  '{"sub":42.0,"a":1e-7,"roles":[0.25,1.5e300,-7,42.0,1e21,123456789012,1152921504606846976]}',
  '{"sub":"Zoë 😀","a":["é😀",true,null,[2,[]],{"k":"é","n":null}],"roles":[]}',
  '{"sub":"x","a":"[not an array","roles":"[1,2]"}',
  '{"sub":"x","a":{"b":[1,"é","\\u007f\\\\u00e9\\"\\n"]},"org":{"tenant":{"id":7}}}',
  '{"sub":"x","https://example.com/roles":["r1","r2"],"a.b":"dotted","a":{"b":"nested"}}',
  '{"sub":"x\\r\\nX-Evil: 1"}',
  '{"sub":true,"a":false,"roles":[true,false]}',
  '{"sub":"s","a":["x\\ny"],"roles":["a,b","c"],"org":{"tenant":{"id":"😀"},"x":[null]}}',
  `{"sub":"${'x'.repeat(9000)}"}`,
  `{"sub":"big","a":"${'é'.repeat(3000)}","roles":["${'y'.repeat(2000)}","z"]}`,
];

await test('claims-to-headers v1 and v2 builds give the same outcome for the same claims', () => {
  for (const config of EQ_CONFIGS) {
    const v1 = load('claims-to-headers-v1', { config, allow: EQ_ALLOW });
    const v2 = load('claims-to-headers', { config, allow: EQ_ALLOW });
    for (const claims of EQ_CLAIMS) {
      const a = v1.onRequest(claims, {});
      const b = v2.onRequest(claims, {});
      const what = `${JSON.stringify(config).slice(0, 60)} ${claims.slice(0, 80)}`;
      assert.equal(b.result, a.result, what);
      assert.deepEqual(b.changes, a.changes, what);
      assert.deepEqual(b.deny, a.deny, what);
      assert.deepEqual(b.logs, a.logs, what);
      assert.ok(b.batches <= 1, what);
    }
  }
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

await test('require-claims (v2) compares numbers by value and types strictly, on nested and dotted paths', () => {
  const rules = (r) => load('require-claims', { config: { rules: [r] } });
  const ok = (p, claims) => p.onRequest(claims, {}).result === 'continue';
  const n = rules({ claim: 'n', equals: 42 });
  assert.ok(ok(n, '{"n":42.0}'));
  assert.ok(ok(n, '{"n":42}'));
  assert.ok(!ok(n, '{"n":"42"}'));
  assert.ok(!ok(n, '{"n":[42]}'));
  const f = rules({ claim: 'a.b.0', any_of: [1e-7, 0.25] });
  assert.ok(ok(f, '{"a":{"b":[1e-7]}}'));
  assert.ok(ok(f, '{"a":{"b":[0.25]}}'));
  assert.ok(!ok(f, '{"a":{"b":[0.5]}}'));
  const u = rules({ claim: ['https://x.io/roles'], contains: 'é😀' });
  assert.ok(ok(u, { 'https://x.io/roles': ['a', 'é😀'] }));
  assert.ok(!ok(u, { https: { '//x': { 'io/roles': ['é😀'] } } }));
  const e = rules({ claim: 'x', exists: false });
  assert.ok(ok(e, '{"x":null}'));
  assert.ok(!ok(e, '{"x":0}'));
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
  // Integer literals only, as in v1: 42 matches /tenants/42, 42.0 does not.
  assert.equal(p.onRequest('{"tenant_id":42}', { path: '/tenants/42' }).result, 'continue');
  assert.equal(p.onRequest('{"tenant_id":42.0}', { path: '/tenants/42' }).result, 'deny');
});

// ---- examples in other languages ----------------------------------------------
await test('example-c (v2) sets the method and the sub claim in one batch', () => {
  const p = load('example-c', { allow: ['x-request-method', 'x-plugin-sub'] });
  const r = p.onRequest({ sub: 'u-1' }, { method: 'PATCH', path: '/a', headers: { method: 'EVIL' } });
  assert.equal(r.result, 'continue', r.error);
  assert.deepEqual(r.changes, [{ op: 'set', name: 'x-request-method', value: 'PATCH' }, { op: 'set', name: 'x-plugin-sub', value: 'u-1' }]);
  assert.equal(r.batches, 1);
  // No sub: only the method; a long sub takes the retry path.
  assert.deepEqual(p.onRequest({}, { method: 'DELETE' }).changes, [{ op: 'set', name: 'x-request-method', value: 'DELETE' }]);
  const long = 'é'.repeat(2000);
  assert.deepEqual(p.onRequest({ sub: long }, {}).changes[1], { op: 'set', name: 'x-plugin-sub', value: long });
  // A method only the allow-list lacks: the batch is refused at entry 0.
  const refused = load('example-c', { allow: [] }).onRequest({}, {});
  assert.equal(refused.result, 'error');
  assert.match(refused.logs.at(-1).message, /refused X-Request-Method/);
  const sub = load('example-c', { allow: ['x-request-method'] }).onRequest({ sub: 's' }, {});
  assert.equal(sub.result, 'error');
  assert.match(sub.logs.at(-1).message, /refused X-Plugin-Sub/);
});

await test('example-wat (v2) and example-wat-v1 set x-plugin-lang', () => {
  for (const name of ['example-wat', 'example-wat-v1']) {
    const p = load(name, { allow: ['x-plugin-lang'], limits: { claimsBytes: 1 << 20 } });
    const r = p.onRequest({ sub: 'x' }, {});
    assert.equal(r.result, 'continue', r.error);
    assert.deepEqual(r.changes, [{ op: 'set', name: 'x-plugin-lang', value: 'wat' }], name);
    assert.equal(r.batches, name === 'example-wat' ? 1 : 0);
    const refused = load(name, { allow: [] }).onRequest({}, {});
    assert.equal(refused.result, 'error', name);
  }
  // v1: inputs bigger than the initial memory make alloc grow it.
  const p = load('example-wat-v1', { allow: ['x-plugin-lang'], limits: { claimsBytes: 1 << 20 } });
  const r2 = p.onRequest({ pad: 'z'.repeat(200000) }, {});
  assert.equal(r2.result, 'continue', r2.error);
  assert.ok(p.x.memory.buffer.byteLength > 200000);
  // v1: over the host's input cap, refused before the guest sees it.
  const r3 = load('example-wat-v1', { allow: ['x-plugin-lang'] }).onRequest({ pad: 'z'.repeat(70000) }, {});
  assert.match(r3.error, /byte cap/);
  // v2: nothing is copied in, so the v1 input caps do not apply.
  const v2 = load('example-wat', { allow: ['x-plugin-lang'] });
  assert.equal(v2.onRequest({ pad: 'z'.repeat(70000) }, {}).result, 'continue');
  assert.equal(v2.x.memory.buffer.byteLength, 65536);
});

// ---- reuse without growth --------------------------------------------------------
await test('reused Rust instances do not grow over 20000 calls', () => {
  for (const [name, opts, claims, req] of [
    ['claims-to-headers', { config: C2H, allow: C2H_ALLOW }, { sub: 'u', roles: ['a', 'b'], org: { tenant: { id: 't' } } }, {}],
    ['claims-to-headers-v1', { config: C2H, allow: C2H_ALLOW }, { sub: 'u', roles: ['a', 'b'], org: { tenant: { id: 't' } } }, {}],
    ['require-claims', { config: { rules: [{ claim: 'role', equals: 'admin' }] } }, { role: 'user' }, {}],
    ['tenant-guard', { config: { segment: 1 } }, { tenant_id: 'a' }, { path: '/a/b' }],
    ['tenant-guard', { config: { segment: 1 } }, { tenant_id: 7 }, { path: '/7/b' }],
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

await test('v1: inputs deeper than the JSON nesting limit are plugin errors, not traps; v2 does not parse them', () => {
  let deep = 1;
  for (let i = 0; i < 200; i++) deep = [deep];
  const p = load('claims-to-headers-v1', { config: { headers: [{ header: 'X-A', claim: 'a' }] }, allow: ['x-a'] });
  const r = p.onRequest({ a: deep }, {});
  assert.equal(r.result, 'error');
  assert.equal(p.traps, 0);
  assert.match(r.logs[0].message, /nesting too deep/);
  const v2 = load('require-claims', { config: { rules: [{ claim: 'a', exists: true }] } });
  assert.equal(v2.onRequest({ a: deep }, {}).result, 'continue');
  assert.equal(v2.traps, 0);
});

// ---- hostile guests (v1) -------------------------------------------------------------
await test('hostile guests refused at load', () => {
  loadFails('hostile-wrong-abi-version', {}, /portcullis_on_request\(i32, i32, i32, i32\) \(ABI v1\) but portcullis_abi_version returned 2/);
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

await test('hostile guests whose header calls are refused: the invocation is void', () => {
  const allow = ['x-user-id', 'authorization', 'host']; // even when (wrongly) allow-listed
  for (const [name, code] of [['hostile-set-authorization', 1], ['hostile-set-host', 1], ['hostile-crlf-value', 2]]) {
    const p = load(name, { allow });
    const r = p.onRequest({}, {});
    assert.equal(r.code, 0, name); // the guest ignored the answer ...
    assert.equal(r.result, 'error', name); // ... the host does not
    assert.ok(r.violation, name);
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

// ---- hostile guests (v2) -------------------------------------------------------------
await test('hostile v2 guests refused at load', () => {
  loadFails('hostile-v2-version-mismatch', {}, /exports portcullis_on_request\(\) \(ABI v2\) but portcullis_abi_version returned 1/);
  loadFails('hostile-v2-on-request-bad-signature', {}, /portcullis_on_request has type \(i32\) -> i32; expected \(i32, i32, i32, i32\) -> i32 \(ABI v1\) or \(\) -> i32 \(ABI v2\)/);
  loadFails('hostile-v2-claim-in-init', {}, /init failed: claim called outside on_request/);
});

await test('hostile v2 header_batch guests: bad length answers 2, a forbidden entry 1 | 1 << 8; both void the call', () => {
  const allow = ['x-user-id', 'authorization', 'x-other']; // authorization (wrongly) allow-listed
  const bad = load('hostile-v2-batch-bad-length', { allow }).onRequest({}, {});
  assert.equal(bad.code, 0);
  assert.equal(bad.result, 'error');
  assert.ok(bad.violation);
  assert.deepEqual(bad.changes, []);
  assert.deepEqual(bad.refused, [{ op: 'batch', name: null, code: 2 }]);
  assert.equal(bad.logs[0].message, 'v2-batch-bad-length: answered 2');
  const p = load('hostile-v2-batch-forbidden', { allow });
  const r = p.onRequest({}, {});
  assert.equal(r.code, 0);
  assert.equal(r.result, 'error');
  assert.ok(r.violation);
  assert.deepEqual(r.changes, []); // entry 0 was accepted, but the call is void
  assert.deepEqual(r.refused, [{ op: 'set', name: 'authorization', code: 1 }]); // entry 2 never looked at
  assert.equal(r.logs[0].message, 'v2-batch-forbidden: answered 257');
  assert.equal(p.refusals, 1);
});

await test('hostile v2 claim with a buffer outside memory traps', () => {
  const p = load('hostile-v2-claim-out-of-bounds', {});
  const r = p.onRequest({ sub: 'x' }, {});
  assert.equal(r.result, 'error');
  assert.match(r.error, /trap: guest pointer \d+\+256 outside memory/);
  assert.equal(p.traps, 1);
});

await test('hostile v2 infinite loop is stopped by a deadline', async () => {
  const r = await onRequestWithDeadline(wasm('hostile-v2-infinite-loop'), {}, {}, {}, 300);
  assert.equal(r.result, 'error');
  assert.match(r.error, /deadline/);
});

await test('v2 buffer protocol: length with cap 0, nothing written when short, then the value', () => {
  const p = load('hostile-v2-buffer-retry', { allow: ['x-sub'] });
  for (const sub of ['u-1', 'Zoë 😀', 'x'.repeat(3000), 'é'.repeat(4000), '']) {
    const r = p.onRequest({ sub }, {});
    assert.equal(r.result, 'continue', `${sub.slice(0, 10)}: ${r.error} ${JSON.stringify(r.logs)}`);
    assert.deepEqual(r.changes, [{ op: 'set', name: 'x-sub', value: sub }]);
  }
  const none = p.onRequest({ sub: null }, {});
  assert.equal(none.result, 'error');
  assert.equal(none.logs[0].message, 'v2-buffer-retry: no sub claim');
});

if (failures.length) {
  console.error(failures.join('\n\n'));
  console.error(`abi-test: ${failures.length} failed, ${passed} passed`);
  process.exit(1);
}
console.log(`abi-test: ${passed} end-to-end checks passed (reference host, node ${process.version})`);

// A minimal, dependency-free host for Portcullis plugin ABI v1, in plain
// JavaScript (Node >= 18). It exists to run the built modules end to end in
// plugins/test.sh (see abi-test.mjs) and as an executable reading of
// plugins/ABI.md. It is NOT the gateway's host (that one is wasmtime, in
// src/plugin): it cannot enforce the memory cap during a call or interrupt a
// running call, so it only checks the memory size after each call.

import { Worker } from 'node:worker_threads';

export const ABI_VERSION = 1;
export const MAX_HEADER_VALUE_LEN = 8192;
export const FORBIDDEN_HEADERS = new Set([
  'host', 'authorization', 'cookie', 'content-length', 'transfer-encoding',
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization',
  'proxy-connection', 'te', 'trailer', 'upgrade', 'forwarded',
]);
export const DEFAULT_LIMITS = {
  memoryBytes: 16 * 1024 * 1024,
  configBytes: 64 * 1024,
  claimsBytes: 64 * 1024,
  requestBytes: 64 * 1024,
  logBytes: 1024,
  denyBytes: 1024,
};

const I32 = 0x7f;
const sig = (params, results) => params.map(String).join(',') + '->' + results.map(String).join(',');
const i32s = (n) => Array(n).fill(I32);

/** Host imports of ABI v1: module `portcullis`, name -> signature. */
export const IMPORTS = {
  set_header: sig(i32s(4), [I32]),
  append_header: sig(i32s(4), [I32]),
  remove_header: sig(i32s(2), [I32]),
  deny: sig(i32s(3), []),
  log: sig(i32s(3), []),
};

/** Required guest function exports -> signature (plus `memory`). */
export const EXPORTS = {
  portcullis_abi_version: sig([], [I32]),
  portcullis_alloc: sig([I32], [I32]),
  portcullis_init: sig(i32s(2), [I32]),
  portcullis_on_request: sig(i32s(4), [I32]),
};

export class LoadError extends Error {}

// ---- a tiny reader of the binary format: types, imports, functions, exports
function readModuleShape(bytes) {
  const b = new Uint8Array(bytes);
  let i = 8;
  const u32 = () => {
    let r = 0, shift = 0, c;
    do { c = b[i++]; r |= (c & 0x7f) << shift; shift += 7; } while (c & 0x80);
    return r >>> 0;
  };
  const name = () => { const n = u32(); const s = new TextDecoder().decode(b.subarray(i, i + n)); i += n; return s; };
  const limits = () => { const f = u32(); const min = u32(); const max = (f & 1) ? u32() : undefined; return { min, max }; };
  const types = [], imports = [], funcs = [], exports = [];
  let memory;
  while (i < b.length) {
    const id = b[i++], size = u32(), end = i + size;
    if (id === 1) {
      for (let n = u32(); n > 0; n--) {
        if (b[i++] !== 0x60) throw new LoadError('unsupported type form');
        const p = []; for (let k = u32(); k > 0; k--) p.push(b[i++]);
        const r = []; for (let k = u32(); k > 0; k--) r.push(b[i++]);
        types.push(sig(p, r));
      }
    } else if (id === 2) {
      for (let n = u32(); n > 0; n--) {
        const module = name(), field = name(), kind = b[i++];
        let type;
        if (kind === 0) type = types[u32()];
        else if (kind === 1) { i++; limits(); }
        else if (kind === 2) limits();
        else if (kind === 3) { i += 2; }
        imports.push({ module, field, kind, type });
        if (kind === 0) funcs.push(type);
      }
    } else if (id === 3) {
      for (let n = u32(); n > 0; n--) funcs.push(types[u32()]);
    } else if (id === 5) {
      if (u32() > 0) memory = limits();
    } else if (id === 7) {
      for (let n = u32(); n > 0; n--) { const nm = name(); const kind = b[i++]; const idx = u32(); exports.push({ name: nm, kind, type: kind === 0 ? funcs[idx] : undefined }); }
    }
    i = end;
  }
  return { imports, exports, memory };
}

/** Checks a module's imports and exports against ABI v1; throws LoadError. */
export function checkShape(bytes) {
  const shape = readModuleShape(bytes);
  for (const imp of shape.imports) {
    if (imp.module !== 'portcullis' || !(imp.field in IMPORTS) || imp.kind !== 0) {
      throw new LoadError(`unsupported import ${imp.module}.${imp.field} (only functions from module "portcullis": ${Object.keys(IMPORTS).join(', ')})`);
    }
    if (imp.type !== IMPORTS[imp.field]) {
      throw new LoadError(`import portcullis.${imp.field} has type ${imp.type}, expected ${IMPORTS[imp.field]}`);
    }
  }
  const byName = new Map(shape.exports.map((e) => [e.name, e]));
  const mem = byName.get('memory');
  if (!mem || mem.kind !== 2) throw new LoadError('missing required export `memory`');
  for (const [nm, want] of Object.entries(EXPORTS)) {
    const e = byName.get(nm);
    if (!e || e.kind !== 0) throw new LoadError(`missing required export \`${nm}\``);
    if (e.type !== want) throw new LoadError(`export ${nm} has type ${e.type}, expected ${want}`);
  }
  return shape;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * One plugin instance. `opts`: { config (any JSON value, default {}),
 * allow (header names the plugin may change), requestHeaders, limits }.
 */
export class Plugin {
  constructor(bytes, opts = {}) {
    this.bytes = bytes;
    this.opts = opts;
    this.limits = { ...DEFAULT_LIMITS, ...(opts.limits || {}) };
    this.allow = new Set((opts.allow || []).map((h) => h.toLowerCase()));
    this.refusals = 0;
    this.traps = 0;
    const shape = checkShape(bytes);
    if (shape.memory && shape.memory.min * 65536 > this.limits.memoryBytes) {
      throw new LoadError('initial memory exceeds the memory cap');
    }
    this.module = new WebAssembly.Module(bytes);
    this.instantiate();
  }

  instantiate() {
    const host = this;
    const call = () => host.current;
    const imports = {
      set_header: (np, nl, vp, vl) => host.headerCall('set', np, nl, vp, vl),
      append_header: (np, nl, vp, vl) => host.headerCall('append', np, nl, vp, vl),
      remove_header: (np, nl) => host.headerCall('remove', np, nl),
      deny: (status, mp, ml) => {
        const c = host.inRequest('deny');
        const bytes = host.bytesAt(mp, ml);
        c.deny = { status, message: new TextDecoder().decode(bytes.subarray(0, host.limits.denyBytes)) };
      },
      log: (level, mp, ml) => {
        const bytes = host.bytesAt(mp, ml);
        const msg = new TextDecoder().decode(bytes.subarray(0, host.limits.logBytes));
        (call() || host.loadLogs).logs.push({ level: Math.max(0, Math.min(3, level)), message: msg });
      },
    };
    this.loadLogs = { logs: [] };
    this.instance = new WebAssembly.Instance(this.module, { portcullis: imports });
    this.x = this.instance.exports;
    const v = this.x.portcullis_abi_version();
    if (v !== ABI_VERSION) throw new LoadError(`module implements ABI version ${v}; this host supports ${ABI_VERSION}`);
    const cfg = JSON.stringify(this.opts.config === undefined ? {} : this.opts.config);
    this.current = this.loadLogs;
    let rc;
    try {
      const [p, n] = this.copyIn(cfg, this.limits.configBytes, 'config');
      rc = this.x.portcullis_init(p, n);
    } catch (e) {
      throw new LoadError(`init failed: ${e.message}`);
    } finally {
      this.current = undefined;
    }
    if (rc !== 0) {
      const why = this.loadLogs.logs.map((l) => l.message).join('; ');
      throw new LoadError(`config rejected (init returned ${rc})${why ? ': ' + why : ''}`);
    }
    this.checkMemory();
  }

  get memory() { return new Uint8Array(this.x.memory.buffer); }

  bytesAt(ptr, len) {
    ptr >>>= 0; len >>>= 0;
    const mem = this.memory;
    if (ptr + len > mem.length) throw new Error(`guest pointer ${ptr}+${len} outside memory`);
    return mem.subarray(ptr, ptr + len);
  }

  text(ptr, len) { return utf8.decode(this.bytesAt(ptr, len)); } // throws on bad UTF-8

  checkMemory() {
    if (this.x.memory.buffer.byteLength > this.limits.memoryBytes) throw new Error('memory cap exceeded');
  }

  copyIn(str, cap, what) {
    const data = new TextEncoder().encode(str);
    if (data.length > cap) throw new Error(`${what} is ${data.length} bytes, over the ${cap} byte cap`);
    const p = this.x.portcullis_alloc(data.length) >>> 0;
    if (p === 0) throw new Error(`portcullis_alloc(${data.length}) for ${what} returned 0`);
    const mem = this.memory; // after alloc: it may have grown memory
    if (p + data.length > mem.length) throw new Error(`portcullis_alloc returned ${p}, outside memory`);
    mem.set(data, p);
    return [p, data.length];
  }

  // Header and deny calls are only valid during on_request; elsewhere they trap.
  inRequest(what) {
    if (!this.current || !this.current.changes) throw new Error(`${what} called outside on_request`);
    return this.current;
  }

  headerCall(op, np, nl, vp, vl) {
    const c = this.inRequest(op + '_header');
    let name, value;
    try { name = this.text(np, nl); } catch (e) { if (/outside memory/.test(e.message)) throw e; name = null; }
    const refuse = (code) => { this.refusals++; c.refused.push({ op, name, code }); return code; };
    if (!name || !TOKEN.test(name)) return refuse(2);
    const lower = name.toLowerCase();
    if (FORBIDDEN_HEADERS.has(lower) || lower.startsWith('x-forwarded-') || !this.allow.has(lower)) return refuse(1);
    if (op !== 'remove') {
      let bytes;
      bytes = this.bytesAt(vp, vl);
      if (bytes.length > MAX_HEADER_VALUE_LEN || bytes.some((b) => b === 13 || b === 10 || b === 0)) return refuse(2);
      try { value = utf8.decode(bytes); } catch { return refuse(2); }
    }
    c.changes.push(op === 'remove' ? { op, name: lower } : { op, name: lower, value });
    return 0;
  }

  /**
   * Runs on_request. Returns { result: 'continue'|'deny'|'error', code,
   * changes, deny, logs, refused, error }. Changes only apply on 'continue'.
   */
  onRequest(claims, req) {
    const c = { changes: [], logs: [], refused: [], deny: undefined };
    const fail = (error) => ({ ...c, result: 'error', error, changes: [] });
    const request = JSON.stringify({ method: 'GET', path: '/', query: '', host: '', headers: {}, ...req });
    const claimsJson = JSON.stringify(claims || {});
    // Input caps are checked before the guest is involved: no trap, no re-creation.
    if (Buffer.byteLength(claimsJson) > this.limits.claimsBytes) return fail(`claims over the ${this.limits.claimsBytes} byte cap`);
    if (Buffer.byteLength(request) > this.limits.requestBytes) return fail(`request over the ${this.limits.requestBytes} byte cap`);
    if (this.dead) {
      this.instantiate();
      this.dead = false;
    }
    this.current = c;
    try {
      const [cp, cl] = this.copyIn(claimsJson, this.limits.claimsBytes, 'claims');
      const [rp, rl] = this.copyIn(request, this.limits.requestBytes, 'request');
      c.code = this.x.portcullis_on_request(cp, cl, rp, rl);
      this.checkMemory();
    } catch (e) {
      this.traps++;
      this.dead = true; // re-created before the next call
      return fail(`trap: ${e.message}`);
    } finally {
      this.current = undefined;
    }
    if (c.code === 0) {
      if (c.deny) return fail('deny was called but on_request returned 0');
      return { ...c, result: 'continue' };
    }
    if (c.code === 1) {
      if (!c.deny) return fail('on_request returned 1 without calling deny');
      if (c.deny.status < 400 || c.deny.status > 499) return fail(`deny status ${c.deny.status} outside 400..=499`);
      return { ...c, result: 'deny', changes: [] };
    }
    return fail(`on_request returned ${c.code}`);
  }
}

/**
 * Runs `onRequest` in a worker thread and gives up after `ms` (this host's
 * stand-in for the gateway's per-call deadline). Resolves to the result, or
 * { result: 'error', error: 'deadline exceeded' }.
 */
export function onRequestWithDeadline(bytes, opts, claims, req, ms) {
  const src = `
    const { parentPort, workerData } = require('node:worker_threads');
    import(workerData.url).then(({ Plugin }) => {
      const p = new Plugin(workerData.bytes, workerData.opts);
      parentPort.postMessage(p.onRequest(workerData.claims, workerData.req));
    }).catch((e) => parentPort.postMessage({ result: 'error', error: String(e) }));`;
  return new Promise((resolve) => {
    const w = new Worker(src, { eval: true, workerData: { url: import.meta.url, bytes, opts, claims, req } });
    const t = setTimeout(() => { w.terminate(); resolve({ result: 'error', error: 'deadline exceeded' }); }, ms);
    w.on('message', (m) => { clearTimeout(t); w.terminate(); resolve(m); });
    w.on('error', (e) => { clearTimeout(t); resolve({ result: 'error', error: String(e) }); });
  });
}

// A minimal, dependency-free host for Portcullis plugin ABI v1 and v2, in
// plain JavaScript (Node >= 18). It exists to run the built modules end to
// end in plugins/test.sh (see abi-test.mjs) and as an executable reading of
// plugins/ABI.md. It is NOT the gateway's host (that one is wasmtime, in
// src/plugin): it cannot enforce the memory cap during a call or interrupt a
// running call, so it only checks the memory size after each call.
//
// Version: decided by the signature of portcullis_on_request (4 x i32 ->
// v1, no params -> v2); portcullis_abi_version must then return the same
// number. Claims given as a JSON *string* are used verbatim as v1's input
// and claims_json (so tests can send literals such as 42.0 or 1e-7); the
// text forms of `claim` come from the parsed value (JavaScript numbers, so
// integers beyond 2^53 are not exact here).

import { Worker } from 'node:worker_threads';

export const ABI_VERSIONS = [1, 2];
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

const fmtSig = (s) => {
  const [p, r] = s.split('->');
  const ty = (t) => ({ 127: 'i32', 126: 'i64', 125: 'f32', 124: 'f64' }[t] || `type ${t}`);
  const list = (x) => (x ? x.split(',').map(ty) : []);
  const res = list(r);
  return `(${list(p).join(', ')}) -> ${res.length === 1 ? res[0] : '(' + res.join(', ') + ')'}`;
};

/** Host imports (module `portcullis`), name -> signature: v1's five and the
 * eight added by v2 (usable by modules of either version). */
export const IMPORTS = {
  set_header: sig(i32s(4), [I32]),
  append_header: sig(i32s(4), [I32]),
  remove_header: sig(i32s(2), [I32]),
  deny: sig(i32s(3), []),
  log: sig(i32s(3), []),
  claim: sig(i32s(4), [I32]),
  claim_kind: sig(i32s(2), [I32]),
  claim_count: sig(i32s(2), [I32]),
  request_field: sig(i32s(3), [I32]),
  request_header: sig(i32s(4), [I32]),
  claims_json: sig(i32s(2), [I32]),
  request_json: sig(i32s(2), [I32]),
  header_batch: sig(i32s(2), [I32]),
};
export const V1_IMPORTS = ['set_header', 'append_header', 'remove_header', 'deny', 'log'];

/** Required guest function exports -> signature (plus `memory`);
 * portcullis_on_request has one signature per version (ON_REQUEST). */
export const EXPORTS = {
  portcullis_abi_version: sig([], [I32]),
  portcullis_alloc: sig([I32], [I32]),
  portcullis_init: sig(i32s(2), [I32]),
};
export const ON_REQUEST = { [sig(i32s(4), [I32])]: 1, [sig([], [I32])]: 2 };

/** Error codes of the v2 imports. */
export const MISSING = -1, INVALID = -2, NOT_VISIBLE = -3, NOT_CONTAINER = -4;
export const MAX_PATH_LEN = 1024;
export const MAX_BATCH_ENTRIES = 1024;

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
      throw new LoadError(`import portcullis.${imp.field} has type ${fmtSig(imp.type)}, expected ${fmtSig(IMPORTS[imp.field])}`);
    }
  }
  const byName = new Map(shape.exports.map((e) => [e.name, e]));
  const mem = byName.get('memory');
  if (!mem || mem.kind !== 2) throw new LoadError('missing required export `memory`');
  for (const [nm, want] of Object.entries(EXPORTS)) {
    const e = byName.get(nm);
    if (!e || e.kind !== 0) throw new LoadError(`missing required export \`${nm}\``);
    if (e.type !== want) throw new LoadError(`export ${nm} has type ${fmtSig(e.type)}, expected ${fmtSig(want)}`);
  }
  const onRequest = byName.get('portcullis_on_request');
  if (!onRequest || onRequest.kind !== 0) throw new LoadError('missing required export `portcullis_on_request`');
  shape.abi = ON_REQUEST[onRequest.type];
  if (!shape.abi) {
    throw new LoadError(`export portcullis_on_request has type ${fmtSig(onRequest.type)}; expected (i32, i32, i32, i32) -> i32 (ABI v1) or () -> i32 (ABI v2)`);
  }
  return shape;
}

// ---- ABI v2 text forms ----------------------------------------------------------
/** A number as the SDK's Number Display: integers (and whole floats below
 * 1e21) as decimal integers, other numbers shortest round-trip with an
 * exponent below 1e-6 and from 1e21 (`1e-7`, `1.5e300`). */
export function numberText(x) {
  if (Number.isInteger(x) && Math.abs(x) < 1e21) return BigInt(x).toString(); // exact digits, like Rust
  return String(x).replace('e+', 'e');
}
const asciiEscape = (s) => s.replace(/[\u007f-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
/** Compact JSON with everything outside 0x20..=0x7E as \uXXXX (the SDK's to_json_ascii). */
export function jsonAscii(v) {
  if (v === null) return 'null';
  if (typeof v === 'boolean') return String(v);
  if (typeof v === 'number') return numberText(v);
  if (typeof v === 'string') return asciiEscape(JSON.stringify(v));
  if (Array.isArray(v)) return '[' + v.map(jsonAscii).join(',') + ']';
  return '{' + Object.keys(v).map((k) => asciiEscape(JSON.stringify(k)) + ':' + jsonAscii(v[k])).join(',') + '}';
}
/** The `claim` text form of a value; undefined for null. */
export function claimText(v) {
  if (v === null || v === undefined) return undefined;
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return numberText(v);
  if (typeof v === 'boolean') return String(v);
  return jsonAscii(v);
}
const KIND = (v) => (v === null ? 0 : typeof v === 'string' ? 1 : typeof v === 'number' ? 2 : typeof v === 'boolean' ? 3 : Array.isArray(v) ? 4 : 5);

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * One plugin instance. `opts`: { config (any JSON value, default {}),
 * allow (header names the plugin may change), requestHeaders (names the
 * plugin may read; when absent, every header given in a request is
 * visible), limits }.
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
    this.abi = shape.abi;
    this.imports = shape.imports.map((i) => i.field);
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
      // ---- ABI v2 (usable by v1 modules too) ----
      claim: (pp, pl, bp, bc) => {
        const c = host.inRequest('claim');
        host.checkBuf(bp, bc);
        const v = host.resolve(c, pp, pl);
        if (typeof v === 'number') return v;
        const t = claimText(v.value);
        return t === undefined ? MISSING : host.answer(new TextEncoder().encode(t), bp, bc);
      },
      claim_kind: (pp, pl) => {
        const v = host.resolve(host.inRequest('claim_kind'), pp, pl);
        return typeof v === 'number' ? v : KIND(v.value);
      },
      claim_count: (pp, pl) => {
        const v = host.resolve(host.inRequest('claim_count'), pp, pl);
        if (typeof v === 'number') return v;
        if (v.value === null) return MISSING;
        if (Array.isArray(v.value)) return v.value.length;
        if (typeof v.value === 'object') return Object.keys(v.value).length;
        return NOT_CONTAINER;
      },
      request_field: (field, bp, bc) => {
        const c = host.inRequest('request_field');
        host.checkBuf(bp, bc);
        const r = c.request;
        const cert = r.client_cert || null;
        const value = [r.method, r.path, r.query, r.host, cert && cert.sha256, cert && cert.subject][field];
        if (!(field >= 0 && field <= 5)) return INVALID;
        if (value === null || value === undefined) return MISSING;
        return host.answer(new TextEncoder().encode(value), bp, bc);
      },
      request_header: (np, nl, bp, bc) => {
        const c = host.inRequest('request_header');
        host.checkBuf(bp, bc);
        let name;
        try { name = host.text(np, nl); } catch (e) { if (/outside memory/.test(e.message)) throw e; return INVALID; }
        if (!TOKEN.test(name)) return INVALID;
        const lower = name.toLowerCase();
        if (!c.visible.has(lower)) return NOT_VISIBLE;
        const value = c.headers.get(lower);
        return value === undefined ? MISSING : host.answer(new TextEncoder().encode(value), bp, bc);
      },
      claims_json: (bp, bc) => {
        const c = host.inRequest('claims_json');
        host.checkBuf(bp, bc);
        return host.answer(new TextEncoder().encode(c.claimsJson), bp, bc);
      },
      request_json: (bp, bc) => {
        const c = host.inRequest('request_json');
        host.checkBuf(bp, bc);
        return host.answer(new TextEncoder().encode(c.requestJson), bp, bc);
      },
      header_batch: (bp, bl) => host.headerBatch(bp, bl),
    };
    this.loadLogs = { logs: [] };
    this.instance = new WebAssembly.Instance(this.module, { portcullis: imports });
    this.x = this.instance.exports;
    const v = this.x.portcullis_abi_version();
    if (!ABI_VERSIONS.includes(v)) throw new LoadError(`module implements ABI version ${v}; this host supports ${ABI_VERSIONS.join(' and ')}`);
    if (v !== this.abi) {
      const form = this.abi === 2 ? 'portcullis_on_request() (ABI v2)' : 'portcullis_on_request(i32, i32, i32, i32) (ABI v1)';
      throw new LoadError(`exports ${form} but portcullis_abi_version returned ${v}`);
    }
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

  // The buffer protocol: [buf, buf+cap) must be in memory (cap 0: any
  // pointer); the value is written only when it fits; the answer is its length.
  checkBuf(ptr, cap) { if ((cap >>> 0) > 0) this.bytesAt(ptr, cap); }
  answer(bytes, ptr, cap) {
    if (bytes.length <= (cap >>> 0)) this.memory.set(bytes, ptr >>> 0);
    return bytes.length;
  }

  // A claim path: NUL-separated segments. Returns an error code, or { value }
  // (value undefined when the path does not resolve).
  resolve(c, ptr, len) {
    const bytes = this.bytesAt(ptr, len);
    if (bytes.length === 0 || bytes.length > MAX_PATH_LEN) return INVALID;
    let path;
    try { path = utf8.decode(bytes); } catch { return INVALID; }
    const segs = path.split('\0');
    if (segs.some((s) => s === '')) return INVALID;
    let cur = c.claims;
    for (const seg of segs) {
      if (Array.isArray(cur)) {
        cur = /^(0|[1-9][0-9]*)$/.test(seg) && Number(seg) < cur.length ? cur[Number(seg)] : undefined;
      } else if (cur !== null && typeof cur === 'object' && Object.prototype.hasOwnProperty.call(cur, seg)) {
        cur = cur[seg];
      } else {
        cur = undefined;
      }
      if (cur === undefined) return MISSING;
    }
    return { value: cur };
  }

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

  // Header, deny and v2 calls are only valid during on_request; elsewhere they trap.
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

  // header_batch: entries of five LE u32 (op, name_ptr, name_len, value_ptr,
  // value_len), each checked like the v1 call; 0, or code | index << 8 for
  // the first entry not accepted (processing stops there).
  headerBatch(ptr, len) {
    const c = this.inRequest('header_batch');
    c.batches++;
    len >>>= 0;
    if (len % 20 !== 0 || len / 20 > MAX_BATCH_ENTRIES) {
      this.refusals++;
      c.refused.push({ op: 'batch', name: null, code: 2 });
      return 2;
    }
    const bytes = this.bytesAt(ptr, len);
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < len / 20; i++) {
      const [op, np, nl, vp, vl] = [0, 4, 8, 12, 16].map((o) => dv.getUint32(i * 20 + o, true));
      let code;
      if (op >= 1 && op <= 3) {
        code = this.headerCall(['set', 'append', 'remove'][op - 1], np, nl, vp, vl);
      } else {
        this.refusals++;
        c.refused.push({ op: `op ${op}`, name: null, code: 2 });
        code = 2;
      }
      if (code !== 0) return code | (i << 8);
    }
    return 0;
  }

  /**
   * Runs on_request. `claims`: an object, or a JSON text used verbatim.
   * Returns { result: 'continue'|'deny'|'error', code, changes, deny, logs,
   * refused, batches, error }. Changes only apply on 'continue'; a refused
   * or invalid header write voids the invocation (result 'error',
   * violation: true), whatever the guest returns.
   */
  onRequest(claims, req) {
    const claimsJson = typeof claims === 'string' ? claims : JSON.stringify(claims || {});
    const reqObj = { method: 'GET', path: '/', query: '', host: '', headers: {}, ...req };
    const headers = new Map(Object.entries(reqObj.headers || {}).map(([k, v]) => [k.toLowerCase(), v]));
    const visible = new Set(this.opts.requestHeaders ? this.opts.requestHeaders.map((h) => h.toLowerCase()) : headers.keys());
    const request = JSON.stringify(reqObj);
    const c = {
      changes: [], logs: [], refused: [], deny: undefined, batches: 0,
      claimsJson, claims: JSON.parse(claimsJson), request: reqObj, requestJson: request, headers, visible,
    };
    const fail = (error, extra = {}) => ({ ...c, result: 'error', error, changes: [], ...extra });
    if (this.abi === 1) {
      // Input caps are checked before the guest is involved: no trap, no re-creation.
      if (Buffer.byteLength(claimsJson) > this.limits.claimsBytes) return fail(`claims over the ${this.limits.claimsBytes} byte cap`);
      if (Buffer.byteLength(request) > this.limits.requestBytes) return fail(`request over the ${this.limits.requestBytes} byte cap`);
    }
    if (this.dead) {
      this.instantiate();
      this.dead = false;
    }
    this.current = c;
    try {
      if (this.abi === 1) {
        const [cp, cl] = this.copyIn(claimsJson, this.limits.claimsBytes, 'claims');
        const [rp, rl] = this.copyIn(request, this.limits.requestBytes, 'request');
        c.code = this.x.portcullis_on_request(cp, cl, rp, rl);
      } else {
        c.code = this.x.portcullis_on_request();
      }
      this.checkMemory();
    } catch (e) {
      this.traps++;
      this.dead = true; // re-created before the next call
      return fail(`trap: ${e.message}`);
    } finally {
      this.current = undefined;
    }
    if (c.refused.length) {
      const r = c.refused[0];
      return fail(`violation: ${r.op} ${r.name === null ? '' : '`' + r.name + '` '}answered ${r.code}`, { violation: true });
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

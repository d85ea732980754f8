;; example-wat-v1: the smallest complete Portcullis plugin for ABI v1, in
;; WAT (the v1 conformance guest; the current example is static-header.wat).
;; Sets `x-plugin-lang: wat` on every request (the plugin's allow-list must
;; contain x-plugin-lang). Ignores its config, the claims and the request.
;; Build: wat2wasm static-header-v1.wat -o example-wat-v1.wasm
(module
  (import "portcullis" "set_header"
    (func $set_header (param i32 i32 i32 i32) (result i32)))
  (import "portcullis" "log" (func $log (param i32 i32 i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "x-plugin-lang")       ;; 13 bytes
  (data (i32.const 32) "wat")                 ;;  3 bytes
  (data (i32.const 48) "x-plugin-lang refused") ;; 21 bytes

  (func (export "portcullis_abi_version") (result i32) (i32.const 1))

  ;; Input buffers: a bump allocator above the static data. Each call
  ;; returns a fresh, non-overlapping region (growing memory if needed);
  ;; the bump pointer is reset when init/on_request starts, because the
  ;; host only allocates right before a call, for that call's inputs.
  (global $bump (mut i32) (i32.const 1024))
  (func (export "portcullis_alloc") (param $len i32) (result i32)
    (local $p i32) (local $end i32) (local $have i32)
    (if (i32.lt_s (local.get $len) (i32.const 0)) (then (return (i32.const 0))))
    (local.set $p (global.get $bump))
    (local.set $end (i32.add (local.get $p) (local.get $len)))
    (if (i32.lt_u (local.get $end) (local.get $p)) (then (return (i32.const 0))))
    (local.set $have (i32.shl (memory.size) (i32.const 16)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end) (local.get $have))
                                                     (i32.const 0xffff))
                                            (i32.const 16)))
                    (i32.const -1))
          (then (return (i32.const 0))))))             ;; 0 = out of memory
    (global.set $bump (i32.and (i32.add (local.get $end) (i32.const 7)) (i32.const -8)))
    (local.get $p))

  ;; Config (JSON at $cfg, $len bytes) is ignored: accept it.
  (func (export "portcullis_init") (param $cfg i32) (param $len i32) (result i32)
    (global.set $bump (i32.const 1024))
    (i32.const 0))

  ;; 0 = continue with the header set; 2 = error if the host refused it.
  (func (export "portcullis_on_request")
        (param $claims i32) (param $claims_len i32) (param $req i32) (param $req_len i32)
        (result i32)
    (global.set $bump (i32.const 1024))
    (if (call $set_header (i32.const 16) (i32.const 13) (i32.const 32) (i32.const 3))
      (then
        (call $log (i32.const 0) (i32.const 48) (i32.const 21))
        (return (i32.const 2))))
    (i32.const 0)))

;; example-wat: the smallest complete Portcullis plugin (ABI v2), in WAT.
;; Sets `x-plugin-lang: wat` on every request (the plugin's allow-list must
;; contain x-plugin-lang) with one header_batch call. Ignores its config,
;; the claims and the request.
;; Build: wat2wasm static-header.wat -o example-wat.wasm
(module
  (import "portcullis" "header_batch"
    (func $header_batch (param i32 i32) (result i32)))
  (import "portcullis" "log" (func $log (param i32 i32 i32)))

  (memory (export "memory") 1)
  (data (i32.const 16) "x-plugin-lang")       ;; 13 bytes
  (data (i32.const 32) "wat")                 ;;  3 bytes
  (data (i32.const 48) "header_batch refused x-plugin-lang") ;; 34 bytes
  ;; The batch: one entry of five little-endian u32
  ;; op=1 (set), name_ptr=16, name_len=13, value_ptr=32, value_len=3.
  (data (i32.const 96)
    "\01\00\00\00" "\10\00\00\00" "\0d\00\00\00" "\20\00\00\00" "\03\00\00\00")

  (func (export "portcullis_abi_version") (result i32) (i32.const 2))

  ;; The config buffer: a bump allocator above the static data (in ABI v2
  ;; the host only allocates for the config, right before init). Each call
  ;; returns a fresh, non-overlapping region, growing memory if needed.
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

  ;; ABI v2: no parameters; 0 = continue with the header set, 2 = error if
  ;; the host refused it (header_batch answers code | entry_index << 8).
  (func (export "portcullis_on_request") (result i32)
    (if (call $header_batch (i32.const 96) (i32.const 20))
      (then
        (call $log (i32.const 0) (i32.const 48) (i32.const 34))
        (return (i32.const 2))))
    (i32.const 0)))

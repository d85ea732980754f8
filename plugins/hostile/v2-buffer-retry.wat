;; hostile-v2-buffer-retry (a conformance guest, not a misbehaving one):
;; reads the `sub` claim with the buffer protocol and sets `x-sub` to it.
;;   1. claim("sub", buf, cap 0)    -> n, the length (nothing written);
;;   2. buf filled with '#', claim("sub", buf, cap n-1) when n > 0 -> must
;;      answer n again and leave buf[0] = '#' (too small: nothing written);
;;   3. claim("sub", buf, cap n)    -> n, the bytes in buf;
;;   4. set_header("x-sub", buf, n) (a v1 import, usable by v2 modules).
;; Any deviation is logged and returns 2; a missing sub returns 2 too.
;; Expected host behaviour: with sub present (any length, e.g. 3000 bytes
;;   or non-ASCII), continue with x-sub = sub exactly.
(module
  (import "portcullis" "claim" (func $claim (param i32 i32 i32 i32) (result i32)))
  (import "portcullis" "set_header" (func $set_header (param i32 i32 i32 i32) (result i32)))
  (import "portcullis" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "sub")
  (data (i32.const 24) "x-sub")
  (data (i32.const 32) "v2-buffer-retry: no sub claim")                 ;; 29 bytes
  (data (i32.const 64) "v2-buffer-retry: the host wrote into a short buffer") ;; 51 bytes
  (data (i32.const 128) "v2-buffer-retry: the length changed")          ;; 35 bytes
  (data (i32.const 176) "v2-buffer-retry: set_header refused")          ;; 35 bytes
  (data (i32.const 224) "v2-buffer-retry: sub does not fit in memory")  ;; 43 bytes
  (func (export "portcullis_abi_version") (result i32) (i32.const 2))
  ;; Bump allocator (used for the config only in ABI v2): fresh regions,
  ;; grown on demand, reset when init starts. 0 = out of memory.
  (global $bump (mut i32) (i32.const 4096))
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
          (then (return (i32.const 0))))))
    (global.set $bump (i32.and (i32.add (local.get $end) (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func (export "portcullis_init") (param $cfg i32) (param $len i32) (result i32)
    (global.set $bump (i32.const 4096))
    (i32.const 0))
  (func (export "portcullis_on_request") (result i32)
    (local $n i32) (local $buf i32)
    (local.set $buf (i32.const 8192))
    ;; 1. length only
    (local.set $n (call $claim (i32.const 16) (i32.const 3) (local.get $buf) (i32.const 0)))
    (if (i32.lt_s (local.get $n) (i32.const 0))
      (then (call $log (i32.const 0) (i32.const 32) (i32.const 29)) (return (i32.const 2))))
    (if (i32.gt_u (i32.add (local.get $buf) (local.get $n)) (i32.const 65536))
      (then (call $log (i32.const 0) (i32.const 224) (i32.const 43)) (return (i32.const 2))))
    ;; 2. one byte short: same answer, nothing written
    (if (i32.gt_s (local.get $n) (i32.const 0))
      (then
        (memory.fill (local.get $buf) (i32.const 35) (local.get $n))
        (if (i32.ne (call $claim (i32.const 16) (i32.const 3) (local.get $buf)
                              (i32.sub (local.get $n) (i32.const 1)))
                    (local.get $n))
          (then (call $log (i32.const 0) (i32.const 128) (i32.const 35)) (return (i32.const 2))))
        (if (i32.ne (i32.load8_u (local.get $buf)) (i32.const 35))
          (then (call $log (i32.const 0) (i32.const 64) (i32.const 51)) (return (i32.const 2))))))
    ;; 3. exactly n
    (if (i32.ne (call $claim (i32.const 16) (i32.const 3) (local.get $buf) (local.get $n))
                (local.get $n))
      (then (call $log (i32.const 0) (i32.const 128) (i32.const 35)) (return (i32.const 2))))
    ;; 4. the header
    (if (call $set_header (i32.const 24) (i32.const 5) (local.get $buf) (local.get $n))
      (then (call $log (i32.const 0) (i32.const 176) (i32.const 35)) (return (i32.const 2))))
    (i32.const 0)))

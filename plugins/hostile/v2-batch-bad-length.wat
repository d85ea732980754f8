;; hostile-v2-batch-bad-length: calls header_batch with batch_len 7 (not a
;; multiple of 20; the range itself is inside memory), logs whether the
;; answer was 2, and returns 0 anyway.
;; Expected host behaviour: header_batch answers 2 (index 0), records
;;   nothing; the invalid write voids the invocation (violation), no header
;;   changes apply; log line "v2-batch-bad-length: answered 2".
(module
  (import "portcullis" "header_batch" (func $header_batch (param i32 i32) (result i32)))
  (import "portcullis" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "x-user-id")
  (data (i32.const 32) "a")
  (data (i32.const 96)
    "\01\00\00\00" "\10\00\00\00" "\09\00\00\00" "\20\00\00\00" "\01\00\00\00")
  (data (i32.const 200) "v2-batch-bad-length: answered 2")            ;; 31 bytes
  (data (i32.const 240) "v2-batch-bad-length: answered something else") ;; 44 bytes
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
    (if (i32.eq (call $header_batch (i32.const 96) (i32.const 7)) (i32.const 2))
      (then (call $log (i32.const 2) (i32.const 200) (i32.const 31)))
      (else (call $log (i32.const 0) (i32.const 240) (i32.const 44))))
    (i32.const 0)))

;; hostile-v2-batch-forbidden: one header_batch with 3 entries — set
;; x-user-id, set authorization (forbidden), set x-other — logs whether the
;; answer was 1 | (1 << 8) = 257, and returns 0 anyway.
;; Expected host behaviour: entry 0 accepted, entry 1 refused: the answer is
;;   257 and processing stops (entry 2 never looked at); the invocation is
;;   void (violation): none of the three changes apply, even when
;;   authorization is (wrongly) allow-listed; log line
;;   "v2-batch-forbidden: answered 257".
(module
  (import "portcullis" "header_batch" (func $header_batch (param i32 i32) (result i32)))
  (import "portcullis" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "x-user-id")      ;;  9 bytes
  (data (i32.const 32) "authorization")  ;; 13 bytes
  (data (i32.const 48) "x-other")        ;;  7 bytes
  (data (i32.const 64) "a")              ;;  1 byte
  (data (i32.const 72) "Bearer evil")    ;; 11 bytes
  ;; entries: op, name_ptr, name_len, value_ptr, value_len (LE u32)
  (data (i32.const 96)
    "\01\00\00\00" "\10\00\00\00" "\09\00\00\00" "\40\00\00\00" "\01\00\00\00"
    "\01\00\00\00" "\20\00\00\00" "\0d\00\00\00" "\48\00\00\00" "\0b\00\00\00"
    "\01\00\00\00" "\30\00\00\00" "\07\00\00\00" "\40\00\00\00" "\01\00\00\00")
  (data (i32.const 200) "v2-batch-forbidden: answered 257")            ;; 32 bytes
  (data (i32.const 240) "v2-batch-forbidden: answered something else") ;; 43 bytes
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
    (if (i32.eq (call $header_batch (i32.const 96) (i32.const 60)) (i32.const 257))
      (then (call $log (i32.const 2) (i32.const 200) (i32.const 32)))
      (else (call $log (i32.const 0) (i32.const 240) (i32.const 43))))
    (i32.const 0)))

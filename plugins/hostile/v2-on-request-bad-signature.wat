;; hostile-v2-on-request-bad-signature: abi_version returns 2 but
;; portcullis_on_request is (i32) -> i32, neither ABI's form.
;; Expected host behaviour: refused at load, naming both accepted forms
;;   ((i32, i32, i32, i32) -> i32 for v1, () -> i32 for v2).
(module
  (memory (export "memory") 1)
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
  (func (export "portcullis_on_request") (param i32) (result i32) (i32.const 0)))

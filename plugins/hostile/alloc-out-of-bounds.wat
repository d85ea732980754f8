;; hostile-alloc-out-of-bounds: portcullis_alloc returns a pointer past the
;; end of memory (0xfffffff0).
;; Expected host behaviour: the host bounds-checks before copying: the call
;;   fails (plugin error), no host crash.
(module
  (memory (export "memory") 1)
  (func (export "portcullis_abi_version") (result i32) (i32.const 1))
  (global $bump (mut i32) (i32.const 1024))
  (func (export "portcullis_alloc") (param $len i32) (result i32)
    (i32.const 0xfffffff0))
  (func (export "portcullis_init") (param $cfg i32) (param $len i32) (result i32)
    (global.set $bump (i32.const 1024))
    (i32.const 0))
  (func (export "portcullis_on_request")
        (param $claims i32) (param $claims_len i32) (param $req i32) (param $req_len i32)
        (result i32)
    (global.set $bump (i32.const 1024))
    (i32.const 0)))

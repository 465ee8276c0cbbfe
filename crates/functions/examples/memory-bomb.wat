;; memory-bomb.wat: a function that grows its memory one 64 KiB page at a time without
;; end, for memory-limit tests. runnel stops it at its limit with an out-of-memory error.
(component
  (type $types-type (instance
    (type $bytes (list u8))
    (type $header' (record (field "key" string) (field "value" $bytes)))
    (export "header" (type $header (eq $header')))
    (type $opt-bytes (option $bytes))
    (type $headers (list $header))
    (type $event' (record
      (field "topic" string) (field "partition" s32) (field "offset" s64)
      (field "timestamp-ms" s64) (field "key" $opt-bytes) (field "value" $opt-bytes)
      (field "headers" $headers)))
    (export "event" (type (eq $event')))
    (type $output-event' (record
      (field "topic" string) (field "key" $opt-bytes) (field "value" $opt-bytes)
      (field "headers" $headers)))
    (export "output-event" (type (eq $output-event')))
  ))
  (import "runnel:function/types@0.1.0" (instance $types (type $types-type)))
  (alias export $types "event" (type $event))
  (alias export $types "output-event" (type $output-event))
  (core module $Main
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const 1024))
    ;; A bump allocator; this function never needs more than its first page for itself.
    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
      (local $ptr i32)
      (local.set $ptr (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get 2))))
      (global.set $heap (i32.add (local.get $ptr) (local.get 3)))
      (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
        (then (if (i32.eq (memory.grow (i32.sub
            (i32.shr_u (i32.add (global.get $heap) (i32.const 65535)) (i32.const 16))
            (memory.size))) (i32.const -1))
          (then unreachable))))
      (local.get $ptr))
    (func (export "handle") (param i32 i32) (result i32)
      (loop $grow
        (br_if $grow (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
      ;; Only reached if growth fails without the limiter noticing.
      unreachable)
  )
  (core instance $main (instantiate $Main))
  (type $handle-type (func (param "events" (list $event))
    (result (result (list $output-event) (error string)))))
  (func $handle (type $handle-type) (canon lift (core func $main "handle")
    (memory (core memory $main "memory")) (realloc (core func $main "cabi_realloc"))
    string-encoding=utf8))
  (export "handle" (func $handle))
)

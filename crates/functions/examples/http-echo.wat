;; http-echo.wat: an `http-function` that answers every HTTP request with status 200 and
;; the request's own headers and body, and returns no events from `handle`.
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
    (type $http-request' (record
      (field "method" string) (field "path" string) (field "headers" $headers)
      (field "body" $bytes)))
    (export "http-request" (type (eq $http-request')))
    (type $http-response' (record
      (field "status" u16) (field "headers" $headers) (field "body" $bytes)))
    (export "http-response" (type (eq $http-response')))
  ))
  (import "runnel:function/types@0.1.0" (instance $types (type $types-type)))
  (alias export $types "event" (type $event))
  (alias export $types "output-event" (type $output-event))
  (alias export $types "http-request" (type $http-request))
  (alias export $types "http-response" (type $http-response))
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
    ;; handle: ok([]) for any batch. Return area at 16: is-err 0 | list ptr 4, len 8.
    (func (export "handle") (param i32 i32) (result i32)
      (i32.store8 (i32.const 16) (i32.const 0))
      (i32.store (i32.const 20) (i32.const 0))
      (i32.store (i32.const 24) (i32.const 0))
      (i32.const 16))
    ;; handle-http(method ptr, len, path ptr, len, headers ptr, len, body ptr, len):
    ;; ok({status: 200, headers: request headers, body: request body}).
    ;; Return area at 32: is-err 0 | status 4 | headers ptr 8, len 12 | body ptr 16, len 20.
    (func (export "handle-http")
        (param i32 i32 i32 i32) (param $headers i32) (param $headers_len i32)
        (param $body i32) (param $body_len i32)
        (result i32)
      (i32.store8 (i32.const 32) (i32.const 0))
      (i32.store16 (i32.const 36) (i32.const 200))
      (i32.store (i32.const 40) (local.get $headers))
      (i32.store (i32.const 44) (local.get $headers_len))
      (i32.store (i32.const 48) (local.get $body))
      (i32.store (i32.const 52) (local.get $body_len))
      (i32.const 32))
  )
  (core instance $main (instantiate $Main))
  (type $handle-type (func (param "events" (list $event))
    (result (result (list $output-event) (error string)))))
  (func $handle (type $handle-type) (canon lift (core func $main "handle")
    (memory (core memory $main "memory")) (realloc (core func $main "cabi_realloc"))
    string-encoding=utf8))
  (export "handle" (func $handle))
  (type $handle-http-type (func (param "request" $http-request)
    (result (result $http-response (error string)))))
  (func $handle-http (type $handle-http-type) (canon lift (core func $main "handle-http")
    (memory (core memory $main "memory")) (realloc (core func $main "cabi_realloc"))
    string-encoding=utf8))
  (export "handle-http" (func $handle-http))
)

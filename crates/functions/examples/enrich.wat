;; enrich.wat: a runnel function written by hand in the component model's text format.
;;
;; For each event it looks the event's key up in table "users" (host call `table-get`) and
;; emits to topic "enriched" an event with the same key, the event's value followed by
;; the table row, and a header "source-topic" holding the input topic. An event whose key
;; has no row is also produced (host call `produce`) unchanged to topic "enrich-misses";
;; an event with a null key is enriched with nothing. A failing `table-get` or `produce`
;; fails the batch with the host's message. It logs one line per batch.
;;
;; Deploy: runnel fn deploy enrich --component crates/functions/examples/enrich.wat ...
;; (runnel accepts .wat text and compiles it like a .wasm binary).
;;
;; How it is put together. The canonical ABI needs the guest's memory and allocator
;; (`cabi_realloc`) to lower host calls, and the main code needs the lowered host calls:
;; so a small core module $Libc owns the memory and a bump allocator and is instantiated
;; first, then the host calls are lowered against it, then $Main is instantiated with both.
;; A fresh instance serves every batch, so the bump allocator never frees.
;;
;; Memory layout (canonical ABI, 32-bit):
;;   event        size 64 align 8: topic ptr 0, len 4 | partition 8 | offset 16 |
;;                timestamp-ms 24 | key: is-some 32, ptr 36, len 40 |
;;                value: is-some 44, ptr 48, len 52 | headers ptr 56, len 60
;;   output-event size 40 align 4: topic ptr 0, len 4 | key: is-some 8, ptr 12, len 16 |
;;                value: is-some 20, ptr 24, len 28 | headers ptr 32, len 36
;;   header       size 16 align 4: key ptr 0, len 4 | value ptr 8, len 12
;;   table-get's result<option<string>, string> at $RET: is-err 0 |
;;                ok: is-some 4, ptr 8, len 12 | err: ptr 4, len 8
;;   produce's result<_, string> at $RET: is-err 0 | err: ptr 4, len 8
;;   handle's result<list<output-event>, string>: is-err 0 | ok/err: ptr 4, len 8
;; Constants live at 16..128, the return area of host calls at 128, the heap from 1024.
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
    (type $level' (enum "trace" "debug" "info" "warn" "error"))
    (export "level" (type (eq $level')))
  ))
  (import "runnel:function/types@0.1.0" (instance $types (type $types-type)))
  (alias export $types "event" (type $event))
  (alias export $types "output-event" (type $output-event))
  (alias export $types "level" (type $level))

  (import "runnel:function/host@0.1.0" (instance $host
    (alias outer 1 $output-event (type $output-event'))
    (export "output-event" (type $oe (eq $output-event')))
    (alias outer 1 $level (type $level'))
    (export "level" (type $lv (eq $level')))
    (export "table-get" (func
      (param "table" string) (param "key" (list u8))
      (result (result (option string) (error string)))))
    (export "produce" (func (param "event" $oe) (result (result (error string)))))
    (export "log" (func (param "level" $lv) (param "message" string)))
  ))

  ;; Memory and a bump allocator, shared by the canonical ABI and $Main.
  (core module $Libc
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const 1024))
    ;; cabi_realloc(old_ptr, old_size, align, new_size) -> ptr; traps when memory runs out.
    (func (export "cabi_realloc") (param $old i32) (param $old_size i32)
        (param $align i32) (param $size i32) (result i32)
      (local $ptr i32) (local $end i32) (local $pages i32)
      ;; ptr = align_up(heap, align)
      (local.set $ptr (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
      (local.set $end (i32.add (local.get $ptr) (local.get $size)))
      (if (i32.lt_u (local.get $end) (local.get $ptr)) (then unreachable))
      (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
        (then
          (local.set $pages (i32.sub
            (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16))
            (memory.size)))
          (if (i32.eq (memory.grow (local.get $pages)) (i32.const -1))
            (then unreachable))))
      (global.set $heap (local.get $end))
      (if (local.get $old)
        (then (memory.copy (local.get $ptr) (local.get $old)
          (select (local.get $old_size) (local.get $size)
            (i32.lt_u (local.get $old_size) (local.get $size))))))
      (local.get $ptr))
  )

  (core module $Main
    (import "libc" "memory" (memory 1))
    (import "libc" "cabi_realloc" (func $alloc (param i32 i32 i32 i32) (result i32)))
    ;; table-get(table ptr, table len, key ptr, key len, return area)
    (import "host" "table-get" (func $table-get (param i32 i32 i32 i32 i32)))
    ;; produce(topic ptr, len, key is-some, ptr, len, value is-some, ptr, len,
    ;;         headers ptr, len, return area)
    (import "host" "produce"
      (func $produce (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
    ;; log(level, message ptr, message len)
    (import "host" "log" (func $log (param i32 i32 i32)))

    (global $TABLE i32 (i32.const 16))      ;; "users", 5 bytes
    (global $TOPIC i32 (i32.const 32))      ;; "enriched", 8 bytes
    (global $MISSES i32 (i32.const 48))     ;; "enrich-misses", 13 bytes
    (global $MESSAGE i32 (i32.const 64))    ;; "enriched a batch", 16 bytes
    (global $HEADER i32 (i32.const 96))     ;; "source-topic", 12 bytes
    (global $RET i32 (i32.const 128))       ;; return area of host calls, 16 bytes
    (data (i32.const 16) "users")
    (data (i32.const 32) "enriched")
    (data (i32.const 48) "enrich-misses")
    (data (i32.const 64) "enriched a batch")
    (data (i32.const 96) "source-topic")

    ;; Returns a result<list<output-event>, string> in a fresh return area.
    (func $result (param $is_err i32) (param $ptr i32) (param $len i32) (result i32)
      (local $ret i32)
      (local.set $ret (call $alloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 12)))
      (i32.store8 (local.get $ret) (local.get $is_err))
      (i32.store offset=4 (local.get $ret) (local.get $ptr))
      (i32.store offset=8 (local.get $ret) (local.get $len))
      (local.get $ret))

    ;; handle(events ptr, events len) -> pointer to result<list<output-event>, string>
    (func (export "handle") (param $events i32) (param $count i32) (result i32)
      (local $out i32) (local $i i32) (local $e i32) (local $o i32)
      (local $row i32) (local $row_len i32) (local $value_len i32)
      (local $new i32) (local $header i32)
      (local.set $out (call $alloc (i32.const 0) (i32.const 0) (i32.const 4)
        (i32.mul (local.get $count) (i32.const 40))))
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
          (local.set $e (i32.add (local.get $events) (i32.shl (local.get $i) (i32.const 6))))
          (local.set $o (i32.add (local.get $out) (i32.mul (local.get $i) (i32.const 40))))
          (local.set $row (i32.const 0))
          (local.set $row_len (i32.const 0))

          ;; The row of the event's key, if it has a key.
          (if (i32.load8_u offset=32 (local.get $e))
            (then
              (call $table-get (global.get $TABLE) (i32.const 5)
                (i32.load offset=36 (local.get $e)) (i32.load offset=40 (local.get $e))
                (global.get $RET))
              (if (i32.load8_u (global.get $RET))
                (then (return (call $result (i32.const 1)
                  (i32.load offset=4 (global.get $RET)) (i32.load offset=8 (global.get $RET))))))
              (if (i32.load8_u offset=4 (global.get $RET))
                (then
                  (local.set $row (i32.load offset=8 (global.get $RET)))
                  (local.set $row_len (i32.load offset=12 (global.get $RET))))
                (else
                  ;; No row: produce the event unchanged to "enrich-misses".
                  (call $produce (global.get $MISSES) (i32.const 13)
                    (i32.const 1) (i32.load offset=36 (local.get $e)) (i32.load offset=40 (local.get $e))
                    (i32.load8_u offset=44 (local.get $e))
                    (i32.load offset=48 (local.get $e)) (i32.load offset=52 (local.get $e))
                    (i32.const 0) (i32.const 0)
                    (global.get $RET))
                  (if (i32.load8_u (global.get $RET))
                    (then (return (call $result (i32.const 1)
                      (i32.load offset=4 (global.get $RET))
                      (i32.load offset=8 (global.get $RET))))))))))

          ;; topic "enriched"
          (i32.store offset=0 (local.get $o) (global.get $TOPIC))
          (i32.store offset=4 (local.get $o) (i32.const 8))
          ;; key: the event's (the option as it is)
          (i32.store8 offset=8 (local.get $o) (i32.load8_u offset=32 (local.get $e)))
          (i32.store offset=12 (local.get $o) (i32.load offset=36 (local.get $e)))
          (i32.store offset=16 (local.get $o) (i32.load offset=40 (local.get $e)))
          ;; value: some(event value ++ row)
          (local.set $value_len (select (i32.load offset=52 (local.get $e)) (i32.const 0)
            (i32.load8_u offset=44 (local.get $e))))
          (local.set $new (call $alloc (i32.const 0) (i32.const 0) (i32.const 1)
            (i32.add (local.get $value_len) (local.get $row_len))))
          (memory.copy (local.get $new) (i32.load offset=48 (local.get $e)) (local.get $value_len))
          (memory.copy (i32.add (local.get $new) (local.get $value_len)) (local.get $row)
            (local.get $row_len))
          (i32.store8 offset=20 (local.get $o) (i32.const 1))
          (i32.store offset=24 (local.get $o) (local.get $new))
          (i32.store offset=28 (local.get $o) (i32.add (local.get $value_len) (local.get $row_len)))
          ;; headers: [("source-topic", event topic)]
          (local.set $header (call $alloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 16)))
          (i32.store offset=0 (local.get $header) (global.get $HEADER))
          (i32.store offset=4 (local.get $header) (i32.const 12))
          (i32.store offset=8 (local.get $header) (i32.load offset=0 (local.get $e)))
          (i32.store offset=12 (local.get $header) (i32.load offset=4 (local.get $e)))
          (i32.store offset=32 (local.get $o) (local.get $header))
          (i32.store offset=36 (local.get $o) (i32.const 1))

          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))
      ;; log(debug, "enriched a batch")
      (call $log (i32.const 1) (global.get $MESSAGE) (i32.const 16))
      (call $result (i32.const 0) (local.get $out) (local.get $count)))
  )

  (core instance $libc (instantiate $Libc))
  (alias core export $libc "memory" (core memory $memory))
  (alias core export $libc "cabi_realloc" (core func $realloc))
  (core func $table-get (canon lower (func $host "table-get")
    (memory $memory) (realloc $realloc) string-encoding=utf8))
  (core func $produce (canon lower (func $host "produce")
    (memory $memory) (realloc $realloc) string-encoding=utf8))
  (core func $log (canon lower (func $host "log") (memory $memory) string-encoding=utf8))
  (core instance $main (instantiate $Main
    (with "libc" (instance $libc))
    (with "host" (instance
      (export "table-get" (func $table-get))
      (export "produce" (func $produce))
      (export "log" (func $log))))))

  (type $handle-type (func (param "events" (list $event))
    (result (result (list $output-event) (error string)))))
  (func $handle (type $handle-type) (canon lift (core func $main "handle")
    (memory $memory) (realloc $realloc) string-encoding=utf8))
  (export "handle" (func $handle))
)

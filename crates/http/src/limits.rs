//! Every bound the HTTP API enforces, each with its unit. Exceeding one is answered with an
//! error (413 for a body, 422 for a count); it never takes the process down.

/// Largest request body accepted, in bytes (1 MiB); a larger one is answered 413.
pub const REQUEST_BODY_BYTES_MAX: usize = 1024 * 1024;

/// Most records one produce request may carry.
pub const PRODUCE_RECORDS_MAX: usize = 10_000;

/// Most headers one produced record may carry.
pub const RECORD_HEADERS_MAX: usize = 1_000;

/// Records returned by a consume request that does not say how many.
pub const CONSUME_LIMIT_DEFAULT: u32 = 100;

/// Most records one consume request may ask for.
pub const CONSUME_LIMIT_MAX: u32 = 10_000;

/// Bytes of record batches read from the log for one consume request at most (the first batch
/// is always returned whole, however large); the response says where to continue.
pub const CONSUME_READ_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Bytes read from a partition per log call while consuming.
pub const CONSUME_READ_CHUNK_BYTES: usize = 1024 * 1024;

/// Decompressed size of one batch decoded while consuming, in bytes (the log's own bound on
/// decompression is the same order).
pub const DECOMPRESSED_BATCH_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Longest topic name the HTTP API creates, in bytes: Kafka's 249, as the log allows.
pub const TOPIC_NAME_BYTES_MAX: usize = runnel_log::TOPIC_NAME_BYTES_MAX;

/// Most configs one alter request may change.
pub const CONFIG_CHANGES_MAX: usize = 100;

/// NDJSON lines buffered between the log reader and a slow HTTP client; the reader waits when
/// the buffer is full.
pub const NDJSON_BUFFER_LINES: usize = 32;

/// Largest request body passed to a function's HTTP handler (`/fn/NAME/...`), in bytes.
pub const FUNCTION_HTTP_BODY_BYTES_MAX: usize = 1024 * 1024;

/// How often a followed function log (`logs?follow=true`) looks for new lines.
pub const LOG_FOLLOW_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// Log lines one `GET /v1/functions/{name}/logs` returns at most (the newest).
pub const LOG_LINES_PER_RESPONSE_MAX: usize = 10_000;

/// Most HTTP connections open at once; further ones are closed on accept (the Kafka listener
/// has its own limit, so a flood of HTTP clients never starves Kafka clients).
pub const CONNECTIONS_MAX: usize = 1024;

/// A request's headers must arrive within this time of its first byte (a slow-headers client
/// cannot hold a connection slot forever).
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
pub const ACCEPT_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// How long shutdown waits for open HTTP requests (a slow NDJSON reader) before giving up on them.
pub const SHUTDOWN_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

const _: () = assert!(CONSUME_READ_CHUNK_BYTES <= CONSUME_READ_BYTES_MAX);
const _: () = assert!(CONSUME_LIMIT_DEFAULT <= CONSUME_LIMIT_MAX);

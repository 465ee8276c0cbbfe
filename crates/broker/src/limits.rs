//! Every bound the broker enforces, each with its unit, named after Kafka's setting where
//! there is one. Exceeding a bound closes only the offending connection or answers with a
//! Kafka error; it never takes the process down.

use std::time::Duration;

/// Largest request frame accepted, in bytes (Kafka's `socket.request.max.bytes`, 100 MiB).
pub const REQUEST_BYTES_MAX: usize = 104_857_600;

/// Largest frame accepted before a connection's first request has been handled, in bytes.
/// Clients open with ApiVersions (or Metadata), which are tiny; garbage or a client speaking
/// another protocol is cut off early.
pub const FIRST_REQUEST_BYTES_MAX: usize = 64 * 1024;

/// Largest record batch accepted by default, in bytes (Kafka's `message.max.bytes`:
/// 1 MiB plus the 12 bytes of log overhead). Topics may override it with `max.message.bytes`.
pub const MESSAGE_BYTES_MAX_DEFAULT: u32 = 1_048_588;

/// Most client connections open at once; further connections are closed on accept.
pub const CONNECTIONS_MAX: usize = 10_000;

/// A connection that sends no request for this long is closed (Kafka's
/// `connections.max.idle.ms`, 10 minutes).
pub const CONNECTION_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Once a request's first byte has arrived, the whole frame must arrive within this time.
pub const PARTIAL_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes of request frames held in memory at once across all connections. A connection
/// whose frame does not fit waits until others are done (back-pressure, not an error).
pub const REQUEST_MEMORY_BYTES_MAX: usize = 512 * 1024 * 1024;

/// Longest a fetch may wait for data, in milliseconds, whatever its `max_wait_ms` says.
pub const FETCH_MAX_WAIT_MS_MAX: i64 = 60_000;

/// Largest fetch response, in bytes of record data, whatever the request's `max_bytes` says
/// (Kafka's `fetch.max.bytes`, 50 MiB).
pub const FETCH_RESPONSE_BYTES_MAX: usize = 52_428_800;

/// How long shutdown waits for in-flight requests to finish before closing connections.
pub const SHUTDOWN_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Producer ids reserved (and persisted) at a time, so a restart never reuses one.
pub const PRODUCER_ID_BLOCK: i64 = 1_000;

/// Most topics, partitions or config resources one admin request may name.
pub const ADMIN_ITEMS_MAX: usize = 10_000;

/// A response must be taken by the client within this time, or the connection is closed.
pub const RESPONSE_WRITE_TIMEOUT: Duration = Duration::from_secs(120);

/// Bytes of decompressed records held at once across all produce requests that need their
/// records decoded (those to compacted topics, whose every record must have a key). Each such
/// request reserves the log's whole per-batch decompression limit before inflating anything,
/// so at most this much is ever inflated concurrently; others wait their turn.
pub const DECOMPRESSION_MEMORY_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Appended acks=all produce requests of one connection that may wait for their fsync at once
/// while the connection reads and appends the client's next produce (clients pipeline up to
/// `max.in.flight.requests.per.connection`: 5 by default, far more for librdkafka without
/// idempotence). Beyond this, the connection reads nothing until the oldest is answered.
pub const PRODUCES_AWAITING_FSYNC_PER_CONNECTION_MAX: usize = 16;

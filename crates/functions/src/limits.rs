//! Every bound the function runtime enforces, as a named constant with its unit last.
//!
//! A guest controls what it asks of the host; each of these caps what that can cost. The
//! per-invocation memory and deadline have defaults here and can be lowered per function
//! (`DeployOptions`), never raised above the pool's maxima.

/// Largest linear memory one instance may grow to, unless a function is deployed with less.
pub const MEMORY_BYTES_DEFAULT: usize = 64 * 1024 * 1024;
/// Hard ceiling of any instance's linear memory: the pooling allocator's slot size.
pub const MEMORY_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Wall-clock budget of one invocation, unless a function is deployed with another.
pub const DEADLINE_MS_DEFAULT: u64 = 1_000;
/// Longest deadline a function may be deployed with.
pub const DEADLINE_MS_MAX: u64 = 60_000;
/// Period of the epoch ticker that enforces deadlines: a deadline is exact to one tick.
pub const EPOCH_TICK_MS: u64 = 1;
/// Instances alive at once across all functions of one runtime (pool slots). Invocations
/// beyond this fail with `InvokeError::Instantiate` instead of allocating more.
pub const CONCURRENT_INSTANCES_MAX: u32 = 64;
/// Table elements (funcref slots) one instance may grow its tables to.
pub const TABLE_ELEMENTS_MAX: usize = 10_000;

/// Size of an uploaded component (`.wasm` or `.wat`).
pub const COMPONENT_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Length of a function name, which also names its files and logs.
pub const FUNCTION_NAME_BYTES_MAX: usize = 128;

/// Events in one batch handed to `handle`.
pub const INPUT_EVENTS_PER_INVOCATION_MAX: usize = 10_000;
/// Events one invocation may emit, returned and produced together.
pub const OUTPUT_EVENTS_PER_INVOCATION_MAX: usize = 10_000;
/// Bytes (topics, keys, values, headers) one invocation may emit, returned and produced
/// together.
pub const OUTPUT_BYTES_PER_INVOCATION_MAX: usize = 32 * 1024 * 1024;
/// Length of a table name passed to `table-get` or `table-scan`.
pub const TABLE_NAME_BYTES_MAX: usize = 256;
/// Length of a key or prefix passed to `table-get` or `table-scan`.
pub const TABLE_KEY_BYTES_MAX: usize = 64 * 1024;
/// Rows one `table-scan` returns, whatever limit the guest asks for.
pub const TABLE_SCAN_ROWS_MAX: u32 = 1_000;
/// Length of one guest log line; longer lines are cut at a character boundary.
pub const LOG_MESSAGE_BYTES_MAX: usize = 4 * 1024;
/// Log lines one invocation may write; later lines are counted and dropped.
pub const LOG_LINES_PER_INVOCATION_MAX: u32 = 1_000;
/// Length of a guest's error message kept in `InvokeError::Guest`; longer ones are cut.
pub const GUEST_ERROR_BYTES_MAX: usize = 4 * 1024;

// --- Triggers, retries and dead letters (the service layer) ---

/// Lanes (worker threads) of one function's topic or table trigger, unless deployed with another.
pub const CONCURRENCY_DEFAULT: u32 = 1;
/// Most lanes one function may run at once.
pub const CONCURRENCY_MAX: u32 = 64;
/// Events per invocation a trigger gathers, unless deployed with another.
pub const BATCH_SIZE_DEFAULT: u32 = 100;
/// How long a lane waits for a batch to fill after its first event, unless deployed with
/// another.
pub const BATCH_WINDOW_MS_DEFAULT: u64 = 10;
/// Longest batch window a function may be deployed with.
pub const BATCH_WINDOW_MS_MAX: u64 = 60_000;
/// Retries of a failed invocation before its events are retried one by one and then
/// dead-lettered, unless deployed with another.
pub const RETRIES_DEFAULT: u32 = 3;
/// Most retries a function may be deployed with.
pub const RETRIES_MAX: u32 = 100;
/// Wait before the first retry, doubled on each later one, unless deployed with another.
pub const RETRY_BACKOFF_INITIAL_MS_DEFAULT: u64 = 100;
/// Longest wait between two retries, unless deployed with another.
pub const RETRY_BACKOFF_MAX_MS_DEFAULT: u64 = 10_000;
/// Longest wait between two retries a function may be deployed with.
pub const RETRY_BACKOFF_MS_MAX: u64 = 600_000;
/// Events queued for one lane; a full lane blocks its trigger's consumer (backpressure).
pub const LANE_QUEUE_EVENTS_MAX: usize = 1_000;
/// Bytes a trigger's consumer reads from one partition at a time.
pub const TRIGGER_READ_BYTES_MAX: usize = 1024 * 1024;
/// How long an idle consumer waits for new records before it checks for a stop and
/// commits.
pub const TRIGGER_POLL_WAIT_MS: u64 = 50;
/// Shortest time between two position commits of one trigger (also on stop).
pub const COMMIT_INTERVAL_MS: u64 = 100;
/// Guest and platform log lines kept per function (a ring buffer: the oldest go first).
pub const LOG_LINES_KEPT_PER_FUNCTION: usize = 10_000;
/// Wait between attempts to write a dead letter when the log refuses it.
pub const DEAD_LETTER_RETRY_MS: u64 = 1_000;
/// Wait between two lookups of a table trigger's table while it does not exist (or is a
/// stream).
pub const TABLE_RESOLVE_RETRY_MS: u64 = 1_000;
/// Shortest time between two lookups of a running table trigger's table, which notice a
/// DROP TABLE or a table created again on another topic. A lookup takes the SQL engine's
/// lock, so it is not done per read.
pub const TABLE_CHECK_INTERVAL_MS: u64 = 1_000;
/// Length of a timer trigger's cron expression.
pub const CRON_EXPRESSION_BYTES_MAX: usize = 256;
/// Longest a timer thread sleeps before it reads the clock again, so a clock that jumps is
/// noticed within this. The finest cron schedule fires every second (6 fields), which also
/// bounds how often a timer can fire.
pub const TIMER_SLEEP_MS_MAX: u64 = 1_000;
/// Partitions of a dead-letter topic the service creates.
pub const DEAD_LETTER_PARTITIONS: u32 = 1;
/// Partitions of an output topic created on first use (when auto-creation is on).
pub const AUTO_CREATED_TOPIC_PARTITIONS: u32 = 1;

// --- HTTP-endpoint functions (`EndpointFunction`) ---

/// Wall-clock budget of one call to an endpoint (connect, send, answer, body), unless
/// configured with another. Generous because serverless platforms cold-start.
pub const ENDPOINT_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// Longest timeout an endpoint may be configured with: a call blocks its trigger lane.
pub const ENDPOINT_TIMEOUT_MS_MAX: u64 = 300_000;
/// Length of an endpoint's URL.
pub const ENDPOINT_URL_BYTES_MAX: usize = 2 * 1024;
/// Extra request headers (`Authorization`, say) one endpoint may be configured with.
pub const ENDPOINT_HEADERS_MAX: usize = 32;
/// Length of one configured header, name and value together.
pub const ENDPOINT_HEADER_BYTES_MAX: usize = 8 * 1024;
/// Size of the JSON request body sent for one batch. Keys and values that are not UTF-8
/// grow by a third in base64, hence the margin over what a batch reads from the log.
pub const ENDPOINT_REQUEST_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Size of an endpoint's JSON response body; it is read with this cap, never further.
/// Room for `OUTPUT_BYTES_PER_INVOCATION_MAX` of outputs in base64 plus the JSON around them.
pub const ENDPOINT_RESPONSE_BYTES_MAX: usize = 48 * 1024 * 1024;
/// Bytes of a failed call's response body kept in its error message (cut at a character
/// boundary, invalid UTF-8 replaced).
pub const ENDPOINT_ERROR_BODY_BYTES_MAX: usize = 512;

const _: () = assert!(MEMORY_BYTES_DEFAULT <= MEMORY_BYTES_MAX);
const _: () = assert!(CONCURRENCY_DEFAULT >= 1 && CONCURRENCY_DEFAULT <= CONCURRENCY_MAX);
const _: () = assert!(CONCURRENCY_MAX <= CONCURRENT_INSTANCES_MAX);
const _: () = assert!(BATCH_SIZE_DEFAULT as usize <= INPUT_EVENTS_PER_INVOCATION_MAX);
const _: () = assert!(BATCH_WINDOW_MS_DEFAULT <= BATCH_WINDOW_MS_MAX);
const _: () = assert!(RETRIES_DEFAULT <= RETRIES_MAX);
const _: () = assert!(RETRY_BACKOFF_INITIAL_MS_DEFAULT <= RETRY_BACKOFF_MAX_MS_DEFAULT);
const _: () = assert!(RETRY_BACKOFF_MAX_MS_DEFAULT <= RETRY_BACKOFF_MS_MAX);
const _: () = assert!(DEADLINE_MS_DEFAULT <= DEADLINE_MS_MAX);
const _: () = assert!(EPOCH_TICK_MS >= 1 && EPOCH_TICK_MS <= DEADLINE_MS_DEFAULT);
const _: () = assert!(MEMORY_BYTES_MAX.is_multiple_of(64 * 1024));
const _: () = assert!(TABLE_SCAN_ROWS_MAX as usize <= OUTPUT_EVENTS_PER_INVOCATION_MAX);
const _: () = assert!(TIMER_SLEEP_MS_MAX >= 1 && TABLE_RESOLVE_RETRY_MS >= 1);
// A consumer checks its table at most once per poll, so a shorter interval would mean nothing.
const _: () = assert!(TABLE_CHECK_INTERVAL_MS >= TRIGGER_POLL_WAIT_MS);
const _: () = assert!(ENDPOINT_TIMEOUT_MS_DEFAULT >= 1 && ENDPOINT_TIMEOUT_MS_DEFAULT <= ENDPOINT_TIMEOUT_MS_MAX);
const _: () = assert!(ENDPOINT_RESPONSE_BYTES_MAX >= OUTPUT_BYTES_PER_INVOCATION_MAX / 3 * 4);
const _: () = assert!(ENDPOINT_ERROR_BODY_BYTES_MAX <= ENDPOINT_RESPONSE_BYTES_MAX);

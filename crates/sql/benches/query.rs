//! Throughput of a filter-and-projection persistent query over JSON records of about 200
//! bytes, through the embedded log: records are preloaded into a topic, then
//! `CREATE STREAM ... AS SELECT ... WHERE ...` runs from the earliest offset until its output
//! holds every matching record. Prints events/s of wall time and per CPU-second of the process
//! (the query runs on one thread, so the latter is events/s per core).
//!
//!     cargo bench -p runnel-sql --bench query
//!
//! Environment: RUNNEL_BENCH_EVENTS (default 1,000,000), RUNNEL_BENCH_DIR (default
//! target/bench-data).

use std::sync::Arc;
use std::time::{Duration, Instant};

use runnel_log::{Log, LogConfig};
use runnel_sql::eventlog::{EventLog, InProcessLog, OutRecord};
use runnel_sql::{Engine, Session};

const PARTITIONS: u32 = 4;
const APPEND_CHUNK: usize = 5_000;

fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

fn main() {
    let events: usize = std::env::var("RUNNEL_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let base = std::env::var("RUNNEL_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-data"));
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(&base).unwrap();
    let log = Log::open(LogConfig::new(dir.path())).unwrap();
    let events_log = Arc::new(InProcessLog::new(log.clone()));
    let engine = Engine::open(events_log.clone()).unwrap();
    let mut session = Session::default();
    session.properties.insert("auto.offset.reset".into(), "earliest".into());
    engine
        .execute(
            &format!(
                "CREATE STREAM clicks (user_id STRING KEY, url STRING, region STRING, device STRING, \
                 session STRING, latency_ms INT, bytes BIGINT, ts BIGINT) WITH (kafka_topic='clicks', value_format='JSON', partitions={PARTITIONS});"
            ),
            &mut session,
        )
        .unwrap();

    // About 200 bytes of JSON per record; a quarter of them match the filter.
    let regions = ["EU", "US", "APAC", "LATAM"];
    let mut total_bytes = 0usize;
    let load = Instant::now();
    let mut pending: Vec<Vec<OutRecord>> = vec![Vec::new(); PARTITIONS as usize];
    for i in 0..events {
        let value = format!(
            r#"{{"url":"https://shop.example.com/products/{:08}?ref=campaign-{:04}","region":"{}","device":"mobile-ios-17","session":"{:032x}","latency_ms":{},"bytes":{},"ts":{}}}"#,
            i % 99_991,
            i % 7919,
            regions[i % 4],
            (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C834),
            i % 1000,
            1000 + i % 50_000,
            1_700_000_000_000u64 + i as u64
        );
        total_bytes += value.len();
        let p = i % PARTITIONS as usize;
        pending[p].push(OutRecord {
            key: Some(format!("user-{:06}", i % 100_000).into_bytes().into()),
            value: Some(value.into_bytes().into()),
            headers: vec![],
            timestamp: 1_700_000_000_000 + i as i64,
        });
        if pending[p].len() == APPEND_CHUNK {
            events_log.append("clicks", p as u32, &std::mem::take(&mut pending[p]), false).unwrap();
        }
    }
    for (p, records) in pending.into_iter().enumerate() {
        if !records.is_empty() {
            events_log.append("clicks", p as u32, &records, false).unwrap();
        }
    }
    let expected = events / 4;
    println!(
        "loaded {events} records ({:.0} B of JSON each) in {:.2} s",
        total_bytes as f64 / events as f64,
        load.elapsed().as_secs_f64()
    );

    let cpu_before = cpu_seconds();
    let started = Instant::now();
    engine
        .execute(
            "CREATE STREAM eu_slow AS SELECT user_id, url, latency_ms * 1000 AS latency_us, UCASE(device) AS device \
             FROM clicks WHERE region = 'EU' AND latency_ms >= 0;",
            &mut session,
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let out: i64 = (0..PARTITIONS).map(|p| events_log.offsets("EU_SLOW", p).unwrap().1).sum();
        if out as usize >= expected {
            break;
        }
        assert!(Instant::now() < deadline, "the query did not finish: {out} of {expected}");
        std::thread::sleep(Duration::from_millis(5));
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;
    println!(
        "filter + projection, JSON in and out: {events} events in {wall:.2} s wall, {cpu:.2} s CPU (this process)"
    );
    println!("  {:.0} events/s (wall)", events as f64 / wall);
    println!("  {:.0} events/s per core (events / CPU-seconds; the query runs on one thread)", events as f64 / cpu);
    println!("  {expected} records written to the output topic");
    engine.shutdown();
    log.shutdown().unwrap();
}

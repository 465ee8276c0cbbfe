//! Benchmark of the function runtime on the hand-written WAT example (`examples/enrich.wat`):
//! deploy time, first-invocation latency, instantiation from the pool, warm invocation
//! latency, per-event overhead and events/s on one core. Prints a table; run with
//! `cargo bench -p runnel-functions`.
//!
//! Goals (issue 8): instantiation < 50 µs, per-event overhead < 5 µs, >= 200,000 events/s
//! on one core.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runnel_functions::{
    CacheOutcome, DeployOptions, Event, Function, Header, Host, Level, Row, Runtime, RuntimeConfig,
};

const DEPLOY_RUNS: usize = 5;
const PROBE_RUNS: usize = 20_000;
const SINGLE_RUNS: usize = 20_000;
const BATCH_RUNS: usize = 2_000;
const BATCH_EVENTS: usize = 100;
const THROUGHPUT_BATCH_EVENTS: usize = 1_000;
const THROUGHPUT_SECONDS: f64 = 2.0;

struct BenchHost {
    users: HashMap<Vec<u8>, String>,
}

impl Host for BenchHost {
    fn table_get(&self, _table: &str, key: &[u8]) -> Result<Option<String>, String> {
        Ok(self.users.get(key).cloned())
    }
    fn table_scan(&self, _: &str, _: &[u8], _: u32) -> Result<Vec<Row>, String> {
        Ok(vec![])
    }
    fn log(&self, _level: Level, _message: &str) {}
    fn now_ms(&self) -> i64 {
        0
    }
}

fn events(count: usize) -> Vec<Event> {
    (0..count)
        .map(|i| Event {
            topic: "orders".to_string(),
            partition: 0,
            offset: i as i64,
            timestamp_ms: 1_700_000_000_000,
            key: Some(format!("user-{}", i % 100).into_bytes()),
            value: Some(format!(r#"{{"order":{i},"amount":42.5,"currency":"EUR"}}"#).into_bytes()),
            headers: vec![Header { key: "trace-id".to_string(), value: b"0123456789abcdef".to_vec() }],
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn time_runs(runs: usize, mut f: impl FnMut()) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        f();
        samples.push(start.elapsed());
    }
    samples.sort();
    samples
}

fn us(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros >= 10_000.0 { format!("{:.1} ms", micros / 1e3) } else { format!("{micros:.1} µs") }
}

fn main() {
    let source = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/enrich.wat")).expect("read enrich.wat");
    let users: HashMap<Vec<u8>, String> = (0..100)
        .map(|i| (format!("user-{i}").into_bytes(), format!(r#"{{"name":"user {i}","tier":"gold"}}"#)))
        .collect();
    let host: Arc<dyn Host> = Arc::new(BenchHost { users });
    let one = events(1);
    let batch = events(BATCH_EVENTS);
    let big = events(THROUGHPUT_BATCH_EVENTS);

    // Deploy (parse WAT + validate + compile + cache write + load) and first invocation,
    // each in a fresh runtime with an empty cache.
    let mut deploys = Vec::new();
    let mut firsts = Vec::new();
    let mut cached_deploys = Vec::new();
    let mut kept: Option<(tempfile::TempDir, Runtime, Function)> = None;
    for _ in 0..DEPLOY_RUNS {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = Runtime::new(RuntimeConfig::new(dir.path().join("cache"))).expect("runtime");
        let start = Instant::now();
        let function = runtime.deploy("enrich", &source, host.clone(), DeployOptions::default()).expect("deploy");
        deploys.push(start.elapsed());
        assert_eq!(function.cache_outcome(), &CacheOutcome::Miss);
        let start = Instant::now();
        function.invoke(&one).expect("first invoke");
        firsts.push(start.elapsed());
        let start = Instant::now();
        let again = runtime.deploy("enrich", &source, host.clone(), DeployOptions::default()).expect("deploy");
        cached_deploys.push(start.elapsed());
        assert_eq!(again.cache_outcome(), &CacheOutcome::Hit);
        kept = Some((dir, runtime, function));
    }
    deploys.sort();
    firsts.sort();
    cached_deploys.sort();
    let Some((_dir, _runtime, function)) = kept else {
        return;
    };

    // Warm up.
    for _ in 0..1_000 {
        function.invoke(&one).expect("invoke");
    }
    let probes = time_runs(PROBE_RUNS, || function.probe().expect("probe"));
    let singles = time_runs(SINGLE_RUNS, || {
        function.invoke(&one).expect("invoke");
    });
    let batches = time_runs(BATCH_RUNS, || {
        function.invoke(&batch).expect("invoke");
    });
    let per_event = (percentile(&batches, 0.5).saturating_sub(percentile(&singles, 0.5))) / (BATCH_EVENTS as u32 - 1);

    // Throughput on this thread (one core) with batches of THROUGHPUT_BATCH_EVENTS and of
    // BATCH_EVENTS.
    let throughput = |events: &[Event]| {
        let start = Instant::now();
        let mut processed = 0usize;
        while start.elapsed().as_secs_f64() < THROUGHPUT_SECONDS {
            processed += function.invoke(events).expect("invoke").len();
        }
        processed as f64 / start.elapsed().as_secs_f64()
    };
    let rate_100 = throughput(&batch);
    let rate_1000 = throughput(&big);

    println!("runnel-functions bench: examples/enrich.wat (table-get + output per event)");
    println!("{:<52} {:>12} {:>12}", "measure", "p50", "p99");
    let row = |name: &str, samples: &[Duration]| {
        println!("{:<52} {:>12} {:>12}", name, us(percentile(samples, 0.5)), us(percentile(samples, 0.99)));
    };
    row("deploy: parse + validate + precompile + cache", &deploys);
    row("deploy: cached artifact (verify + load + link)", &cached_deploys);
    row("first invocation after deploy (1 event)", &firsts);
    row("instantiation from the pool (probe)", &probes);
    row("warm invocation, batch of 1", &singles);
    row(&format!("warm invocation, batch of {BATCH_EVENTS}"), &batches);
    println!("{:<52} {:>12}   (goal < 5 µs)", "per-event overhead ((p50 batch - p50 single) / 99)", us(per_event));
    println!(
        "{:<52} {:>12.0}   (goal >= 200,000)",
        format!("events/s on one core, batches of {BATCH_EVENTS}"),
        rate_100
    );
    println!("{:<52} {:>12.0}", format!("events/s on one core, batches of {THROUGHPUT_BATCH_EVENTS}"), rate_1000);
}

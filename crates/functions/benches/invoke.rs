//! Benchmark of the function runtime on the enrich example in two languages: the
//! hand-written WAT component (`examples/enrich.wat`) and the JavaScript component built
//! by `examples/build.sh` from `examples/js/app.js` (componentize-js, ~12 MB, a whole JS
//! engine). For each: deploy time, first-invocation latency, instantiation from the pool,
//! warm invocation latency (p50, p99), per-event overhead and events/s on one core. Prints
//! a table per function; run with `cargo bench -p runnel-functions --bench invoke`.
//!
//! The JavaScript component is build output, never committed: the bench looks for it in
//! `$RUNNEL_FUNCTION_EXAMPLES` (a directory; `1` means the default) or else in
//! `target/function-examples/`, and says how to build it when it is missing. The Python
//! build of the same function (`enrich-py.wasm`, componentize-py) is measured too when it
//! is there, with fewer runs: it is ~100 times slower to instantiate.
//!
//! `cargo bench -p runnel-functions --bench invoke -- js` measures only the functions whose
//! name contains `js` (`wat`, `js` or `python`).
//!
//! Goals (issue 8): instantiation < 50 µs, per-event overhead < 5 µs, >= 200,000 events/s
//! on one core.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runnel_functions::{
    CacheOutcome, DeployOptions, Event, Function, Header, Host, Level, Row, Runtime, RuntimeConfig,
};

/// Iterations of each measure for one function.
struct Plan {
    deploy_runs: usize,
    probe_runs: usize,
    single_runs: usize,
    batch_runs: usize,
}

/// The WAT function runs in microseconds.
const WAT_PLAN: Plan = Plan { deploy_runs: 5, probe_runs: 20_000, single_runs: 20_000, batch_runs: 2_000 };
/// The JavaScript function compiles for seconds and runs a JS engine per invocation.
const JS_PLAN: Plan = Plan { deploy_runs: 3, probe_runs: 5_000, single_runs: 5_000, batch_runs: 500 };
/// The Python function instantiates in milliseconds.
const PYTHON_PLAN: Plan = Plan { deploy_runs: 1, probe_runs: 1000, single_runs: 200, batch_runs: 50 };
/// Built by `examples/build.sh`.
const JS_FILE: &str = "enrich-js.wasm";
const PYTHON_FILE: &str = "enrich-py.wasm";
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
    let users: HashMap<Vec<u8>, String> = (0..100)
        .map(|i| (format!("user-{i}").into_bytes(), format!(r#"{{"name":"user {i}","tier":"gold"}}"#)))
        .collect();
    let host: Arc<dyn Host> = Arc::new(BenchHost { users });
    println!("runnel-functions bench on {}", machine());
    println!();

    // `cargo bench` passes `--bench`; any other argument selects functions by name.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let selected = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));

    if selected("wat") {
        let wat = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/enrich.wat")).expect("read enrich.wat");
        bench("examples/enrich.wat (WAT by hand: table-get + output per event)", &wat, &host, &WAT_PLAN);
    }
    if selected("js") {
        built_example(JS_FILE, "examples/js/app.js", "componentize-js", &host, &JS_PLAN);
    }
    if selected("python") {
        built_example(PYTHON_FILE, "examples/python/app.py", "componentize-py", &host, &PYTHON_PLAN);
    }
}

/// Benchmarks a component built by `examples/build.sh`, or says how to build it.
fn built_example(file: &str, source: &str, toolchain: &str, host: &Arc<dyn Host>, plan: &Plan) {
    let path = examples_dir().join(file);
    println!();
    match std::fs::read(&path) {
        Ok(component) => bench(
            &format!("{source} as {file} ({toolchain}, {:.1} MB)", component.len() as f64 / 1e6),
            &component,
            host,
            plan,
        ),
        Err(e) => println!(
            "skipped: {source}, {} cannot be read ({e}). Build it with \
             `bash crates/functions/examples/build.sh` (needs Node 20 and Python 3.11; runs npm ci \
             and pip install), or point RUNNEL_FUNCTION_EXAMPLES at the directory holding {file}.",
            path.display()
        ),
    }
}

/// Where `examples/build.sh` put the built components.
fn examples_dir() -> PathBuf {
    match std::env::var_os("RUNNEL_FUNCTION_EXAMPLES") {
        Some(dir) if dir != "1" => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/function-examples"),
    }
}

/// CPU model and core count, for reading the figures.
fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_else(|| "an unknown CPU".to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} cores available (measures run on one thread)")
}

fn bench(label: &str, source: &[u8], host: &Arc<dyn Host>, plan: &Plan) {
    let one = events(1);
    let batch = events(BATCH_EVENTS);
    let big = events(THROUGHPUT_BATCH_EVENTS);

    // Deploy (parse + validate + compile + cache write + load) and first invocation,
    // each in a fresh runtime with an empty cache.
    let mut deploys = Vec::new();
    let mut firsts = Vec::new();
    let mut cached_deploys = Vec::new();
    let mut kept: Option<(tempfile::TempDir, Runtime, Function)> = None;
    for _ in 0..plan.deploy_runs {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = Runtime::new(RuntimeConfig::new(dir.path().join("cache"))).expect("runtime");
        let start = Instant::now();
        let function = runtime.deploy("enrich", source, host.clone(), DeployOptions::default()).expect("deploy");
        deploys.push(start.elapsed());
        assert_eq!(function.cache_outcome(), &CacheOutcome::Miss);
        let start = Instant::now();
        let outputs = function.invoke(&one).expect("first invoke");
        firsts.push(start.elapsed());
        assert_eq!(outputs.len(), 1, "one output per event");
        let start = Instant::now();
        let again = runtime.deploy("enrich", source, host.clone(), DeployOptions::default()).expect("deploy");
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
    let probes = time_runs(plan.probe_runs, || function.probe().expect("probe"));
    let singles = time_runs(plan.single_runs, || {
        function.invoke(&one).expect("invoke");
    });
    let batches = time_runs(plan.batch_runs, || {
        function.invoke(&batch).expect("invoke");
    });
    let per_event = (percentile(&batches, 0.5).saturating_sub(percentile(&singles, 0.5))) / (BATCH_EVENTS as u32 - 1);

    // Throughput on this thread (one core) with batches of BATCH_EVENTS and of
    // THROUGHPUT_BATCH_EVENTS.
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

    println!("function: {label}");
    println!("{:<52} {:>12} {:>12}", "measure", "p50", "p99");
    let row = |name: &str, samples: &[Duration]| {
        println!("{:<52} {:>12} {:>12}", name, us(percentile(samples, 0.5)), us(percentile(samples, 0.99)));
    };
    row(&format!("deploy: parse + validate + precompile + cache (n={})", plan.deploy_runs), &deploys);
    row("deploy: cached artifact (verify + load + link)", &cached_deploys);
    row("first invocation after deploy (1 event)", &firsts);
    let goal = |name: &str, samples: &[Duration], goal: &str| {
        println!("{:<52} {:>12} {:>12}   ({goal})", name, us(percentile(samples, 0.5)), us(percentile(samples, 0.99)));
    };
    goal("instantiation from the pool (probe)", &probes, "goal < 50 µs");
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

//! `runnel fn`: deploy and operate functions on a running server over its REST API
//! (`/v1/functions`), and `runnel fn test`, which runs a component locally on sample events
//! with no server at all: the edit-build-run loop serverless users miss most.
//!
//! `fn test` compiles the component with the same runtime `runnel serve` uses (the compiled
//! artifact is cached under `~/.cache/runnel/functions`, so a second run of a 15 MB
//! JavaScript component starts in milliseconds), serves `table-get`/`table-scan` from
//! `--table NAME=rows.jsonl` files, prints the guest's log lines to stderr as they come and
//! the outputs to stdout, one JSON line each.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use runnel_functions::{
    DeployOptions, Event, Host, HttpRequest, Level, Row, Runtime, RuntimeConfig, level_name, output_json, parse_event,
};
use serde_json::{Value as Json, json};

use crate::http_client::Server;
use crate::output::{OutputFormat, print_json, print_table};
use crate::time_spec;

/// Lines of an events or table file read at most (each line one event or row).
const INPUT_LINES_MAX: usize = 1_000_000;
/// How long a followed log read waits before checking for Ctrl-C.
const FOLLOW_INTERRUPT_CHECK: Duration = Duration::from_millis(200);

#[derive(Args, Debug)]
pub struct FnArgs {
    /// URL of runnel's HTTP API.
    #[arg(long, global = true, env = "RUNNEL_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    #[command(subcommand)]
    command: FnCommand,
}

#[derive(Subcommand, Debug)]
enum FnCommand {
    /// Deploy a component as function NAME, or a new version of it (atomic; keeps its position).
    Deploy(DeployArgs),
    /// List the functions with their state, trigger and counters.
    List {
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Show a function's settings, state and metrics (JSON).
    Describe { name: String },
    /// Print a function's log lines (its own and the platform's about it).
    Logs {
        name: String,
        /// Keep printing new lines until Ctrl-C.
        #[arg(short, long)]
        follow: bool,
        /// Only lines written in this last span (`10m`, `2h`) or since this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Stop a function's trigger (positions are kept).
    Pause { name: String },
    /// Restart a paused function from its committed positions.
    Resume { name: String },
    /// Remove a function and its positions (its dead-letter topic stays).
    Delete { name: String },
    /// Run a deployed function once on events (one JSON object per line) and print its outputs.
    Invoke {
        name: String,
        /// Events, one JSON object per line (`-` or absent: stdin), e.g. {"key":"k","value":{"n":1}}.
        #[arg(long, short)]
        input: Option<PathBuf>,
        /// Also write the outputs to their topics.
        #[arg(long)]
        write: bool,
    },
    /// Run a function's dead letters through its current version (after deploying a fix).
    ReplayDeadLetters { name: String },
    /// Run a component locally on sample events, no server needed: prints outputs and logs.
    Test(TestArgs),
    /// Print the WIT package that defines what a function exports and imports.
    Wit,
}

#[derive(Args, Debug)]
struct DeployArgs {
    name: String,
    /// The component: a `.wasm` file (or `.wat` text).
    #[arg(long, required_unless_present = "url", conflicts_with = "url")]
    component: Option<PathBuf>,
    /// Instead of a component: POST each batch as JSON to this URL (a function on Lambda,
    /// Cloud Run, OpenFaaS...), with the same ordering, retries and dead letters.
    #[arg(long)]
    url: Option<String>,
    /// A header sent to the URL, as NAME=VALUE (repeatable); values are never shown again.
    #[arg(long = "header", value_name = "NAME=VALUE", requires = "url", value_parser = crate::topic::parse_key_value)]
    headers: Vec<(String, String)>,
    /// How long one call to the URL may take, in milliseconds (default 30000).
    #[arg(long, requires = "url")]
    timeout_ms: Option<u64>,
    /// What runs it: `none`, `topic:NAME[@earliest|@latest|@MS]`, `table:NAME`, `cron:EXPR`, `http`.
    #[arg(long, default_value = "none")]
    trigger: String,
    /// Events of one key run in order; up to this many keys run at once.
    #[arg(long)]
    concurrency: Option<u32>,
    /// Retries of a failed invocation before its events are dead-lettered.
    #[arg(long)]
    retries: Option<u32>,
    /// Wait before the first retry (doubling up to --retry-backoff-max-ms).
    #[arg(long)]
    retry_backoff_ms: Option<u64>,
    #[arg(long)]
    retry_backoff_max_ms: Option<u64>,
    /// Dead-letter topic (default: NAME-dlq).
    #[arg(long)]
    dead_letter: Option<String>,
    /// Most events per invocation.
    #[arg(long)]
    batch_size: Option<u32>,
    /// How long to wait for a batch to fill.
    #[arg(long)]
    batch_window_ms: Option<u64>,
    /// Memory limit of one invocation, in MiB.
    #[arg(long)]
    memory_mb: Option<u64>,
    /// Deadline of one invocation.
    #[arg(long)]
    deadline_ms: Option<u64>,
}

#[derive(Args, Debug)]
struct TestArgs {
    /// The component: a `.wasm` file (or `.wat` text).
    #[arg(long)]
    component: PathBuf,
    /// Events, one JSON object per line (`-` or absent: stdin), e.g. {"key":"k","value":{"n":1}}.
    #[arg(long, short)]
    input: Option<PathBuf>,
    /// A table the function reads, as NAME=FILE with one {"key": ..., "value": {...}} per line
    /// (repeatable).
    #[arg(long = "table", value_name = "NAME=FILE")]
    tables: Vec<String>,
    /// Events per invocation.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Send the input as HTTP requests instead: one {"method","path","headers","body"} per line.
    #[arg(long)]
    http: bool,
    /// Memory limit of one invocation, in MiB.
    #[arg(long)]
    memory_mb: Option<u64>,
    /// Deadline of one invocation.
    #[arg(long)]
    deadline_ms: Option<u64>,
}

pub fn run(args: FnArgs) -> anyhow::Result<()> {
    let server = || Server::parse(&args.server, "runnel fn");
    match args.command {
        FnCommand::Deploy(deploy) => deploy_function(&server()?, deploy),
        FnCommand::List { output } => list(&server()?, output),
        FnCommand::Describe { name } => {
            let info = server()?.json("GET", &format!("/v1/functions/{name}"), "application/json", b"")?;
            println!("{}", serde_json::to_string_pretty(&info)?);
            Ok(())
        }
        FnCommand::Logs { name, follow, since, output } => logs(&server()?, &name, follow, since, output),
        FnCommand::Pause { name } => simple(&server()?, "POST", &format!("/v1/functions/{name}/pause"), "paused"),
        FnCommand::Resume { name } => simple(&server()?, "POST", &format!("/v1/functions/{name}/resume"), "resumed"),
        FnCommand::Delete { name } => simple(&server()?, "DELETE", &format!("/v1/functions/{name}"), "deleted"),
        FnCommand::Invoke { name, input, write } => {
            let events: Vec<Json> = read_lines(input.as_deref())?
                .into_iter()
                .map(|(n, line)| serde_json::from_str(&line).with_context(|| format!("line {n}: not JSON")))
                .collect::<anyhow::Result<_>>()?;
            let path = format!("/v1/functions/{name}/invoke?write={write}");
            let body = serde_json::to_vec(&json!({ "events": events }))?;
            let answer = server()?.json("POST", &path, "application/json", &body)?;
            for output in answer["outputs"].as_array().into_iter().flatten() {
                print_json(output);
            }
            Ok(())
        }
        FnCommand::ReplayDeadLetters { name } => {
            let path = format!("/v1/functions/{name}/replay-dead-letters");
            let report = server()?.json("POST", &path, "application/json", b"")?;
            println!(
                "replayed {} dead letters of {name}; {} failed again",
                report["replayed"].as_u64().unwrap_or(0),
                report["dead_lettered_again"].as_u64().unwrap_or(0)
            );
            Ok(())
        }
        FnCommand::Test(test) => test_locally(test),
        FnCommand::Wit => {
            print!("{}", runnel_functions::WIT);
            Ok(())
        }
    }
}

fn deploy_function(server: &Server, args: DeployArgs) -> anyhow::Result<()> {
    let (content_type, body) = match (&args.component, &args.url) {
        (Some(component), _) => {
            let bytes = std::fs::read(component).with_context(|| format!("cannot read {}", component.display()))?;
            ("application/wasm", bytes)
        }
        (None, Some(url)) => {
            let mut endpoint =
                json!({ "url": url, "headers": args.headers.iter().cloned().collect::<BTreeMap<_, _>>() });
            if let Some(ms) = args.timeout_ms {
                endpoint["timeout_ms"] = json!(ms);
            }
            ("application/json", serde_json::to_vec(&json!({ "endpoint": endpoint }))?)
        }
        (None, None) => bail!("give --component FILE or --url URL"),
    };
    let mut query = vec![format!("trigger={}", encode(&args.trigger))];
    let mut add = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            query.push(format!("{name}={}", encode(&value)));
        }
    };
    add("concurrency", args.concurrency.map(|v| v.to_string()));
    add("retries", args.retries.map(|v| v.to_string()));
    add("retry_backoff_initial_ms", args.retry_backoff_ms.map(|v| v.to_string()));
    add("retry_backoff_max_ms", args.retry_backoff_max_ms.map(|v| v.to_string()));
    add("dead_letter_topic", args.dead_letter);
    add("batch_size", args.batch_size.map(|v| v.to_string()));
    add("batch_window_ms", args.batch_window_ms.map(|v| v.to_string()));
    add("memory_bytes_max", args.memory_mb.map(|v| (v.saturating_mul(1024 * 1024)).to_string()));
    add("deadline_ms", args.deadline_ms.map(|v| v.to_string()));
    let path = format!("/v1/functions/{}?{}", args.name, query.join("&"));
    let spec = server.json("PUT", &path, content_type, &body)?;
    let what = match spec["endpoint"]["url"].as_str() {
        Some(url) => format!("endpoint {url}"),
        None => format!("component {}", spec["component_sha256"].as_str().unwrap_or("?").get(..12).unwrap_or("?")),
    };
    println!("deployed {} version {} ({what}, trigger {})", args.name, spec["version"], args.trigger);
    Ok(())
}

/// Percent-encodes a query parameter value.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn simple(server: &Server, method: &str, path: &str, done: &str) -> anyhow::Result<()> {
    server.json(method, path, "application/json", b"")?;
    let name = path.trim_start_matches("/v1/functions/").split('/').next().unwrap_or_default();
    println!("{name} {done}");
    Ok(())
}

fn list(server: &Server, output: OutputFormat) -> anyhow::Result<()> {
    let answer = server.json("GET", "/v1/functions", "application/json", b"")?;
    let functions = answer["functions"].as_array().cloned().unwrap_or_default();
    if output == OutputFormat::Json {
        print_json(&Json::Array(functions));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = functions
        .iter()
        .map(|f| {
            let spec = &f["spec"];
            let metrics = &f["metrics"];
            vec![
                spec["name"].as_str().unwrap_or_default().to_string(),
                spec["version"].to_string(),
                f["status"]["state"].as_str().unwrap_or_default().to_string(),
                trigger_text(&spec["trigger"]),
                metrics["invocations"].to_string(),
                metrics["errors"].to_string(),
                metrics["dead_letters"].to_string(),
                metrics["lag"].to_string(),
            ]
        })
        .collect();
    print_table(&["NAME", "VERSION", "STATE", "TRIGGER", "INVOCATIONS", "ERRORS", "DEAD LETTERS", "LAG"], &rows);
    Ok(())
}

/// A stored trigger as the CLI spells it.
fn trigger_text(trigger: &Json) -> String {
    serde_json::from_value::<runnel_functions::Trigger>(trigger.clone())
        .map_or_else(|_| trigger.to_string(), |t| t.to_string())
}

fn logs(server: &Server, name: &str, follow: bool, since: Option<String>, output: OutputFormat) -> anyhow::Result<()> {
    let since_ms = match since {
        None => None,
        Some(text) => Some(match time_spec::parse_duration(&text) {
            Ok(span) => time_spec::now_ms() - i64::try_from(span.as_millis()).unwrap_or(i64::MAX),
            Err(_) => time_spec::parse_datetime(&text).map_err(|e| anyhow::anyhow!("--since {text:?}: {e}"))?,
        }),
    };
    let mut path = format!("/v1/functions/{name}/logs?follow={follow}");
    if let Some(ms) = since_ms {
        path.push_str(&format!("&since_ms={ms}"));
    }
    let print = |line: &Json| {
        if output == OutputFormat::Json {
            print_json(line);
        } else {
            println!(
                "{} {:<5} {:<8} {}",
                time_spec::format_ms(line["at_ms"].as_i64().unwrap_or(0)),
                line["level"].as_str().unwrap_or("?"),
                line["source"].as_str().unwrap_or("?"),
                line["message"].as_str().unwrap_or_default()
            );
        }
    };
    if !follow {
        let answer = server.json("GET", &path, "application/json", b"")?;
        answer["lines"].as_array().into_iter().flatten().for_each(print);
        return Ok(());
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    crate::sql_shell::on_ctrl_c(interrupted.clone());
    let mut answer = server.request("GET", &path, &[("Accept", "application/x-ndjson")], b"")?;
    if answer.status != 200 {
        let status = answer.status;
        let text = answer.text()?;
        let json: Option<Json> = serde_json::from_str(&text).ok();
        bail!("{} (HTTP {status})", json.as_ref().and_then(|j| j["message"].as_str()).unwrap_or(text.trim()));
    }
    answer.set_read_timeout(FOLLOW_INTERRUPT_CHECK)?;
    while let Some(line) = answer.line(&interrupted)? {
        if line.trim().is_empty() {
            continue;
        }
        let json: Json =
            serde_json::from_str(&line).with_context(|| format!("bad log line from the server: {line}"))?;
        if json.get("error_code").is_some() {
            bail!("{}", json["message"].as_str().unwrap_or(&line));
        }
        print(&json);
    }
    Ok(())
}

/// Numbered non-empty lines of `path` (`-` or `None`: stdin).
fn read_lines(path: Option<&Path>) -> anyhow::Result<Vec<(usize, String)>> {
    let reader: Box<dyn Read> = match path {
        None => Box::new(std::io::stdin()),
        Some(p) if p == Path::new("-") => Box::new(std::io::stdin()),
        Some(p) => Box::new(std::fs::File::open(p).with_context(|| format!("cannot read {}", p.display()))?),
    };
    let mut lines = Vec::new();
    for (i, line) in BufReader::new(reader).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        if lines.len() == INPUT_LINES_MAX {
            bail!("more than {INPUT_LINES_MAX} lines of input");
        }
        lines.push((i + 1, line));
    }
    Ok(lines)
}

/// The host of `runnel fn test`: tables from files, logs to stderr, the real clock.
struct LocalHost {
    tables: BTreeMap<String, BTreeMap<Vec<u8>, String>>,
    /// Log lines go to stderr one at a time, whole.
    stderr: Mutex<()>,
}

impl Host for LocalHost {
    fn table_get(&self, table: &str, key: &[u8]) -> Result<Option<String>, String> {
        let rows =
            self.tables.get(table).ok_or_else(|| format!("table {table} is not given (--table {table}=FILE)"))?;
        Ok(rows.get(key).cloned())
    }

    fn table_scan(&self, table: &str, prefix: &[u8], limit: u32) -> Result<Vec<Row>, String> {
        let rows =
            self.tables.get(table).ok_or_else(|| format!("table {table} is not given (--table {table}=FILE)"))?;
        Ok(rows
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit as usize)
            .map(|(key, value)| Row { key: key.clone(), value: value.clone() })
            .collect())
    }

    fn log(&self, level: Level, message: &str) {
        let _one_at_a_time = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        eprintln!("[{}] {message}", level_name(level));
    }

    fn now_ms(&self) -> i64 {
        time_spec::now_ms()
    }
}

fn load_table(spec: &str) -> anyhow::Result<(String, BTreeMap<Vec<u8>, String>)> {
    let (name, file) = spec.split_once('=').with_context(|| format!("--table {spec:?} is not NAME=FILE"))?;
    let mut rows = BTreeMap::new();
    for (n, line) in read_lines(Some(Path::new(file)))? {
        let row: Json = serde_json::from_str(&line).with_context(|| format!("{file} line {n}: not JSON"))?;
        let key = match &row["key"] {
            Json::String(s) => s.clone().into_bytes(),
            Json::Null => bail!("{file} line {n}: a row needs a key"),
            other => other.to_string().into_bytes(),
        };
        match &row["value"] {
            Json::Null => rows.remove(&key),
            value => rows.insert(key, value.to_string()),
        };
    }
    Ok((name.to_string(), rows))
}

/// Where `fn test` keeps compiled components between runs.
fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("runnel").join("functions")
}

fn test_locally(args: TestArgs) -> anyhow::Result<()> {
    let component =
        std::fs::read(&args.component).with_context(|| format!("cannot read {}", args.component.display()))?;
    let tables = args.tables.iter().map(|t| load_table(t)).collect::<anyhow::Result<BTreeMap<_, _>>>()?;
    let host = Arc::new(LocalHost { tables, stderr: Mutex::new(()) });
    let runtime = Runtime::new(RuntimeConfig::new(cache_dir())).context("cannot start the function runtime")?;
    let mut options = DeployOptions::default();
    if let Some(mb) = args.memory_mb {
        options.memory_bytes_max = usize::try_from(mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
    }
    if let Some(ms) = args.deadline_ms {
        options.deadline_ms = ms;
    }
    let name = args.component.file_stem().and_then(|s| s.to_str()).unwrap_or("test");
    let name: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    let function = runtime.deploy(&name, &component, host, options).context("cannot deploy the component")?;
    let lines = read_lines(args.input.as_deref())?;
    let mut failures = 0usize;
    if args.http {
        for (n, line) in lines {
            let request = http_request(&line).with_context(|| format!("input line {n}"))?;
            match function.invoke_http(&request) {
                Ok(outcome) => {
                    let response = &outcome.response;
                    let headers: serde_json::Map<String, Json> = response
                        .headers
                        .iter()
                        .map(|h| (h.key.clone(), Json::String(String::from_utf8_lossy(&h.value).into_owned())))
                        .collect();
                    let body = String::from_utf8_lossy(&response.body).into_owned();
                    print_json(&json!({ "status": response.status, "headers": headers, "body": body }));
                    outcome.produced.iter().for_each(|o| print_json(&output_json(o)));
                }
                Err(e) => {
                    failures += 1;
                    eprintln!("request on line {n} failed: {e}");
                }
            }
        }
    } else {
        let now = time_spec::now_ms();
        let events = lines
            .into_iter()
            .enumerate()
            .map(|(i, (n, line))| parse_event(&line, i as i64, now).with_context(|| format!("input line {n}")))
            .collect::<anyhow::Result<Vec<Event>>>()?;
        for chunk in events.chunks(args.batch_size.max(1)) {
            match function.invoke(chunk) {
                Ok(outputs) => outputs.iter().for_each(|o| print_json(&output_json(o))),
                Err(e) => {
                    failures += 1;
                    eprintln!(
                        "invocation of events at offsets {}..={} failed: {e}",
                        chunk[0].offset,
                        chunk[chunk.len() - 1].offset
                    );
                }
            }
        }
    }
    if failures > 0 {
        bail!("{failures} invocation{} failed", if failures == 1 { "" } else { "s" });
    }
    Ok(())
}

fn http_request(line: &str) -> anyhow::Result<HttpRequest> {
    let json: Json = serde_json::from_str(line).context("not JSON")?;
    let headers = match &json["headers"] {
        Json::Object(map) => map
            .iter()
            .map(|(k, v)| runnel_functions::Header {
                key: k.clone(),
                value: v.as_str().unwrap_or_default().as_bytes().to_vec(),
            })
            .collect(),
        _ => Vec::new(),
    };
    let body = match &json["body"] {
        Json::Null => Vec::new(),
        Json::String(s) => s.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    };
    Ok(HttpRequest {
        method: json["method"].as_str().unwrap_or("GET").to_string(),
        path: json["path"].as_str().unwrap_or("/").to_string(),
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("topic:orders@latest"), "topic%3Aorders%40latest");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn local_tables_scan_by_prefix() {
        let mut rows = BTreeMap::new();
        for k in ["a1", "a2", "b1"] {
            rows.insert(k.as_bytes().to_vec(), format!("{{\"k\":\"{k}\"}}"));
        }
        let host = LocalHost { tables: BTreeMap::from([("t".to_string(), rows)]), stderr: Mutex::new(()) };
        let scanned = host.table_scan("t", b"a", 10).unwrap();
        assert_eq!(scanned.iter().map(|r| r.key.clone()).collect::<Vec<_>>(), vec![b"a1".to_vec(), b"a2".to_vec()]);
        assert_eq!(host.table_get("t", b"b1").unwrap().as_deref(), Some("{\"k\":\"b1\"}"));
        assert!(host.table_get("missing", b"x").is_err());
    }
}

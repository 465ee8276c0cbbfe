//! The `runnel` binary: command line, configuration (flags, `RUNNEL_*` environment
//! variables, a TOML file) and the wiring of the log and the Kafka broker.
//!
//! `runnel serve` opens the log in the data directory, serves Kafka clients and the HTTP API
//! (health, metrics, REST; crate `runnel-http`), runs log
//! maintenance about once a second, and on SIGINT or SIGTERM stops accepting, finishes
//! in-flight requests, shuts the log down cleanly (fsync, clean-shutdown marker) and exits 0.

mod alloc;
mod bench;
mod client_args;
mod consume;
mod function;
mod group;
mod http_client;
mod output;
mod produce;
mod sql_shell;
mod time_spec;
mod topic;

use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use runnel_broker::group::GroupConfig;
use runnel_broker::{Broker, BrokerConfig};
use runnel_log::{Log, LogConfig};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOCATOR: alloc::Allocator = alloc::Allocator;

/// How often the log's retention, compaction, rolling and flushing run.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);
/// Milliseconds in a minute.
const MINUTE_MS: u64 = 60_000;
/// Default `--offsets-retention-minutes` (Kafka's `offsets.retention.minutes`, 7 days).
const OFFSETS_RETENTION_MINUTES_DEFAULT: u64 = runnel_broker::group::OFFSETS_RETENTION_MS_DEFAULT / MINUTE_MS;
/// Largest `--offsets-retention-minutes`: the retention must fit in i64 milliseconds.
const OFFSETS_RETENTION_MINUTES_MAX: u64 = runnel_broker::group::OFFSETS_RETENTION_MS_MAX / MINUTE_MS;

const _: () =
    assert!(OFFSETS_RETENTION_MINUTES_DEFAULT * MINUTE_MS == runnel_broker::group::OFFSETS_RETENTION_MS_DEFAULT);

#[derive(Parser, Debug)]
#[command(name = "runnel", version, about = "An event streaming platform in one binary (Kafka-compatible)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the broker: Kafka protocol on 127.0.0.1:9092, data in ./runnel-data.
    Serve(ServeArgs),
    /// Measure a Kafka-compatible broker: produce and consume a topic, report throughput and latency.
    Bench(bench::BenchArgs),
    /// Create, list, describe, reconfigure and delete topics.
    Topic(topic::TopicArgs),
    /// List, describe and delete consumer groups; reset their offsets.
    Group(group::GroupArgs),
    /// Write records to a topic: one per line of stdin or a file.
    Produce(produce::ProduceArgs),
    /// Print a topic's records (kcat-like formats, or JSON).
    Consume(consume::ConsumeArgs),
    /// Streaming SQL shell (ksqlDB's dialect) over the HTTP API: interactive, -e or -f.
    Sql(sql_shell::SqlArgs),
    /// Deploy and operate functions (WebAssembly components run on events); test one locally.
    #[command(name = "fn")]
    Fn(function::FnArgs),
    /// Print a shell completion script: runnel completions bash > /etc/bash_completion.d/runnel
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug, Clone)]
struct ServeArgs {
    /// TOML file with any of these settings, named as the long flags (`data-dir = "/var/lib/runnel"`).
    /// Flags and environment variables take precedence over it.
    #[arg(long, env = "RUNNEL_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where topics and broker state are stored.
    #[arg(long, env = "RUNNEL_DATA_DIR", default_value = "./runnel-data")]
    data_dir: PathBuf,
    /// Address the Kafka protocol listens on (port 0 picks a free port).
    #[arg(long, env = "RUNNEL_KAFKA_LISTENER", default_value = "127.0.0.1:9092")]
    kafka_listener: String,
    /// host:port clients are told to connect to (default: the bound address).
    #[arg(long, env = "RUNNEL_ADVERTISED_KAFKA_LISTENER")]
    advertised_kafka_listener: Option<String>,
    /// Address of the HTTP server: /healthz, /metrics, the REST API under /v1 and /openapi.json
    /// (port 0 picks a free port).
    #[arg(long, env = "RUNNEL_HTTP_LISTENER", default_value = "127.0.0.1:8080")]
    http_listener: String,
    /// Create unknown topics when clients ask for their metadata.
    #[arg(long, env = "RUNNEL_AUTO_CREATE_TOPICS", default_value_t = true, action = ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    auto_create_topics: bool,
    /// Partitions of auto-created topics, and of CreateTopics asking for the default.
    #[arg(long, env = "RUNNEL_DEFAULT_PARTITIONS", default_value_t = 1)]
    default_partitions: u32,
    /// This broker's node id.
    #[arg(long, env = "RUNNEL_NODE_ID", default_value_t = 0)]
    node_id: i32,
    /// How long the committed offsets of a consumer group without members are kept, in minutes
    /// (Kafka's offsets.retention.minutes): counted from when the group became empty, or from its
    /// last commit if it has been empty since the broker started.
    #[arg(long, env = "RUNNEL_OFFSETS_RETENTION_MINUTES", default_value_t = OFFSETS_RETENTION_MINUTES_DEFAULT)]
    offsets_retention_minutes: u64,
    /// Log filter for stderr: error, warn, info, debug, trace, or directives like `runnel_broker=debug`.
    #[arg(long, env = "RUNNEL_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

/// The config file: the same settings, all optional.
#[derive(serde::Deserialize, Debug, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    kafka_listener: Option<String>,
    advertised_kafka_listener: Option<String>,
    http_listener: Option<String>,
    auto_create_topics: Option<bool>,
    default_partitions: Option<u32>,
    node_id: Option<i32>,
    offsets_retention_minutes: Option<u64>,
    log_level: Option<String>,
}

/// Fills every setting not given by flag or environment from the config file.
fn merge_file(args: &mut ServeArgs, matches: &ArgMatches) -> anyhow::Result<()> {
    let Some(path) = args.config.clone() else { return Ok(()) };
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read config file {}", path.display()))?;
    let file: FileConfig = toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))?;
    let from_file =
        |id: &str| !matches!(matches.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable));
    if let Some(v) = file.data_dir.filter(|_| from_file("data_dir")) {
        args.data_dir = v;
    }
    if let Some(v) = file.kafka_listener.filter(|_| from_file("kafka_listener")) {
        args.kafka_listener = v;
    }
    if let Some(v) = file.advertised_kafka_listener.filter(|_| from_file("advertised_kafka_listener")) {
        args.advertised_kafka_listener = Some(v);
    }
    if let Some(v) = file.http_listener.filter(|_| from_file("http_listener")) {
        args.http_listener = v;
    }
    if let Some(v) = file.auto_create_topics.filter(|_| from_file("auto_create_topics")) {
        args.auto_create_topics = v;
    }
    if let Some(v) = file.default_partitions.filter(|_| from_file("default_partitions")) {
        args.default_partitions = v;
    }
    if let Some(v) = file.node_id.filter(|_| from_file("node_id")) {
        args.node_id = v;
    }
    if let Some(v) = file.offsets_retention_minutes.filter(|_| from_file("offsets_retention_minutes")) {
        args.offsets_retention_minutes = v;
    }
    if let Some(v) = file.log_level.filter(|_| from_file("log_level")) {
        args.log_level = v;
    }
    Ok(())
}

/// `--offsets-retention-minutes` in milliseconds.
fn offsets_retention_ms(minutes: u64) -> anyhow::Result<u64> {
    if !(1..=OFFSETS_RETENTION_MINUTES_MAX).contains(&minutes) {
        bail!(
            "invalid offsets retention of {minutes} minutes: it must be 1 to {OFFSETS_RETENTION_MINUTES_MAX} \
             (--offsets-retention-minutes, default {OFFSETS_RETENTION_MINUTES_DEFAULT}: 7 days)"
        );
    }
    Ok(minutes * MINUTE_MS)
}

fn parse_listener(s: &str) -> anyhow::Result<SocketAddr> {
    s.to_socket_addrs()
        .with_context(|| format!("invalid listener address {s:?} (expected host:port)"))?
        .next()
        .with_context(|| format!("listener address {s:?} resolves to nothing"))
}

fn parse_advertised(s: &str) -> anyhow::Result<(String, u16)> {
    let Some((host, port)) = s.rsplit_once(':') else {
        bail!("invalid advertised listener {s:?} (expected host:port)")
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("invalid advertised listener {s:?}: the host is empty");
    }
    let port = port.parse().with_context(|| format!("invalid port in advertised listener {s:?}"))?;
    Ok((host.to_string(), port))
}

fn main() -> std::process::ExitCode {
    let command = Cli::command();
    let matches = command.get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Serve(mut args) => {
            let sub = matches.subcommand_matches("serve").cloned().unwrap_or_default();
            merge_file(&mut args, &sub).and_then(|()| serve(args))
        }
        Command::Bench(args) => bench::run(args),
        Command::Topic(args) => topic::run(args),
        Command::Group(args) => group::run(args),
        Command::Produce(args) => produce::run(args),
        Command::Consume(args) => consume::run(args),
        Command::Sql(args) => sql_shell::run(args),
        Command::Fn(args) => function::run(args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "runnel", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runnel: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_new(&args.log_level).with_context(|| format!("invalid log level {:?}", args.log_level))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let listener = parse_listener(&args.kafka_listener)?;
    let advertised = args.advertised_kafka_listener.as_deref().map(parse_advertised).transpose()?;
    let http_listener = parse_listener(&args.http_listener)?;
    let offsets_retention_ms = offsets_retention_ms(args.offsets_retention_minutes)?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    runtime.block_on(async move {
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
        let data_dir = args.data_dir.clone();
        let log = tokio::task::spawn_blocking(move || Log::open(LogConfig::new(data_dir)))
            .await?
            .with_context(|| format!("cannot open the log in {}", args.data_dir.display()))?;
        let config = BrokerConfig {
            listener,
            advertised_listener: advertised,
            node_id: args.node_id,
            auto_create_topics: args.auto_create_topics,
            default_partitions: args.default_partitions,
            groups: GroupConfig { offsets_retention_ms, ..GroupConfig::default() },
        };
        let broker = Broker::bind(config, log.clone()).await?;
        // The SQL engine replays its stored statements and resumes its persistent queries.
        let sql_log: Arc<dyn runnel_sql::EventLog> = Arc::new(runnel_sql::InProcessLog::new(log.clone()));
        let sql_log_for_functions = sql_log.clone();
        // Stateful queries keep local snapshots of their state here (their changelog topics
        // are the durable copy).
        let state_dir = args.data_dir.join("sql-state");
        let sql = tokio::task::spawn_blocking(move || runnel_sql::Engine::open_with_state(sql_log, Some(state_dir)))
            .await?
            .context("cannot start the SQL engine")?;
        // Functions reload their registry and resume their triggers from committed positions.
        let functions = {
            let mut config = runnel_functions::ServiceConfig::new(args.data_dir.clone());
            config.auto_create_output_topics = args.auto_create_topics;
            let (log, engine) = (sql_log_for_functions, sql.clone());
            tokio::task::spawn_blocking(move || runnel_functions::FunctionService::open(config, log, engine))
                .await?
                .context("cannot start the functions service")?
        };
        let functions = Arc::new(functions);
        let http = runnel_http::HttpServer::bind(http_listener, &broker)
            .await
            .with_context(|| format!("cannot listen on {http_listener} (HTTP; set --http-listener)"))?
            .with_sql(sql.clone(), broker.cluster_id().to_string())
            .with_functions(functions.clone());
        let (http_addr, readiness) = (http.local_addr(), http.readiness());
        let shutdown = shutdown_signal()?;
        let maintenance = Maintenance::start(log.clone());
        // The HTTP server stops with the broker (when the signal arrives, or if the broker fails).
        let (http_stop, mut http_stopped) = tokio::sync::watch::channel(false);
        let http_task = tokio::spawn(http.run(async move {
            let _ = http_stopped.wait_for(|stop| *stop).await;
        }));
        tracing::info!(data_dir = %args.data_dir.display(), kafka = %broker.local_addr(), http = %http_addr, "runnel started");
        {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "runnel ready: kafka={} http={http_addr}", broker.local_addr())?;
            stdout.flush()?;
        }
        readiness.set(true);
        let served = broker
            .run(async move {
                shutdown.await;
                readiness.set(false);
                let _ = http_stop.send(true);
            })
            .await;
        match http_task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "HTTP server failed"),
            Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
        }
        maintenance.stop();
        // Triggers commit what they have done before the engine and the log close.
        tokio::task::spawn_blocking(move || functions.shutdown()).await?;
        tokio::task::spawn_blocking(move || sql.shutdown()).await?;
        let closed = tokio::task::spawn_blocking(move || log.shutdown()).await?;
        served?;
        closed.context("log shutdown failed")?;
        tracing::info!("runnel stopped cleanly");
        Ok(())
    })
}

/// Completes on the first SIGINT or SIGTERM.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
        }
    })
}

/// The background thread calling `Log::run_maintenance` about once a second.
struct Maintenance {
    stop: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Maintenance {
    fn start(log: Arc<Log>) -> Maintenance {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("log-maintenance".to_string())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(MAINTENANCE_INTERVAL) {
                    log.run_maintenance(runnel_log::now_ms());
                }
            })
            .expect("spawning the maintenance thread");
        Maintenance { stop, thread }
    }

    fn stop(self) {
        let _ = self.stop.send(());
        if self.thread.join().is_err() {
            tracing::error!("log maintenance thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_retention_minutes_are_checked() {
        assert_eq!(offsets_retention_ms(OFFSETS_RETENTION_MINUTES_DEFAULT).unwrap(), 604_800_000);
        assert_eq!(offsets_retention_ms(1).unwrap(), 60_000);
        assert!(offsets_retention_ms(OFFSETS_RETENTION_MINUTES_MAX).is_ok());
        for bad in [0, OFFSETS_RETENTION_MINUTES_MAX + 1, u64::MAX] {
            let e = offsets_retention_ms(bad).unwrap_err().to_string();
            assert!(e.contains("invalid offsets retention") && e.contains("--offsets-retention-minutes"), "{e}");
        }
        let cli = Cli::try_parse_from(["runnel", "serve", "--offsets-retention-minutes", "1440"]).unwrap();
        let Command::Serve(args) = cli.command else { panic!() };
        assert_eq!(args.offsets_retention_minutes, 1440);
    }
}

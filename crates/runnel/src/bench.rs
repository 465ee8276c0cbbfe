//! `runnel bench`: a load generator that speaks the Kafka protocol, so it measures any
//! Kafka-compatible broker (runnel or not).
//!
//! Producers each own a TCP connection and send Produce requests, one v2 batch per request for
//! the partitions in turn, with up to `--max-in-flight` requests awaiting their answer. Every
//! record's value starts with its send time (microseconds since the Unix epoch, big-endian), so
//! consumers, fetching from the offsets that were latest at the start, compute end-to-end
//! latency as receive time minus send time. The bootstrap broker is assumed to lead every
//! partition of the topic (true of a single runnel node). Connections, version negotiation and
//! the admin calls come from `runnel-client`; the producers drive a split [`Connection`]
//! directly, a writer task and a reader task, to control pacing and pipelining themselves.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::protocol::StrBytes;
use runnel_client::admin::is_topic_already_exists;
use runnel_client::{Client, Connection, NewTopic, OffsetSpec};
use runnel_records::{BatchBuilder, Compression, Record};
use tokio::sync::{Semaphore, mpsc};

/// Most Produce requests a producer may have awaiting their answer (`--max-in-flight`).
const MAX_IN_FLIGHT_LIMIT: usize = 1_000;
/// Latency samples kept in all (reservoir sampling beyond that).
const RESERVOIR_SAMPLES: usize = 1_000_000;
/// How long to wait for the producers' last answers.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long consumers may keep draining after the producers stopped.
const DRAIN_GRACE: Duration = Duration::from_secs(5);
const CLIENT_ID: &str = "runnel-bench";

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// host:port of the Kafka-compatible broker to measure.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Topic to write and read (created with CreateTopics if missing).
    #[arg(long, default_value = "runnel-bench")]
    topic: String,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 16)]
    partitions: u32,
    /// Bytes of each record's value (at least 8: the send time).
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Acknowledgement asked of the broker: all, 1 or 0.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    acks: i16,
    /// Producer connections.
    #[arg(long, default_value_t = 4)]
    producers: usize,
    /// Consumer connections (each fetches its share of the partitions).
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Records per second over all producers (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Seconds to produce for.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Records in each batch (one batch per Produce request).
    #[arg(long, default_value_t = 16)]
    batch_records: usize,
    /// Produce requests each producer may have awaiting their answer (Kafka's
    /// `max.in.flight.requests.per.connection`; 1 to 1,000).
    #[arg(long, default_value_t = 5)]
    max_in_flight: usize,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Table,
    Json,
}

fn parse_acks(s: &str) -> Result<i16, String> {
    match s {
        "all" | "-1" => Ok(-1),
        "1" => Ok(1),
        "0" => Ok(0),
        _ => Err(format!("{s:?} is not one of all, 1, 0")),
    }
}

fn acks_name(acks: i16) -> &'static str {
    match acks {
        -1 => "all",
        0 => "0",
        _ => "1",
    }
}

/// Runs the benchmark and prints its report.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.record_size < 8 {
        bail!("--record-size must be at least 8 bytes (the send time), not {}", args.record_size);
    }
    if args.producers == 0 || args.batch_records == 0 || args.partitions == 0 {
        bail!("--producers, --batch-records and --partitions must be at least 1");
    }
    if !(1..=MAX_IN_FLIGHT_LIMIT).contains(&args.max_in_flight) {
        bail!("--max-in-flight must be 1 to {MAX_IN_FLIGHT_LIMIT}, not {}", args.max_in_flight);
    }
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    let report = runtime.block_on(bench(args.clone()))?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string(&report)?),
        Output::Table => print_table(&report),
    }
    Ok(())
}

#[derive(serde::Serialize, Debug)]
struct Report {
    bootstrap: String,
    topic: String,
    partitions: usize,
    record_size: usize,
    acks: &'static str,
    producers: usize,
    consumers: usize,
    batch_records: usize,
    max_in_flight: usize,
    target_rate: u64,
    duration_secs: f64,
    produced_records: u64,
    produced_bytes: u64,
    produced_records_per_sec: f64,
    produced_mb_per_sec: f64,
    acked_records: u64,
    errors: u64,
    first_error: Option<String>,
    consumed_records: u64,
    latency_samples: usize,
    latency_p50_ms: Option<f64>,
    latency_p99_ms: Option<f64>,
    latency_p999_ms: Option<f64>,
    latency_max_ms: Option<f64>,
}

fn print_table(r: &Report) {
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
    println!("bootstrap        {}", r.bootstrap);
    println!("topic            {} ({} partitions)", r.topic, r.partitions);
    println!(
        "load             {} producers, {} consumers, {} B records, {} per batch, acks={}, {} in flight, rate={}",
        r.producers,
        r.consumers,
        r.record_size,
        r.batch_records,
        r.acks,
        r.max_in_flight,
        if r.target_rate == 0 { "max".to_string() } else { format!("{}/s", r.target_rate) }
    );
    println!("duration         {:.2} s", r.duration_secs);
    println!(
        "produced         {} records, {:.0} records/s, {:.2} MB/s",
        r.produced_records, r.produced_records_per_sec, r.produced_mb_per_sec
    );
    println!("acked            {} records", r.acked_records);
    println!("errors           {}", r.errors);
    if let Some(e) = &r.first_error {
        println!("first error      {e}");
    }
    println!("consumed         {} records ({} latency samples)", r.consumed_records, r.latency_samples);
    println!(
        "e2e latency ms   p50 {}  p99 {}  p99.9 {}  max {}",
        ms(r.latency_p50_ms),
        ms(r.latency_p99_ms),
        ms(r.latency_p999_ms),
        ms(r.latency_max_ms)
    );
}

#[derive(Default)]
struct Stats {
    sent_records: AtomicU64,
    sent_bytes: AtomicU64,
    acked_records: AtomicU64,
    errors: AtomicU64,
    consumed_records: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Stats {
    fn error(&self, message: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(message);
        }
    }
}

/// How often the progress bar is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// A bar over the run's duration on a terminal's stderr (table output only), with records and
/// bytes produced so far and the current rates in human units.
fn progress_bar(
    args: &BenchArgs,
    stats: &Arc<Stats>,
    start: Instant,
) -> Option<(indicatif::ProgressBar, tokio::task::JoinHandle<()>)> {
    use std::io::IsTerminal;
    if args.output != Output::Table || !std::io::stderr().is_terminal() {
        return None;
    }
    let total_ms = args.duration.saturating_mul(1000);
    let bar = indicatif::ProgressBar::with_draw_target(Some(total_ms), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:30} {elapsed}/{duration} {msg}") {
        bar.set_style(style);
    }
    let (b, stats) = (bar.clone(), stats.clone());
    let ticker = tokio::spawn(async move {
        let mut last = (Instant::now(), 0u64, 0u64);
        loop {
            tokio::time::sleep(PROGRESS_INTERVAL).await;
            let (records, bytes) =
                (stats.sent_records.load(Ordering::Relaxed), stats.sent_bytes.load(Ordering::Relaxed));
            let dt = last.0.elapsed().as_secs_f64().max(1e-3);
            b.set_position((start.elapsed().as_millis() as u64).min(total_ms));
            b.set_message(format!(
                "{} records ({}), {:.0} records/s, {}/s",
                indicatif::HumanCount(records),
                indicatif::HumanBytes(bytes),
                (records - last.1) as f64 / dt,
                indicatif::HumanBytes(((bytes - last.2) as f64 / dt) as u64)
            ));
            last = (Instant::now(), records, bytes);
        }
    });
    Some((bar, ticker))
}

async fn bench(args: BenchArgs) -> anyhow::Result<Report> {
    let topic = args.topic.clone();
    let mut admin = Client::connect_as(&args.bootstrap, CLIENT_ID).await?;
    let partitions = prepare_topic(&mut admin, &topic, args.partitions).await?;
    let start_offsets = latest_offsets(&mut admin, &topic, partitions).await?;
    drop(admin);

    let stats = Arc::new(Stats::default());
    let producers_done = Arc::new(AtomicBool::new(false));
    let consumers = args.consumers.min(partitions);
    let mut consumer_tasks = Vec::new();
    for c in 0..consumers {
        let share: Vec<(i32, i64)> =
            (0..partitions).filter(|p| p % consumers == c).map(|p| (p as i32, start_offsets[p])).collect();
        let conn = Client::connect_as(&args.bootstrap, CLIENT_ID).await?;
        let reservoir = Reservoir::new(RESERVOIR_SAMPLES / consumers, 0x9E37_79B9_7F4A_7C15 ^ c as u64);
        consumer_tasks.push(tokio::spawn(consume(
            conn,
            topic.clone(),
            share,
            reservoir,
            stats.clone(),
            producers_done.clone(),
        )));
    }

    let duration = Duration::from_secs(args.duration);
    let start = Instant::now();
    let stop_at = start + duration;
    let mut producer_tasks = Vec::new();
    for p in 0..args.producers {
        let conn = Connection::connect(&args.bootstrap, CLIENT_ID).await?;
        producer_tasks.push(tokio::spawn(produce(
            p,
            conn,
            args.clone(),
            topic.clone(),
            partitions,
            start,
            stop_at,
            stats.clone(),
        )));
    }
    let progress = progress_bar(&args, &stats, start);
    for task in producer_tasks {
        if let Err(e) = task.await? {
            stats.error(format!("producer: {e:#}"));
        }
    }
    if let Some((bar, ticker)) = progress {
        ticker.abort();
        bar.finish_and_clear();
    }
    let elapsed = start.elapsed().as_secs_f64();
    producers_done.store(true, Ordering::Release);

    let mut samples = Vec::new();
    for task in consumer_tasks {
        match task.await? {
            Ok(reservoir) => samples.extend(reservoir.samples),
            Err(e) => stats.error(format!("consumer: {e:#}")),
        }
    }
    samples.sort_unstable();
    let quantile = |q: f64| -> Option<f64> {
        if samples.is_empty() {
            return None;
        }
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        Some(samples[rank - 1] as f64 / 1000.0)
    };

    let produced_records = stats.sent_records.load(Ordering::Relaxed);
    let produced_bytes = stats.sent_bytes.load(Ordering::Relaxed);
    let first_error = stats.first_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(Report {
        bootstrap: args.bootstrap.clone(),
        topic: args.topic.clone(),
        partitions,
        record_size: args.record_size,
        acks: acks_name(args.acks),
        producers: args.producers,
        consumers,
        batch_records: args.batch_records,
        max_in_flight: args.max_in_flight,
        target_rate: args.rate,
        duration_secs: elapsed,
        produced_records,
        produced_bytes,
        produced_records_per_sec: produced_records as f64 / elapsed,
        produced_mb_per_sec: produced_bytes as f64 / elapsed / 1e6,
        acked_records: stats.acked_records.load(Ordering::Relaxed),
        errors: stats.errors.load(Ordering::Relaxed),
        first_error,
        consumed_records: stats.consumed_records.load(Ordering::Relaxed),
        latency_samples: samples.len(),
        latency_p50_ms: quantile(0.50),
        latency_p99_ms: quantile(0.99),
        latency_p999_ms: quantile(0.999),
        latency_max_ms: quantile(1.0),
    })
}

/// Creates the topic if missing and returns its partition count.
async fn prepare_topic(client: &mut Client, topic: &str, partitions: u32) -> anyhow::Result<usize> {
    let new = NewTopic { name: topic.to_string(), partitions: Some(partitions as i32), configs: Vec::new() };
    match client.create_topic(&new).await {
        Ok(()) => {}
        Err(e) if is_topic_already_exists(&e) => {}
        Err(e) => return Err(e.into()),
    }
    let metadata = client.topic(topic).await?;
    if metadata.partitions.is_empty() {
        bail!("topic {topic:?} has no partitions");
    }
    Ok(metadata.partitions.len())
}

/// The log end offset of each partition, so consumers see only this run's records.
async fn latest_offsets(client: &mut Client, topic: &str, partitions: usize) -> anyhow::Result<Vec<i64>> {
    let ids: Vec<i32> = (0..partitions as i32).collect();
    let mut offsets = vec![0i64; partitions];
    for listed in client.list_offsets(topic, &ids, OffsetSpec::Latest).await? {
        if let Some(slot) = offsets.get_mut(listed.partition as usize) {
            *slot = listed.offset.unwrap_or(0);
        }
    }
    Ok(offsets)
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

#[allow(clippy::too_many_arguments)]
async fn produce(
    id: usize,
    conn: Connection,
    args: BenchArgs,
    topic: String,
    partitions: usize,
    start: Instant,
    stop_at: Instant,
    stats: Arc<Stats>,
) -> anyhow::Result<()> {
    let (mut sender, mut receiver) = conn.into_split();
    let version = sender.version::<ProduceRequest>()?;
    let in_flight = Arc::new(Semaphore::new(args.max_in_flight));
    // Unbounded in type only: an entry is sent only with one of the `max_in_flight` permits.
    let (pending_tx, mut pending_rx) =
        mpsc::unbounded_channel::<(runnel_client::Pending, u64, tokio::sync::OwnedSemaphorePermit)>();
    let acks = args.acks;
    let reader_stats = stats.clone();
    let answers = tokio::spawn(async move {
        while let Some((pending, records, permit)) = pending_rx.recv().await {
            let response = receiver.receive::<ProduceRequest>(pending).await?;
            drop(permit);
            for t in &response.responses {
                for p in &t.partition_responses {
                    if p.error_code == 0 {
                        reader_stats.acked_records.fetch_add(records, Ordering::Relaxed);
                    } else {
                        reader_stats.error(format!(
                            "produce to partition {}: error {}{}",
                            p.index,
                            p.error_code,
                            p.error_message.as_ref().map(|m| format!(" ({})", m.as_str())).unwrap_or_default()
                        ));
                    }
                }
            }
        }
        anyhow::Ok(())
    });

    // Each producer paces itself at its share of the total rate by a token schedule: the n-th
    // record is due at start + n / rate.
    let per_producer_rate = args.rate as f64 / args.producers as f64;
    let mut sent: u64 = 0;
    let mut sequence = id;
    let mut value = vec![0u8; args.record_size];
    let topic_name = kafka_protocol::messages::TopicName(StrBytes::from_string(topic.clone()));
    let result: anyhow::Result<()> = async {
        loop {
            if per_producer_rate > 0.0 {
                let due = start + Duration::from_secs_f64(sent as f64 / per_producer_rate);
                if due >= stop_at {
                    break;
                }
                tokio::time::sleep_until(due.into()).await;
            }
            let permit = if acks != 0 { Some(in_flight.clone().acquire_owned().await?) } else { None };
            if Instant::now() >= stop_at {
                break;
            }
            let partition = (sequence % partitions) as i32;
            sequence += 1;
            let mut batch = BatchBuilder::new();
            let timestamp_ms = (now_micros() / 1000) as i64;
            for _ in 0..args.batch_records {
                value[..8].copy_from_slice(&now_micros().to_be_bytes());
                batch.push(Record::new(None::<Bytes>, Some(Bytes::copy_from_slice(&value))).at(timestamp_ms));
            }
            let records = batch.build(Compression::None)?;
            let request = ProduceRequest::default().with_acks(acks).with_timeout_ms(30_000).with_topic_data(vec![
                TopicProduceData::default().with_name(topic_name.clone()).with_partition_data(vec![
                    PartitionProduceData::default().with_index(partition).with_records(Some(records)),
                ]),
            ]);
            let pending = sender.send_at(version, &request).await.context("sending a Produce request")?;
            let n = args.batch_records as u64;
            sent += n;
            stats.sent_records.fetch_add(n, Ordering::Relaxed);
            stats.sent_bytes.fetch_add(n * args.record_size as u64, Ordering::Relaxed);
            if let Some(permit) = permit {
                pending_tx.send((pending, n, permit)).ok().context("the response reader stopped")?;
            }
        }
        Ok(())
    }
    .await;
    drop(pending_tx);
    let answered = tokio::time::timeout(NETWORK_TIMEOUT, answers).await.context("waiting for Produce answers")?;
    result?;
    answered??;
    sender.shutdown().await;
    Ok(())
}

async fn consume(
    mut client: Client,
    topic: String,
    mut partitions: Vec<(i32, i64)>,
    mut reservoir: Reservoir,
    stats: Arc<Stats>,
    producers_done: Arc<AtomicBool>,
) -> anyhow::Result<Reservoir> {
    let mut drain_deadline: Option<Instant> = None;
    loop {
        let done = producers_done.load(Ordering::Acquire);
        if done && drain_deadline.is_none() {
            drain_deadline = Some(Instant::now() + DRAIN_GRACE);
        }
        if drain_deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let fetched = client.fetch(&topic, &partitions, 100).await.context("Fetch")?;
        let received = now_micros();
        let mut got = 0u64;
        for p in fetched {
            let Some(slot) = partitions.iter_mut().find(|(id, _)| *id == p.partition) else { continue };
            for record in &p.records {
                got += 1;
                if let Some(v) = record.value.as_ref().filter(|v| v.len() >= 8) {
                    let sent = u64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
                    reservoir.add(received.saturating_sub(sent));
                }
            }
            slot.1 = p.next_offset;
        }
        stats.consumed_records.fetch_add(got, Ordering::Relaxed);
        if done && got == 0 {
            break;
        }
    }
    Ok(reservoir)
}

/// A bounded uniform sample of latencies (microseconds): Algorithm R.
struct Reservoir {
    samples: Vec<u64>,
    capacity: usize,
    seen: u64,
    rng: u64,
}

impl Reservoir {
    fn new(capacity: usize, seed: u64) -> Reservoir {
        Reservoir { samples: Vec::new(), capacity: capacity.max(1), seen: 0, rng: seed | 1 }
    }

    fn add(&mut self, value: u64) {
        self.seen += 1;
        if self.samples.len() < self.capacity {
            self.samples.push(value);
            return;
        }
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let slot = self.rng % self.seen;
        if (slot as usize) < self.capacity {
            self.samples[slot as usize] = value;
        }
    }
}

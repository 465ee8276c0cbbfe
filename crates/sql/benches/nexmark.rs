//! Nexmark over the SQL engine: persons, auctions and bids as JSON records in three topics of
//! the embedded log, and Nexmark queries q1, q2, q5, q7 and q8 written in ksqlDB SQL, each run
//! as a persistent query (`CREATE STREAM|TABLE ... AS SELECT` from the earliest offset).
//!
//!     cargo bench -p runnel-sql --bench nexmark                # every query
//!     cargo bench -p runnel-sql --bench nexmark -- q1 q2       # some of them
//!
//! Environment: RUNNEL_NEXMARK_EVENTS (total events generated, default 1,000,000),
//! RUNNEL_NEXMARK_QUERIES (`q1,q2,q5,q7,q8`, default all; arguments win over it),
//! RUNNEL_NEXMARK_RATE (event-time rate, events/s, default 10,000 as in the Nexmark
//! generator: 100 µs of event time between events), RUNNEL_NEXMARK_TIMEOUT (seconds a query
//! may take, default 600), RUNNEL_BENCH_DIR (default target/bench-data).
//!
//! # Generator
//!
//! The `nexmark` crate is not in the offline registry, so the generator is our own and lives in
//! this file. It follows the Nexmark model of the reference generator (Apache Beam's, as
//! ported by github.com/nexmark/nexmark for Flink): events come in epochs of 50 (1 person, 3
//! auctions, 46 bids), ids are dense and start at 1000, a bid goes to a hot auction with
//! probability 1/2 (else to one of the ~100 in-flight auctions plus 10 not yet created), its
//! bidder is a hot bidder with probability 3/4 (else one of the 1,000 active persons plus 10
//! ahead), an auction's seller is a hot seller with probability 3/4, prices are
//! `round(10^(6·u) · 100)` cents, 5 categories from 10, names/cities/states from the
//! reference lists, and `extra` pads records to about 200 (person), 500 (auction) and 100
//! (bid) bytes. Event `n` happens at `BASE_TIME + n / rate`. The random numbers come from
//! SplitMix64 (not `java.util.Random`), so the values are deterministic but not those of the
//! reference generator; channel and url follow the Flink port's shape (four hot channels
//! half of the time, else `channel-<n>` of 10,000).
//!
//! # Streams
//!
//! `PERSON`, `AUCTION` and `BID` are key-less streams of JSON values, 4 partitions each, with
//! `timestamp='date_time'` (a BIGINT of epoch milliseconds), so ROWTIME is event time; the
//! records' own timestamps are event time as well. Records of a topic are spread round-robin
//! over its partitions, so every partition is in event-time order.
//!
//! # Queries
//!
//! - q1, currency conversion: every bid with `price * 908 / 1000` (dollars to euros).
//! - q2, selection: bids of auctions with `auction % 123 = 0` (the Beam/Flink formulation).
//! - q5, hot items: bids per auction in 10-second windows advancing by 2 seconds. ksqlDB SQL
//!   cannot join an aggregation with the maximum of itself per window, so this is the counting
//!   stage of Nexmark q5 (as ksqlDB/Kafka Streams ports of Nexmark run it); the "most bids per
//!   window" step is left out.
//! - q7, highest bid: `MAX(price)` per 10-second tumbling window. ksqlDB needs a GROUP BY, so
//!   every bid is grouped under one key (`auction % 1`, always 0); the join of the maximum back
//!   to the bids that carry it (Flink's q7) is left out, as ksqlDB cannot join a stream with a
//!   windowed table.
//! - q8, monitor new users: persons who created an auction within 10 seconds of their
//!   registration, as a stream-stream join `person JOIN auction WITHIN 10 SECONDS ON p.id =
//!   a.seller` (ksqlDB's sliding join window, where Flink's q8 joins two 10-second tumbling
//!   aggregations).
//!
//! # Measurement
//!
//! Events are generated once; for each query a fresh log (own directory) and engine are opened,
//! the three topics preloaded (not measured), then the query is started and timed until
//! [`Engine::query_processed`] reports every record of its input topics processed and its
//! output topic has stopped growing. "Events" are the records of the topics the query reads
//! (bids for q1, q2, q5 and q7; persons and auctions for q8). Events/s per core is events
//! divided by the process's CPU seconds (getrusage: user + system, every thread, including
//! the log's) during the run; a query runs on one thread. User and system seconds are printed apart:
//! system time (writes, fsync, page-cache writeback charged to the process) varies from run to
//! run more than user time does.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use runnel_log::{Log, LogConfig};
use runnel_sql::eventlog::{EventLog, InProcessLog, OutRecord};
use runnel_sql::{Engine, Outcome, Session};

const PARTITIONS: u32 = 4;
const APPEND_CHUNK: usize = 5_000;
/// 2024-01-01T00:00:00Z: event time of the first event.
const BASE_TIME_MS: i64 = 1_704_067_200_000;
/// How long the output topic must stay unchanged, once every input record is processed, for
/// the query to count as done.
const SETTLE: Duration = Duration::from_millis(300);

// The Nexmark model (GeneratorConfig and the Person/Auction/Bid generators of the reference).
const PERSON_PROPORTION: u64 = 1;
const AUCTION_PROPORTION: u64 = 3;
const BID_PROPORTION: u64 = 46;
const TOTAL_PROPORTION: u64 = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION;
const FIRST_PERSON_ID: u64 = 1000;
const FIRST_AUCTION_ID: u64 = 1000;
const FIRST_CATEGORY_ID: u64 = 10;
const NUM_CATEGORIES: u64 = 5;
const NUM_ACTIVE_PEOPLE: u64 = 1000;
const NUM_IN_FLIGHT_AUCTIONS: u64 = 100;
const PERSON_ID_LEAD: u64 = 10;
const AUCTION_ID_LEAD: u64 = 10;
/// A bid is for a hot auction with probability 1 - 1/HOT_AUCTION_RATIO ...
const HOT_AUCTION_RATIO: u64 = 2;
/// ... by a hot bidder with probability 1 - 1/HOT_BIDDERS_RATIO; an auction has a hot seller
/// with probability 1 - 1/HOT_SELLERS_RATIO.
const HOT_BIDDERS_RATIO: u64 = 4;
const HOT_SELLERS_RATIO: u64 = 4;
/// Hot auctions/bidders/sellers are the first of each batch of this many.
const HOT_BATCH: u64 = 100;
const AVG_PERSON_BYTES: usize = 200;
const AVG_AUCTION_BYTES: usize = 500;
const AVG_BID_BYTES: usize = 100;
const CHANNELS: u64 = 10_000;
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const HOT_URLS: [&str; 4] = [
    "https://www.nexmark.com/googl/item.htm?query=1",
    "https://www.nexmark.com/faceb/item.htm?query=1",
    "https://www.nexmark.com/baidu/item.htm?query=1",
    "https://www.nexmark.com/apple/item.htm?query=1",
];
const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: [&str; 10] =
    ["Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle", "Kent", "Cheyenne"];
const FIRST_NAMES: [&str; 11] =
    ["Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter"];
const LAST_NAMES: [&str; 9] = ["Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris"];

/// SplitMix64: small, fast and deterministic.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// A string of 3 to `max_len - 1` letters and spaces, trimmed (StringsGenerator.nextString).
    fn string(&mut self, max_len: u64, out: &mut String) {
        let start = out.len();
        let len = 3 + self.below(max_len - 3);
        for _ in 0..len {
            out.push(if self.below(13) == 0 { ' ' } else { (b'a' + self.below(26) as u8) as char });
        }
        let trimmed = out[start..].trim().to_string();
        out.truncate(start);
        out.push_str(&trimmed);
    }

    /// Padding so that `current + padding` averages `average` bytes (StringsGenerator.nextExtra).
    fn extra(&mut self, current: usize, average: usize, out: &mut String) {
        if current > average {
            return;
        }
        let wanted = average - current;
        let delta = (wanted as f64 * 0.2).round() as u64;
        let len = wanted as u64 - delta + if delta == 0 { 0 } else { self.below(2 * delta) };
        for _ in 0..len {
            out.push((b'a' + self.below(26) as u8) as char);
        }
    }

    /// Prices in cents, log-uniform from $1 to $1,000,000 (PriceGenerator.nextPrice).
    fn price(&mut self) -> u64 {
        (10f64.powf(self.unit() * 6.0) * 100.0).round() as u64
    }
}

/// The last person id (base 0) at event `id`.
fn last_base0_person_id(id: u64) -> u64 {
    let (epoch, offset) = (id / TOTAL_PROPORTION, id % TOTAL_PROPORTION);
    // An auction or a bid: the last person is the epoch's last.
    let offset = if offset >= PERSON_PROPORTION { PERSON_PROPORTION - 1 } else { offset };
    epoch * PERSON_PROPORTION + offset
}

/// The last auction id (base 0) at event `id`.
fn last_base0_auction_id(id: u64) -> u64 {
    let (mut epoch, mut offset) = (id / TOTAL_PROPORTION, id % TOTAL_PROPORTION);
    if offset < PERSON_PROPORTION {
        // The epoch's person: the last auction was in the previous epoch.
        if epoch == 0 {
            return 0;
        }
        epoch -= 1;
        offset = AUCTION_PROPORTION - 1;
    } else if offset >= PERSON_PROPORTION + AUCTION_PROPORTION {
        offset = AUCTION_PROPORTION - 1;
    } else {
        offset -= PERSON_PROPORTION;
    }
    epoch * AUCTION_PROPORTION + offset
}

/// One of the active persons, or one a little ahead of the last created.
fn next_base0_person_id(id: u64, rng: &mut Rng) -> u64 {
    let people = last_base0_person_id(id) + 1;
    let active = people.min(NUM_ACTIVE_PEOPLE);
    people - active + rng.below(active + PERSON_ID_LEAD)
}

/// One of the auctions still in flight, or one a little ahead of the last created.
fn next_base0_auction_id(id: u64, rng: &mut Rng) -> u64 {
    let max = last_base0_auction_id(id);
    let min = max.saturating_sub(NUM_IN_FLIGHT_AUCTIONS);
    min + rng.below(max - min + 1 + AUCTION_ID_LEAD)
}

/// The generated events: each topic's records per partition.
struct Events {
    person: Vec<Vec<OutRecord>>,
    auction: Vec<Vec<OutRecord>>,
    bid: Vec<Vec<OutRecord>>,
    counts: [u64; 3],
    bytes: [usize; 3],
    /// Bids with `auction % 123 = 0` (q2's output).
    q2_matches: u64,
}

fn generate(events: u64, rate: u64) -> Events {
    let mut rng = Rng(0x5EED_0F4E_584D_4152);
    let mut out = Events {
        person: vec![Vec::new(); PARTITIONS as usize],
        auction: vec![Vec::new(); PARTITIONS as usize],
        bid: vec![Vec::new(); PARTITIONS as usize],
        counts: [0; 3],
        bytes: [0; 3],
        q2_matches: 0,
    };
    // Average sizes of the reference count 8 bytes per number.
    let mut json = String::with_capacity(1024);
    for n in 0..events {
        let id = n; // one generator: event id = event number
        let ts = BASE_TIME_MS + (n as u128 * 1000 / rate as u128) as i64;
        json.clear();
        let rem = id % TOTAL_PROPORTION;
        let kind = if rem < PERSON_PROPORTION {
            0
        } else if rem < PERSON_PROPORTION + AUCTION_PROPORTION {
            1
        } else {
            2
        };
        match kind {
            0 => {
                let person = last_base0_person_id(id) + FIRST_PERSON_ID;
                let name = format!("{} {}", rng.pick(&FIRST_NAMES), rng.pick(&LAST_NAMES));
                let mut email = String::new();
                rng.string(7, &mut email);
                email.push('@');
                rng.string(5, &mut email);
                email.push_str(".com");
                let card = format!(
                    "{:04} {:04} {:04} {:04}",
                    rng.below(10_000),
                    rng.below(10_000),
                    rng.below(10_000),
                    rng.below(10_000)
                );
                let (city, state) = (rng.pick(&US_CITIES), rng.pick(&US_STATES));
                let current = 8 + name.len() + email.len() + card.len() + city.len() + state.len();
                let mut extra = String::new();
                rng.extra(current, AVG_PERSON_BYTES, &mut extra);
                let _ = write!(
                    json,
                    r#"{{"id":{person},"name":"{name}","email_address":"{email}","credit_card":"{card}","city":"{city}","state":"{state}","date_time":{ts},"extra":"{extra}"}}"#
                );
            }
            1 => {
                let auction = last_base0_auction_id(id) + FIRST_AUCTION_ID;
                let seller = if rng.below(HOT_SELLERS_RATIO) > 0 {
                    (last_base0_person_id(id) / HOT_BATCH) * HOT_BATCH
                } else {
                    next_base0_person_id(id, &mut rng)
                } + FIRST_PERSON_ID;
                let category = FIRST_CATEGORY_ID + rng.below(NUM_CATEGORIES);
                let initial_bid = rng.price();
                // Auctions last on average until NUM_IN_FLIGHT_AUCTIONS more have been created.
                let horizon_ms =
                    (NUM_IN_FLIGHT_AUCTIONS * TOTAL_PROPORTION / AUCTION_PROPORTION) as u128 * 1000 / rate as u128;
                let expires = ts + 1 + rng.below((horizon_ms as u64 * 2).max(1)) as i64;
                let (mut item, mut description) = (String::new(), String::new());
                rng.string(20, &mut item);
                rng.string(100, &mut description);
                let reserve = initial_bid + rng.price();
                let current = 8 + item.len() + description.len() + 8 * 5;
                let mut extra = String::new();
                rng.extra(current, AVG_AUCTION_BYTES, &mut extra);
                let _ = write!(
                    json,
                    r#"{{"id":{auction},"item_name":"{item}","description":"{description}","initial_bid":{initial_bid},"reserve":{reserve},"date_time":{ts},"expires":{expires},"seller":{seller},"category":{category},"extra":"{extra}"}}"#
                );
            }
            _ => {
                let auction = if rng.below(HOT_AUCTION_RATIO) > 0 {
                    (last_base0_auction_id(id) / HOT_BATCH) * HOT_BATCH
                } else {
                    next_base0_auction_id(id, &mut rng)
                } + FIRST_AUCTION_ID;
                let bidder = if rng.below(HOT_BIDDERS_RATIO) > 0 {
                    (last_base0_person_id(id) / HOT_BATCH) * HOT_BATCH + 1
                } else {
                    next_base0_person_id(id, &mut rng)
                } + FIRST_PERSON_ID;
                let price = rng.price();
                let (channel, url) = if rng.below(2) > 0 {
                    let i = rng.below(HOT_CHANNELS.len() as u64) as usize;
                    (HOT_CHANNELS[i].to_string(), HOT_URLS[i].to_string())
                } else {
                    let c = rng.below(CHANNELS);
                    let mut url = String::from("https://www.nexmark.com/");
                    rng.string(5, &mut url);
                    url.push_str("/item.htm?query=1&channel_id=");
                    let _ = write!(url, "{c}");
                    (format!("channel-{c}"), url)
                };
                let mut extra = String::new();
                rng.extra(8 * 4, AVG_BID_BYTES, &mut extra);
                if auction.is_multiple_of(123) {
                    out.q2_matches += 1;
                }
                let _ = write!(
                    json,
                    r#"{{"auction":{auction},"bidder":{bidder},"price":{price},"channel":"{channel}","url":"{url}","date_time":{ts},"extra":"{extra}"}}"#
                );
            }
        }
        let partitions = match kind {
            0 => &mut out.person,
            1 => &mut out.auction,
            _ => &mut out.bid,
        };
        let partition = (out.counts[kind] % PARTITIONS as u64) as usize;
        out.counts[kind] += 1;
        out.bytes[kind] += json.len();
        partitions[partition].push(OutRecord {
            key: None,
            value: Some(json.clone().into_bytes().into()),
            headers: Vec::new(),
            timestamp: ts,
        });
    }
    out
}

/// The process's CPU seconds so far (every thread): (user, system).
fn cpu_seconds() -> (f64, f64) {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (t(usage.ru_utime), t(usage.ru_stime))
}

struct Query {
    name: &'static str,
    /// Goal in events/s per core, if Nexmark targets give one.
    goal: Option<u64>,
    /// Topics it reads (their records are its events).
    inputs: &'static [&'static str],
    sink: &'static str,
    sql: &'static str,
}

const QUERIES: &[Query] = &[
    Query {
        name: "q1",
        goal: Some(400_000),
        inputs: &["bid"],
        sink: "Q1",
        sql: "CREATE STREAM q1 AS SELECT auction, bidder, price * 908 / 1000 AS price, date_time FROM bid;",
    },
    Query {
        name: "q2",
        goal: Some(400_000),
        inputs: &["bid"],
        sink: "Q2",
        sql: "CREATE STREAM q2 AS SELECT auction, price FROM bid WHERE auction % 123 = 0;",
    },
    Query {
        name: "q5",
        goal: Some(75_000),
        inputs: &["bid"],
        sink: "Q5",
        sql: "CREATE TABLE q5 AS SELECT auction, COUNT(*) AS num FROM bid \
              WINDOW HOPPING (SIZE 10 SECONDS, ADVANCE BY 2 SECONDS) GROUP BY auction;",
    },
    Query {
        name: "q7",
        goal: Some(25_000),
        inputs: &["bid"],
        sink: "Q7",
        sql: "CREATE TABLE q7 AS SELECT auction % 1 AS bucket, MAX(price) AS max_price FROM bid \
              WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY auction % 1;",
    },
    Query {
        name: "q8",
        goal: None,
        inputs: &["person", "auction"],
        sink: "Q8",
        sql: "CREATE STREAM q8 AS SELECT p.id AS id, p.name AS name, a.id AS auction_id, a.date_time AS auction_time \
              FROM person p JOIN auction a WITHIN 10 SECONDS ON p.id = a.seller;",
    },
];

const DDL: &str = "\
CREATE STREAM person (id BIGINT, name STRING, email_address STRING, credit_card STRING, city STRING, \
  state STRING, date_time BIGINT, extra STRING) \
  WITH (kafka_topic='person', value_format='JSON', partitions=4, timestamp='date_time');
CREATE STREAM auction (id BIGINT, item_name STRING, description STRING, initial_bid BIGINT, reserve BIGINT, \
  date_time BIGINT, expires BIGINT, seller BIGINT, category BIGINT, extra STRING) \
  WITH (kafka_topic='auction', value_format='JSON', partitions=4, timestamp='date_time');
CREATE STREAM bid (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, date_time BIGINT, \
  extra STRING) WITH (kafka_topic='bid', value_format='JSON', partitions=4, timestamp='date_time');";

/// Input records a persistent query has processed so far.
fn processed(engine: &Engine, id: &str) -> Option<u64> {
    engine.query_processed(id)
}

/// Records in a topic (all partitions).
fn topic_records(log: &dyn EventLog, topic: &str) -> i64 {
    let partitions = log.partitions(topic).unwrap_or(0);
    (0..partitions).map(|p| log.offsets(topic, p).map(|(start, end)| end - start).unwrap_or(0)).sum()
}

struct Measured {
    events: u64,
    wall: f64,
    /// CPU seconds, user + system.
    cpu: f64,
    user: f64,
    system: f64,
    output: i64,
}

fn run_query(q: &Query, generated: &Events, base: &Path, timeout: Duration) -> Result<Measured, String> {
    let dir = tempfile::tempdir_in(base).map_err(|e| e.to_string())?;
    let log = Log::open(LogConfig::new(dir.path())).map_err(|e| format!("{e:?}"))?;
    let events_log = Arc::new(InProcessLog::new(log.clone()));
    let engine = Engine::open(events_log.clone()).map_err(|e| e.to_string())?;
    let result = (|| {
        let mut session = Session::default();
        session.properties.insert("auto.offset.reset".into(), "earliest".into());
        engine.execute(DDL, &mut session).map_err(|e| format!("DDL: {e}"))?;
        // Preload every topic (not measured).
        let mut events = 0u64;
        for (topic, partitions, count) in [
            ("person", &generated.person, generated.counts[0]),
            ("auction", &generated.auction, generated.counts[1]),
            ("bid", &generated.bid, generated.counts[2]),
        ] {
            for (p, records) in partitions.iter().enumerate() {
                let chunks = records.chunks(APPEND_CHUNK).count();
                for (i, chunk) in records.chunks(APPEND_CHUNK).enumerate() {
                    // The last append is durable: the preload is on disk before the query
                    // starts, so its writeback is not counted against the query.
                    events_log.append(topic, p as u32, chunk, i + 1 == chunks).map_err(|e| e.0)?;
                }
            }
            if q.inputs.contains(&topic) {
                events += count;
            }
        }

        let cpu_before = cpu_seconds();
        let started = Instant::now();
        let outcomes = engine.execute(q.sql, &mut session).map_err(|e| e.to_string())?;
        let id = outcomes
            .iter()
            .find_map(|o| match o {
                Outcome::Status { query_id: Some(id), .. } => Some(id.clone()),
                _ => None,
            })
            .ok_or("the statement started no query")?;
        let deadline = started + timeout;
        let mut output = topic_records(events_log.as_ref(), q.sink);
        let mut last_change = Instant::now();
        let mut caught_up: Option<Instant> = None;
        loop {
            std::thread::sleep(Duration::from_millis(1));
            let now = Instant::now();
            let out = topic_records(events_log.as_ref(), q.sink);
            if out != output {
                output = out;
                last_change = now;
            }
            let done = processed(&engine, &id).unwrap_or(0);
            if caught_up.is_none() && done >= events {
                caught_up = Some(now);
            }
            if let Some(at) = caught_up
                && now.duration_since(at.max(last_change)) >= SETTLE
            {
                let end = at.max(last_change);
                // The settling time is idle: its CPU is the poll loop's, a few milliseconds.
                let (user, system) = cpu_seconds();
                let (user, system) = (user - cpu_before.0, system - cpu_before.1);
                let wall = end.duration_since(started).as_secs_f64();
                return Ok(Measured { events, wall, cpu: user + system, user, system, output });
            }
            if let Some(failed) = engine.queries().into_iter().find(|i| i.id == id && i.state.starts_with("ERROR")) {
                return Err(format!("query failed: {}", failed.state));
            }
            if now > deadline {
                return Err(format!("timed out after {timeout:?}: {done} of {events} input records processed"));
            }
        }
    })();
    engine.shutdown();
    let _ = log.shutdown();
    result
}

fn main() {
    let env_u64 = |name: &str, default: u64| {
        std::env::var(name).ok().and_then(|v| v.replace('_', "").parse().ok()).unwrap_or(default)
    };
    let total = env_u64("RUNNEL_NEXMARK_EVENTS", 1_000_000);
    let rate = env_u64("RUNNEL_NEXMARK_RATE", 10_000).max(1);
    let timeout = Duration::from_secs(env_u64("RUNNEL_NEXMARK_TIMEOUT", 600));
    // `cargo bench` passes `--bench`; other arguments name queries.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wanted: Vec<String> = if !args.is_empty() {
        args
    } else {
        std::env::var("RUNNEL_NEXMARK_QUERIES")
            .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    };
    for w in &wanted {
        if !QUERIES.iter().any(|q| q.name.eq_ignore_ascii_case(w)) {
            eprintln!("unknown query {w}; known: q1, q2, q5, q7, q8");
            std::process::exit(2);
        }
    }
    let selected: Vec<&Query> =
        QUERIES.iter().filter(|q| wanted.is_empty() || wanted.iter().any(|w| w.eq_ignore_ascii_case(q.name))).collect();
    let base: PathBuf = std::env::var("RUNNEL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-data"));
    std::fs::create_dir_all(&base).unwrap();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);

    let started = Instant::now();
    let generated = generate(total, rate);
    let [persons, auctions, bids] = generated.counts;
    let avg = |i: usize| generated.bytes[i] as f64 / generated.counts[i].max(1) as f64;
    println!(
        "nexmark: {total} events generated in {:.2} s: {persons} persons ({:.0} B), {auctions} auctions ({:.0} B), \
         {bids} bids ({:.0} B of JSON each); {:.1} s of event time at {rate} events/s; {cores} cores",
        started.elapsed().as_secs_f64(),
        avg(0),
        avg(1),
        avg(2),
        total as f64 / rate as f64,
    );

    let mut rows = Vec::new();
    for q in selected {
        match run_query(q, &generated, &base, timeout) {
            Ok(m) => {
                let per_core = m.events as f64 / m.cpu.max(1e-9);
                let per_wall = m.events as f64 / m.wall.max(1e-9);
                let mut note = String::new();
                let expected = match q.name {
                    "q1" => Some(bids as i64),
                    "q2" => Some(generated.q2_matches as i64),
                    _ => None,
                };
                if let Some(expected) = expected
                    && expected != m.output
                {
                    note = format!("  (WRONG: {} output records, expected {expected})", m.output);
                }
                println!(
                    "{}: {} events in {:.2} s wall, {:.2} s CPU ({:.2} user, {:.2} system): {:.0} events/s per core, \
                     {:.0} events/s wall; {} output records{note}",
                    q.name, m.events, m.wall, m.cpu, m.user, m.system, per_core, per_wall, m.output
                );
                rows.push((q, Some(m), per_core, per_wall, String::new()));
            }
            Err(e) => {
                println!("{}: skipped: {e}", q.name);
                rows.push((q, None, 0.0, 0.0, e));
            }
        }
    }

    println!();
    println!("Nexmark, {total} events ({cores} cores; events = records of the topics the query reads)");
    println!(
        "{:<5} {:>10} {:>8} {:>8} {:>7} {:>7} {:>14} {:>14} {:>12} {:>10}",
        "query", "events", "wall s", "CPU s", "user s", "sys s", "ev/s per core", "ev/s wall", "goal/core", "output"
    );
    for (q, m, per_core, per_wall, error) in rows {
        let goal = q.goal.map(|g| format!("{g}")).unwrap_or_else(|| "-".into());
        match m {
            Some(m) => println!(
                "{:<5} {:>10} {:>8.2} {:>8.2} {:>7.2} {:>7.2} {:>14.0} {:>14.0} {:>12} {:>10}{}",
                q.name,
                m.events,
                m.wall,
                m.cpu,
                m.user,
                m.system,
                per_core,
                per_wall,
                goal,
                m.output,
                match q.goal {
                    Some(g) if per_core >= g as f64 => "  met",
                    Some(_) => "  below goal",
                    None => "",
                }
            ),
            None => {
                let first_line = error.lines().next().unwrap_or_default();
                println!("{:<5} skipped: {first_line} (goal/core {goal})", q.name)
            }
        }
    }
}

//! The SQL engine over the embedded log: DDL, INSERT VALUES, push, pull and persistent queries,
//! the processing log, and a restart that replays the command topic and resumes queries from
//! their committed positions. Every wait polls a condition with a deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use runnel_log::{Log, LogConfig};
use runnel_sql::eventlog::{EventLog, InProcessLog, OutRecord};
use runnel_sql::{Engine, Outcome, Session, Value};

mod golden;

const DEADLINE: Duration = Duration::from_secs(30);

struct Fixture {
    _dir: tempfile::TempDir,
    log: Arc<Log>,
    events: Arc<InProcessLog>,
    engine: Arc<Engine>,
    session: Session,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(LogConfig::new(dir.path())).unwrap();
        let events = Arc::new(InProcessLog::new(log.clone()));
        let engine = Engine::open_with_state(events.clone(), Some(dir.path().join("sql-state"))).unwrap();
        let mut session = Session::default();
        session.properties.insert("auto.offset.reset".into(), "earliest".into());
        Fixture { _dir: dir, log, events, engine, session }
    }

    fn run(&mut self, sql: &str) -> Vec<Outcome> {
        self.engine.execute(sql, &mut self.session).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    fn fails(&mut self, sql: &str) -> String {
        match self.engine.execute(sql, &mut self.session) {
            Ok(_) => panic!("{sql} should fail"),
            Err(e) => e.0,
        }
    }

    fn restart(&mut self) {
        self.engine.shutdown();
        self.engine = Engine::open_with_state(self.events.clone(), Some(self._dir.path().join("sql-state"))).unwrap();
    }

    /// Rows of a pull query, polled until `done` holds.
    fn pull_until(&mut self, sql: &str, done: impl Fn(&[Vec<Value>]) -> bool) -> Vec<Vec<Value>> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let mut out = self.run(sql);
            let Outcome::Rows { rows, .. } = out.remove(0) else { panic!("{sql}: not rows") };
            if done(&rows) {
                return rows;
            }
            assert!(Instant::now() < deadline, "{sql}: gave {rows:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Takes `n` rows from a push query.
fn take(outcome: Outcome, n: usize) -> Vec<Vec<Value>> {
    let Outcome::Stream(stream) = outcome else { panic!("not a stream: {outcome:?}") };
    (0..n).map(|_| stream.rows.recv_timeout(DEADLINE).expect("a row in time").expect("no error")).collect()
}

fn s(text: &str) -> Value {
    Value::string(text)
}

const ORDERS: &str = "CREATE STREAM orders (id BIGINT KEY, region STRING, amount DOUBLE) \
                      WITH (kafka_topic='orders', value_format='JSON', partitions=3);";

#[test]
fn insert_values_and_push_query_with_filter_and_limit() {
    let mut f = Fixture::new();
    f.run(ORDERS);
    f.run("INSERT INTO orders (id, region, amount) VALUES (1, 'EU', 10.5); INSERT INTO orders VALUES (2, 'US', 3.0); INSERT INTO orders (region, id, amount) VALUES ('EU', 3, 7.25);");
    let mut out =
        f.run("SELECT id, UCASE(region) AS r, amount * 2 FROM orders WHERE region = 'EU' EMIT CHANGES LIMIT 2;");
    let Outcome::Stream(stream) = &out[0] else { panic!() };
    let names: Vec<_> = stream.columns.iter().map(|c| c.name.clone()).collect();
    assert_eq!(names, ["ID", "R", "KSQL_COL_0"]);
    let mut rows = take(out.remove(0), 2);
    rows.sort_by_key(|r| r[0].as_i64());
    assert_eq!(
        rows,
        vec![
            vec![Value::Bigint(1), s("EU"), Value::Double(21.0)],
            vec![Value::Bigint(3), s("EU"), Value::Double(14.5)]
        ]
    );
}

#[test]
fn persistent_query_filters_into_a_topic_and_resumes_after_restart() {
    let mut f = Fixture::new();
    f.run(ORDERS);
    let out = f.run("CREATE STREAM eu_orders AS SELECT id, amount FROM orders WHERE region = 'EU' EMIT CHANGES;");
    let Outcome::Status { query_id: Some(id), .. } = &out[0] else { panic!("{out:?}") };
    assert!(id.starts_with("CSAS_EU_ORDERS_"), "{id}");
    for i in 0..20 {
        let region = if i % 2 == 0 { "EU" } else { "US" };
        f.run(&format!("INSERT INTO orders VALUES ({i}, '{region}', {i}.5);"));
    }
    let rows = take(f.run("SELECT * FROM eu_orders EMIT CHANGES LIMIT 10;").remove(0), 10);
    let mut ids: Vec<i64> = rows.iter().map(|r| r[0].as_i64().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, (0..20).step_by(2).collect::<Vec<_>>());
    let desc = f.engine.source("EU_ORDERS").unwrap();
    assert_eq!(desc.key_columns[0].name, "ID", "the key goes through");
    assert_eq!(desc.partitions, 3);

    // Restart: the stream, its query and the query's position come back.
    f.restart();
    assert!(f.engine.queries().iter().any(|q| &q.id == id && q.state == "RUNNING"));
    for i in 20..30 {
        f.run(&format!("INSERT INTO orders VALUES ({i}, 'EU', 1.0);"));
    }
    let rows = take(f.run("SELECT id FROM eu_orders EMIT CHANGES LIMIT 20;").remove(0), 20);
    let mut ids: Vec<i64> = rows.iter().map(|r| r[0].as_i64().unwrap()).collect();
    ids.sort();
    let want: Vec<i64> = (0..20).step_by(2).chain(20..30).collect();
    assert_eq!(ids, want, "each record once: the restarted query resumed from its committed position");
    // Nothing beyond: the output topic holds exactly these records.
    let total: i64 = (0..3).map(|p| f.events.offsets("EU_ORDERS", p).unwrap().1).sum();
    assert_eq!(total, 20);
}

#[test]
fn table_upserts_deletes_and_pull_queries() {
    let mut f = Fixture::new();
    f.run("CREATE TABLE customers (id INT PRIMARY KEY, name STRING, type STRING) WITH (kafka_topic='customers', value_format='JSON', partitions=2);");
    f.run("INSERT INTO customers VALUES (1, 'Ada', 'Platinum'); INSERT INTO customers VALUES (2, 'Bob', 'Gold');");
    f.run("INSERT INTO customers VALUES (1, 'Ada L.', 'Platinum');");
    let rows = f.pull_until("SELECT * FROM customers WHERE id = 1;", |r| r.len() == 1 && r[0][1] == s("Ada L."));
    assert_eq!(rows[0], vec![Value::Int(1), s("Ada L."), s("Platinum")]);
    f.pull_until("SELECT name FROM customers;", |r| r.len() == 2);
    // A tombstone deletes the row.
    let key = 2i32.to_be_bytes().to_vec();
    let partition = runnel_records::partition_for_key(&key, 2);
    f.events
        .append(
            "customers",
            partition,
            &[OutRecord { key: Some(key.into()), value: None, headers: vec![], timestamp: 1 }],
            true,
        )
        .unwrap();
    f.pull_until("SELECT * FROM customers WHERE id = 2;", |r| r.is_empty());
    assert!(f.fails("SELECT * FROM orders_missing;").contains("does not exist"));
    f.run(ORDERS);
    assert!(f.fails("SELECT * FROM orders;").contains("EMIT CHANGES"));
}

#[test]
fn bad_records_go_to_the_processing_log_and_the_query_goes_on() {
    let mut f = Fixture::new();
    f.run("CREATE STREAM readings (sensor STRING, celsius DOUBLE) WITH (kafka_topic='readings', value_format='JSON', partitions=1);");
    f.run("CREATE STREAM hot AS SELECT sensor, celsius FROM readings WHERE celsius > 30;");
    let raw =
        |v: &str| OutRecord { key: None, value: Some(v.as_bytes().to_vec().into()), headers: vec![], timestamp: 5 };
    f.events
        .append(
            "readings",
            0,
            &[raw(r#"{"sensor": "a", "celsius": 35}"#), raw("{not json"), raw(r#"{"sensor": "b", "celsius": 40}"#)],
            true,
        )
        .unwrap();
    let rows = take(f.run("SELECT * FROM hot EMIT CHANGES LIMIT 2;").remove(0), 2);
    assert_eq!(rows, vec![vec![s("a"), Value::Double(35.0)], vec![s("b"), Value::Double(40.0)]]);
    let logged = take(f.run("SELECT logger, message FROM KSQL_PROCESSING_LOG EMIT CHANGES LIMIT 1;").remove(0), 1);
    assert!(logged[0][0].as_str().unwrap().starts_with("CSAS_HOT_"));
    let message = logged[0][1].as_str().unwrap();
    assert!(message.contains("DESERIALIZATION_ERROR") && message.contains("invalid JSON"), "{message}");
}

#[test]
fn statements_are_checked_when_submitted() {
    let mut f = Fixture::new();
    f.run(ORDERS);
    assert_eq!(
        f.fails("SELECT id FROM orders WHERE region + 1 > 2 EMIT CHANGES;"),
        "+: REGION is STRING, but must be a number"
    );
    assert!(f.fails("SELECT nope FROM orders EMIT CHANGES;").contains("column NOPE cannot be resolved"));
    assert!(f.fails("CREATE STREAM x AS SELECT region FROM orders;").contains("key missing from projection"));
    assert!(f.fails(ORDERS).contains("already exists"));
    assert!(f.fails("CREATE STREAM y (a INT) WITH (kafka_topic='nope', value_format='JSON');").contains("PARTITIONS"));
    assert!(
        f.fails("CREATE STREAM y (a INT) WITH (kafka_topic='y', value_format='AVRO', partitions=1);").contains("AVRO")
    );
    f.run("CREATE STREAM big AS SELECT * FROM orders WHERE amount > 100;");
    let drop = f.fails("DROP STREAM orders;");
    assert!(drop.contains("Cannot drop ORDERS") && drop.contains("CSAS_BIG_"), "{drop}");
    let id = f.engine.queries()[0].id.clone();
    f.run(&format!("TERMINATE {id};"));
    f.run("DROP STREAM big DELETE TOPIC;");
    f.run("DROP STREAM orders;");
    assert!(f.log.topic("BIG").is_none(), "DELETE TOPIC deleted it");
    assert!(f.log.topic("orders").is_some(), "the source topic stays");
    // Variables.
    f.run("DEFINE topic = 'orders';");
    f.run("CREATE STREAM again (id BIGINT KEY) WITH (kafka_topic='${topic}', value_format='JSON');");
    assert_eq!(f.engine.source("AGAIN").unwrap().topic, "orders");
}

#[test]
fn show_and_describe() {
    let mut f = Fixture::new();
    f.run(ORDERS);
    let out = f.run("SHOW STREAMS; SHOW TOPICS; DESCRIBE orders; SHOW FUNCTIONS; DESCRIBE FUNCTION UCASE;");
    let Outcome::Sources { sources, .. } = &out[0] else { panic!() };
    let names: Vec<_> = sources.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"ORDERS") && names.contains(&"KSQL_PROCESSING_LOG"), "{names:?}");
    let Outcome::Topics(topics) = &out[1] else { panic!() };
    assert!(topics.iter().any(|(n, p)| n == "orders" && *p == 3));
    let Outcome::Source { source, .. } = &out[2] else { panic!() };
    assert_eq!(source.value_columns.len(), 2);
    let Outcome::Functions(fns) = &out[3] else { panic!() };
    assert!(fns.len() > 80);
    assert!(matches!(&out[4], Outcome::Function(i) if i.name == "UCASE"));
}

/// Rows of a pull query as (first column as text, second column as i64).
fn counts(f: &mut Fixture, sql: &str, want: &[(&str, i64)]) {
    let want: Vec<(String, i64)> = want.iter().map(|(k, n)| (k.to_string(), *n)).collect();
    let rows = f.pull_until(sql, |rows| {
        let mut got: Vec<(String, i64)> =
            rows.iter().map(|r| (r[0].as_str().unwrap_or_default().to_string(), r[1].as_i64().unwrap_or(-1))).collect();
        got.sort();
        got == want
    });
    assert_eq!(rows.len(), want.len());
}

fn restored(f: &Fixture, id: &str) -> runnel_sql::runner::RestoreInfo {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(info) = f.engine.query_restored(id) {
            return info;
        }
        assert!(Instant::now() < deadline, "{id} never restored its state");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn aggregation_state_reopens_from_its_snapshot_or_is_rebuilt_from_its_changelog() {
    let mut f = Fixture::new();
    f.run(ORDERS);
    f.run("CREATE TABLE per_region AS SELECT region, COUNT(*) AS n FROM orders GROUP BY region;");
    let id = "CTAS_PER_REGION_1";
    f.run("INSERT INTO orders (id, region, amount) VALUES (1, 'EU', 1.0); INSERT INTO orders (id, region, amount) VALUES (2, 'EU', 2.0); INSERT INTO orders (id, region, amount) VALUES (3, 'US', 3.0);");
    counts(&mut f, "SELECT region, n FROM per_region;", &[("EU", 2), ("US", 1)]);
    let first = restored(&f, id);
    assert!(!first.from_snapshot && first.entries == 0, "a new query starts empty: {first:?}");

    // A clean stop writes a snapshot: the restart reads no changelog.
    f.restart();
    let info = restored(&f, id);
    assert!(info.from_snapshot, "{info:?}");
    assert_eq!(info.changelog_records, 0, "{info:?}");
    assert_eq!(info.entries, 2, "{info:?}");
    f.run("INSERT INTO orders (id, region, amount) VALUES (4, 'US', 4.0);");
    counts(&mut f, "SELECT region, n FROM per_region;", &[("EU", 2), ("US", 2)]);

    // A damaged snapshot is not trusted: the state is rebuilt from the changelog, and counts on.
    f.engine.shutdown();
    let snapshot = f._dir.path().join("sql-state").join(format!("{id}.snapshot"));
    let mut bytes = std::fs::read(&snapshot).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&snapshot, &bytes).unwrap();
    f.engine = Engine::open_with_state(f.events.clone(), Some(f._dir.path().join("sql-state"))).unwrap();
    let info = restored(&f, id);
    assert!(!info.from_snapshot && info.changelog_records > 0 && info.entries == 2, "{info:?}");
    f.run("INSERT INTO orders (id, region, amount) VALUES (5, 'EU', 5.0);");
    counts(&mut f, "SELECT region, n FROM per_region;", &[("EU", 3), ("US", 2)]);

    // TERMINATE removes the state with the query.
    f.run(&format!("TERMINATE {id};"));
    assert!(!snapshot.exists());
    assert!(f.events.partitions(&runnel_sql::store::changelog_topic(id)).is_none());
}

#[test]
fn concurrent_pull_queries_see_whole_batches_and_never_block_each_other() {
    let mut f = Fixture::new();
    f.run("CREATE TABLE versions (k INT PRIMARY KEY, v INT) WITH (kafka_topic='versions', value_format='JSON', partitions=1);");
    const KEYS: i32 = 200;
    const VERSIONS: i32 = 50;
    let engine = f.engine.clone();
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let mut session = Session::default();
                let mut seen = 0;
                let deadline = Instant::now() + DEADLINE;
                loop {
                    let mut out =
                        engine.execute("SELECT v, COUNT(*) AS n FROM versions GROUP BY v;", &mut session).unwrap();
                    let Outcome::Rows { rows, .. } = out.remove(0) else { panic!("not rows") };
                    // Every version is written as one batch: a snapshot never mixes two.
                    assert!(rows.len() <= 1, "a pull query saw a torn update: {rows:?}");
                    if let Some(r) = rows.first() {
                        assert_eq!(r[1], Value::Bigint(i64::from(KEYS)), "{rows:?}");
                        seen = r[0].as_i64().unwrap();
                    }
                    if seen == i64::from(VERSIONS) {
                        return;
                    }
                    assert!(Instant::now() < deadline, "readers stalled at version {seen}");
                }
            })
        })
        .collect();
    for version in 1..=VERSIONS {
        let batch: Vec<OutRecord> = (0..KEYS)
            .map(|k| OutRecord {
                key: Some(k.to_be_bytes().to_vec().into()),
                value: Some(format!("{{\"v\": {version}}}").into_bytes().into()),
                headers: vec![],
                timestamp: 1_000,
            })
            .collect();
        f.events.append("versions", 0, &batch, true).unwrap();
    }
    for r in readers {
        r.join().expect("a reader failed");
    }
}

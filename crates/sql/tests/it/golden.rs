//! Golden-file tests: every `*.test` file under `crates/sql/tests/golden` is a script of SQL
//! statements, input records and expected results, run against a fresh engine over the
//! embedded log. `RUNNEL_GOLDEN_REWRITE=1 cargo test -p runnel-sql golden` rewrites the expected
//! sections with what the engine produced (review the diff before committing it).
//!
//! The format, one directive per block (blocks are separated by blank lines; `#` starts a
//! comment line):
//!
//! ```text
//! statement ok                      the SQL below must succeed
//! statement error <text>            the SQL below must fail with a message containing <text>
//! records <topic> [partition <n>]   each line a record: [@<timestamp ms>] <key> | <value>, written
//!                                   to the topic (timestamp 1000 unless given);
//!                                   `null` is no key / a tombstone; `int:5`, `bigint:5`,
//!                                   `double:1.5` are KAFKA-format keys, anything else is text
//! query [unordered]                 a SELECT; a push query needs LIMIT; then `----` and the
//!                                   expected rows, values as JSON separated by ` | `
//! entity                            a statement whose ksqlDB REST entity (JSON, without its
//!                                   `statementText`) follows `----`
//! topic <topic> <count>             waits for <count> records, then every record of the topic
//!                                   (by partition, then offset): `----` then <key> | <value>
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use runnel_sql::eventlog::{EventLog, OutRecord};
use runnel_sql::{Outcome, rest};

use crate::Fixture;

const DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug)]
enum Block {
    Statement { ok: bool, error: String, sql: String },
    Records { topic: String, partition: Option<u32>, lines: Vec<String> },
    Query { unordered: bool, sql: String, expected: Vec<String> },
    Topic { topic: String, count: usize, expected: Vec<String> },
    Entity { sql: String, expected: Vec<String> },
}

struct Parsed {
    /// (first line number, block, the text of the directive and SQL before `----`)
    blocks: Vec<(usize, Block, Vec<String>)>,
}

fn parse(text: &str) -> Parsed {
    let mut blocks = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        if line.is_empty() || line.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut body = Vec::new();
        while i < lines.len() && !lines[i].trim().is_empty() {
            body.push(lines[i].trim_end().to_string());
            i += 1;
        }
        let head = body[0].clone();
        let (before, after) = match body.iter().position(|l| l == "----") {
            Some(p) => (body[..p].to_vec(), body[p + 1..].to_vec()),
            None => (body.clone(), Vec::new()),
        };
        let words: Vec<&str> = head.split_whitespace().collect();
        let rest_sql = before[1..].join("\n");
        let block = match words.as_slice() {
            ["statement", "ok"] => Block::Statement { ok: true, error: String::new(), sql: rest_sql },
            ["statement", "error", ..] => {
                Block::Statement { ok: false, error: head["statement error".len()..].trim().to_string(), sql: rest_sql }
            }
            ["records", topic, rest @ ..] => Block::Records {
                topic: topic.to_string(),
                partition: match rest {
                    ["partition", n] => Some(n.parse().expect("partition number")),
                    _ => None,
                },
                lines: before[1..].to_vec(),
            },
            ["query"] | ["query", "unordered"] => {
                Block::Query { unordered: words.len() == 2, sql: rest_sql, expected: after.clone() }
            }
            ["entity"] => Block::Entity { sql: rest_sql, expected: after.clone() },
            ["topic", topic, count] => Block::Topic {
                topic: topic.to_string(),
                count: count.parse().expect("record count"),
                expected: after.clone(),
            },
            _ => panic!("line {start}: unknown directive {head:?}"),
        };
        blocks.push((start, block, before));
    }
    Parsed { blocks }
}

fn key_bytes(text: &str) -> Option<Vec<u8>> {
    if text == "null" {
        return None;
    }
    Some(if let Some(n) = text.strip_prefix("int:") {
        n.parse::<i32>().expect("int key").to_be_bytes().to_vec()
    } else if let Some(n) = text.strip_prefix("bigint:") {
        n.parse::<i64>().expect("bigint key").to_be_bytes().to_vec()
    } else if let Some(n) = text.strip_prefix("double:") {
        n.parse::<f64>().expect("double key").to_be_bytes().to_vec()
    } else {
        text.as_bytes().to_vec()
    })
}

fn show_bytes(b: &Option<bytes::Bytes>) -> String {
    match b {
        None => "null".into(),
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) if !s.chars().any(char::is_control) => s.to_string(),
            _ => format!("hex:{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
        },
    }
}

/// Runs one file; returns the failures, and the file rewritten with actual results.
fn run_file(path: &Path) -> (Vec<String>, String) {
    let text = std::fs::read_to_string(path).unwrap();
    let parsed = parse(&text);
    let mut f = Fixture::new();
    let mut failures = Vec::new();
    let mut rewritten = String::new();
    // Leading comments are kept as they are.
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            rewritten.push_str(line);
            rewritten.push('\n');
        } else {
            break;
        }
    }
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    for (line, block, before) in parsed.blocks {
        let here = format!("{name}:{line}");
        let mut actual: Option<Vec<String>> = None;
        match &block {
            Block::Statement { ok, error, sql } => match (f.engine.execute(sql, &mut f.session), ok) {
                (Ok(_), true) => {}
                (Ok(_), false) => {
                    failures.push(format!("{here}: expected an error containing {error:?}, but it succeeded"))
                }
                (Err(e), true) => failures.push(format!("{here}: failed: {e}")),
                (Err(e), false) if !e.0.contains(error.as_str()) => {
                    failures.push(format!("{here}: error {:?} does not contain {error:?}", e.0))
                }
                _ => {}
            },
            Block::Records { topic, partition, lines } => {
                for l in lines {
                    // `@<ms> ` first sets the record timestamp (default 1000).
                    let (timestamp, l) = match l.strip_prefix('@').and_then(|rest| rest.split_once(' ')) {
                        Some((ms, rest)) => {
                            (ms.parse::<i64>().unwrap_or_else(|_| panic!("{here}: bad timestamp {ms}")), rest)
                        }
                        None => (1_000, l.as_str()),
                    };
                    let (k, v) =
                        l.split_once(" | ").unwrap_or_else(|| panic!("{here}: record line needs <key> | <value>"));
                    let key = key_bytes(k.trim());
                    let value = if v.trim() == "null" { None } else { Some(v.trim().as_bytes().to_vec().into()) };
                    let partitions = f.events.partitions(topic).unwrap_or_else(|| panic!("{here}: no topic {topic}"));
                    let p = partition.unwrap_or_else(|| match &key {
                        Some(k) => runnel_records::partition_for_key(k, partitions),
                        None => 0,
                    });
                    let record = OutRecord { key: key.map(Into::into), value, headers: vec![], timestamp };
                    f.events.append(topic, p, &[record], true).unwrap();
                }
            }
            Block::Query { unordered, sql, expected } => {
                let mut got = match f.engine.execute(sql, &mut f.session) {
                    Err(e) => vec![format!("error: {e}")],
                    Ok(mut out) => match out.pop() {
                        Some(Outcome::Rows { columns, rows }) => {
                            rows.iter().map(|r| render(&rest::row_json(r, &columns))).collect()
                        }
                        Some(Outcome::Stream(stream)) => {
                            let mut rows = Vec::new();
                            let deadline = Instant::now() + DEADLINE;
                            while let Ok(Ok(row)) =
                                stream.rows.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                            {
                                rows.push(render(&rest::row_json(&row, &stream.columns)));
                            }
                            rows
                        }
                        other => vec![format!("not a query: {other:?}")],
                    },
                };
                // Pull queries see a table's materialization, which may lag its topic: retry
                // until the rows match (or the deadline passes).
                if !sql.contains("EMIT") && !same(&got, expected, *unordered) {
                    let deadline = Instant::now() + DEADLINE;
                    while Instant::now() < deadline && !same(&got, expected, *unordered) {
                        std::thread::sleep(Duration::from_millis(20));
                        if let Ok(mut out) = f.engine.execute(sql, &mut f.session)
                            && let Some(Outcome::Rows { columns, rows }) = out.pop()
                        {
                            got = rows.iter().map(|r| render(&rest::row_json(r, &columns))).collect();
                        }
                    }
                }
                if *unordered {
                    got.sort();
                }
                if !same(&got, expected, *unordered) {
                    failures
                        .push(format!("{here}: query rows differ\n  expected: {expected:#?}\n  actual:   {got:#?}"));
                }
                actual = Some(got);
            }
            Block::Entity { sql, expected } => {
                let got: Vec<String> = match f.engine.execute(sql, &mut f.session) {
                    Err(e) => vec![format!("error: {e}")],
                    Ok(out) => {
                        let mut entity = rest::entity(&out[0], "", 0, &|_| None);
                        if let Some(map) = entity.as_object_mut() {
                            map.remove("statementText");
                        }
                        serde_json::to_string_pretty(&entity).unwrap().lines().map(str::to_string).collect()
                    }
                };
                if &got != expected {
                    failures.push(format!("{here}: entity differs\n  expected: {expected:#?}\n  actual:   {got:#?}"));
                }
                actual = Some(got);
            }
            Block::Topic { topic, count, expected } => {
                let deadline = Instant::now() + DEADLINE;
                let got = loop {
                    let got = read_topic(f.events.as_ref(), topic);
                    if got.len() >= *count || Instant::now() > deadline {
                        break got;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                };
                if &got != expected {
                    failures
                        .push(format!("{here}: topic records differ\n  expected: {expected:#?}\n  actual:   {got:#?}"));
                }
                actual = Some(got);
            }
        }
        for l in &before {
            rewritten.push_str(l);
            rewritten.push('\n');
        }
        if let Some(actual) = actual {
            rewritten.push_str("----\n");
            for l in actual {
                rewritten.push_str(&l);
                rewritten.push('\n');
            }
        }
        rewritten.push('\n');
    }
    f.engine.shutdown();
    (failures, rewritten.trim_end().to_string() + "\n")
}

fn same(got: &[String], expected: &[String], unordered: bool) -> bool {
    if unordered {
        let (mut a, mut b) = (got.to_vec(), expected.to_vec());
        a.sort();
        b.sort();
        a == b
    } else {
        got == expected
    }
}

fn render(row: &serde_json::Value) -> String {
    match row {
        serde_json::Value::Array(cells) => cells.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" | "),
        other => other.to_string(),
    }
}

/// Every record of a topic (the caller waits until there are at least as many as expected, so
/// extra records show as a difference).
fn read_topic(log: &dyn EventLog, topic: &str) -> Vec<String> {
    let mut out = Vec::new();
    for p in 0..log.partitions(topic).unwrap_or(0) {
        let Ok((start, end)) = log.offsets(topic, p) else { continue };
        let mut at = start;
        while at < end {
            let Ok(batch) = log.read(topic, p, at, 1 << 20) else { break };
            if batch.next_offset <= at {
                break;
            }
            at = batch.next_offset;
            for r in batch.records {
                out.push(format!("{} | {}", show_bytes(&r.key), show_bytes(&r.value)));
            }
        }
    }
    out
}

fn golden_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    files.sort();
    files
}

#[test]
fn golden_files_give_their_expected_results() {
    let rewrite = std::env::var_os("RUNNEL_GOLDEN_REWRITE").is_some();
    // RUNNEL_GOLDEN_ONLY=<text>: only the files whose name contains it.
    let only = std::env::var("RUNNEL_GOLDEN_ONLY").unwrap_or_default();
    let files: Vec<PathBuf> = golden_files()
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains(&only)))
        .collect();
    assert!(!files.is_empty(), "no golden files");
    // Each file has its own engine and log: they run side by side.
    let runs: Vec<_> = files
        .iter()
        .map(|path| {
            let path = path.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let (failures, rewritten) = run_file(&path);
                let name = path.file_name().unwrap().to_string_lossy().to_string();
                eprintln!("golden {name}: {:.1}s", started.elapsed().as_secs_f64());
                (path, failures, rewritten)
            })
        })
        .collect();
    let mut failures = Vec::new();
    for run in runs {
        let (path, mut f, rewritten) = run.join().expect("a golden file panicked");
        if rewrite {
            std::fs::write(&path, rewritten).unwrap();
        } else {
            failures.append(&mut f);
        }
    }
    assert!(failures.is_empty(), "{} golden failures:\n{}", failures.len(), failures.join("\n"));
}

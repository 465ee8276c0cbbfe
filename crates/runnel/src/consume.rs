//! `runnel consume TOPIC`: prints records, kcat style. By default it reads every partition
//! from the beginning (kcat's default, unlike kafka-console-consumer's "latest") and stops at
//! the end of each partition as it was at start (kcat `-e`); `--follow` keeps waiting for new
//! records. `--format` takes kcat-like format strings, `--output json` one JSON object per
//! record. With `--group`, positions are committed to the group after each fetch (as a simple
//! consumer: generation -1, refused while the group has members) and used as the start when no
//! other start is given.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{ArgGroup, Args};
use runnel_client::{Client, OffsetSpec};
use runnel_records::Record;
use serde_json::{Map, Value, json};

use crate::client_args::{ClientArgs, block_on};
use crate::output::{OutputFormat, bytes_json};
use crate::time_spec::parse_datetime;

/// How long a fetch waits for records: long when following, short when draining.
const FOLLOW_WAIT_MS: i32 = 500;
const DRAIN_WAIT_MS: i32 = 100;

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("start").args(["from_beginning", "from_end", "offset", "from_time"])))]
pub struct ConsumeArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Topic to read.
    topic: String,
    /// Read only this partition (repeatable; default: all).
    #[arg(long = "partition", short = 'p')]
    partitions: Vec<i32>,
    /// Start at the beginning of each partition (the default, as kcat).
    #[arg(long)]
    from_beginning: bool,
    /// Start at the end of each partition: only records produced from now on.
    #[arg(long)]
    from_end: bool,
    /// Start at this offset; a negative N starts N records before the end (as kcat -o -N).
    #[arg(long, short = 'o', allow_hyphen_values = true)]
    offset: Option<i64>,
    /// Start at the first record at or after this time: 2026-11-26T10:00:00[.sss][Z|+hh:mm]
    /// (local time without a zone) or epoch milliseconds.
    #[arg(long, value_name = "DATETIME", value_parser = parse_datetime)]
    from_time: Option<i64>,
    /// Stop after this many records (as kcat -c).
    #[arg(long, short = 'c', value_name = "N")]
    limit: Option<u64>,
    /// Keep waiting for new records instead of stopping at the end of the partitions.
    #[arg(long, short = 'f')]
    follow: bool,
    /// kcat-like format of each record: %t topic, %p partition, %o offset, %T timestamp (ms),
    /// %k key, %v value, %h headers (k=v,k=v), %K key length, %S value length (-1: null),
    /// %% a percent sign; \n, \t, \r and \\ escapes. Default: '%v\n'.
    #[arg(long, value_name = "FORMAT", conflicts_with = "output")]
    format: Option<String>,
    /// json: one object per record {topic, partition, offset, timestamp, key, value, headers};
    /// bytes that are not UTF-8 are {"base64": ".."}.
    #[arg(long, value_enum)]
    output: Option<OutputFormat>,
    /// Commit positions to this consumer group, and start from its committed offsets when no
    /// start is given.
    #[arg(long)]
    group: Option<String>,
}

/// A piece of a format string.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    Topic,
    Partition,
    Offset,
    Timestamp,
    Key,
    Value,
    Headers,
    KeyLength,
    ValueLength,
}

fn parse_format(format: &str) -> anyhow::Result<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut literal = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => {
                let token = match chars.next() {
                    Some('t') => Token::Topic,
                    Some('p') => Token::Partition,
                    Some('o') => Token::Offset,
                    Some('T') => Token::Timestamp,
                    Some('k') => Token::Key,
                    Some('v') => Token::Value,
                    Some('h') => Token::Headers,
                    Some('K') => Token::KeyLength,
                    Some('S') => Token::ValueLength,
                    Some('%') => {
                        literal.push('%');
                        continue;
                    }
                    Some(other) => bail!("unknown format token %{other} (see runnel consume --help)"),
                    None => bail!("the format ends with a lone %"),
                };
                if !literal.is_empty() {
                    tokens.push(Token::Literal(std::mem::take(&mut literal)));
                }
                tokens.push(token);
            }
            '\\' => match chars.next() {
                Some('n') => literal.push('\n'),
                Some('t') => literal.push('\t'),
                Some('r') => literal.push('\r'),
                Some('0') => literal.push('\0'),
                Some('\\') => literal.push('\\'),
                Some(other) => {
                    literal.push('\\');
                    literal.push(other);
                }
                None => literal.push('\\'),
            },
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        tokens.push(Token::Literal(literal));
    }
    Ok(tokens)
}

fn write_formatted(
    out: &mut impl Write,
    tokens: &[Token],
    topic: &str,
    partition: i32,
    r: &Record,
) -> std::io::Result<()> {
    let length = |b: &Option<Bytes>| b.as_ref().map_or(-1, |b| b.len() as i64);
    for token in tokens {
        match token {
            Token::Literal(s) => out.write_all(s.as_bytes())?,
            Token::Topic => out.write_all(topic.as_bytes())?,
            Token::Partition => write!(out, "{partition}")?,
            Token::Offset => write!(out, "{}", r.offset)?,
            Token::Timestamp => write!(out, "{}", r.timestamp)?,
            Token::Key => out.write_all(r.key.as_deref().unwrap_or_default())?,
            Token::Value => out.write_all(r.value.as_deref().unwrap_or_default())?,
            Token::KeyLength => write!(out, "{}", length(&r.key))?,
            Token::ValueLength => write!(out, "{}", length(&r.value))?,
            Token::Headers => {
                for (i, h) in r.headers.iter().enumerate() {
                    if i > 0 {
                        out.write_all(b",")?;
                    }
                    out.write_all(h.key.as_bytes())?;
                    out.write_all(b"=")?;
                    out.write_all(h.value.as_deref().unwrap_or_default())?;
                }
            }
        }
    }
    Ok(())
}

fn record_json(topic: &str, partition: i32, r: &Record) -> Value {
    let headers: Map<String, Value> = r.headers.iter().map(|h| (h.key.clone(), bytes_json(h.value.as_ref()))).collect();
    json!({
        "topic": topic,
        "partition": partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
        "key": bytes_json(r.key.as_ref()),
        "value": bytes_json(r.value.as_ref()),
        "headers": headers,
    })
}

pub fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    block_on(consume(args))
}

/// Where each partition starts.
async fn start_offsets(
    client: &mut Client,
    args: &ConsumeArgs,
    partitions: &[i32],
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let topic = args.topic.as_str();
    let listed = |l: Vec<runnel_client::ListedOffset>| -> BTreeMap<i32, Option<i64>> {
        l.into_iter().map(|l| (l.partition, l.offset)).collect()
    };
    let earliest = listed(client.list_offsets(topic, partitions, OffsetSpec::Earliest).await?);
    let latest = listed(client.list_offsets(topic, partitions, OffsetSpec::Latest).await?);
    let first = |p: i32| earliest.get(&p).copied().flatten().unwrap_or(0);
    let end = |p: i32| latest.get(&p).copied().flatten().unwrap_or(0);
    let mut starts = BTreeMap::new();
    if let Some(ms) = args.from_time {
        let by_time = listed(client.list_offsets(topic, partitions, OffsetSpec::Timestamp(ms)).await?);
        for &p in partitions {
            starts.insert(p, by_time.get(&p).copied().flatten().unwrap_or_else(|| end(p)));
        }
    } else if let Some(offset) = args.offset {
        for &p in partitions {
            let start = if offset < 0 { end(p) + offset } else { offset };
            starts.insert(p, start.clamp(first(p), end(p)));
        }
    } else if args.from_end {
        for &p in partitions {
            starts.insert(p, end(p));
        }
    } else if let (Some(group), false) = (&args.group, args.from_beginning) {
        let committed = client.offset_fetch(group, Some(&[(topic.to_string(), partitions.to_vec())])).await?;
        for &p in partitions {
            let c = committed.iter().find(|c| c.partition == p).and_then(|c| c.offset);
            starts.insert(p, c.map_or_else(|| first(p), |c| c.clamp(first(p), end(p))));
        }
    } else {
        for &p in partitions {
            starts.insert(p, first(p));
        }
    }
    Ok(starts)
}

async fn consume(args: ConsumeArgs) -> anyhow::Result<()> {
    let tokens = parse_format(args.format.as_deref().unwrap_or("%v\\n"))?;
    let json_output = args.output == Some(OutputFormat::Json);
    let mut client = args.client.connect().await?;
    let topic = args.topic.clone();
    let metadata = client.topic(&topic).await?;
    let all: Vec<i32> = metadata.partitions.iter().map(|p| p.partition).collect();
    let partitions = if args.partitions.is_empty() {
        all
    } else {
        if let Some(p) = args.partitions.iter().find(|p| !all.contains(p)) {
            bail!("topic {topic:?} has no partition {p} (it has {})", all.len());
        }
        args.partitions.clone()
    };
    let mut positions = start_offsets(&mut client, &args, &partitions).await?;
    let ends: BTreeMap<i32, i64> = if args.follow {
        BTreeMap::new()
    } else {
        client
            .list_offsets(&topic, &partitions, OffsetSpec::Latest)
            .await?
            .into_iter()
            .map(|l| (l.partition, l.offset.unwrap_or(0)))
            .collect()
    };
    let done =
        |positions: &BTreeMap<i32, i64>, p: i32| !args.follow && positions[&p] >= ends.get(&p).copied().unwrap_or(0);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(256 << 10, stdout.lock());
    let mut printed = 0u64;
    let mut committed: BTreeMap<i32, i64> = BTreeMap::new();
    'fetching: loop {
        let active: Vec<(i32, i64)> =
            positions.iter().filter(|(p, _)| !done(&positions, **p)).map(|(p, o)| (*p, *o)).collect();
        if active.is_empty() || args.limit.is_some_and(|l| printed >= l) {
            break;
        }
        let wait = if args.follow { FOLLOW_WAIT_MS } else { DRAIN_WAIT_MS };
        let fetched = client.fetch(&topic, &active, wait).await?;
        for partition in fetched {
            let p = partition.partition;
            let end = ends.get(&p).copied();
            let mut position = partition.next_offset;
            for record in &partition.records {
                if end.is_some_and(|e| record.offset >= e) || args.limit.is_some_and(|l| printed >= l) {
                    position = record.offset;
                    break;
                }
                let written = if json_output {
                    serde_json::to_writer(&mut out, &record_json(&topic, p, record))
                        .map_err(std::io::Error::from)
                        .and_then(|()| out.write_all(b"\n"))
                } else {
                    write_formatted(&mut out, &tokens, &topic, p, record)
                };
                match written {
                    Ok(()) => {}
                    // The reader went away (`| head`): stop quietly.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break 'fetching,
                    Err(e) => return Err(e).context("cannot write to stdout"),
                }
                printed += 1;
            }
            if let Some(slot) = positions.get_mut(&p) {
                *slot = (*slot).max(position);
            }
        }
        match out.flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            other => other.context("cannot write to stdout")?,
        }
        if let Some(group) = &args.group {
            commit(&mut client, group, &topic, &positions, &mut committed).await?;
        }
    }
    let _ = out.flush();
    if let Some(group) = &args.group {
        commit(&mut client, group, &topic, &positions, &mut committed).await?;
    }
    Ok(())
}

/// Commits the positions that moved since the last commit.
async fn commit(
    client: &mut Client,
    group: &str,
    topic: &str,
    positions: &BTreeMap<i32, i64>,
    committed: &mut BTreeMap<i32, i64>,
) -> anyhow::Result<()> {
    let moved: Vec<(String, i32, i64)> = positions
        .iter()
        .filter(|(p, o)| committed.get(p) != Some(o))
        .map(|(p, o)| (topic.to_string(), *p, *o))
        .collect();
    if moved.is_empty() {
        return Ok(());
    }
    client.commit_offsets(group, &moved).await.with_context(|| {
        format!("cannot commit to group {group:?} (a group with active members only takes its members' commits)")
    })?;
    committed.extend(moved.into_iter().map(|(_, p, o)| (p, o)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_strings_render_like_kcat() {
        let tokens = parse_format("%t/%p@%o %T [%k] %v %h %K %S 100%%\\n").unwrap();
        let record = Record::new(Some("k"), Some("value")).at(42).with_header("h", Some("1"));
        let mut out = Vec::new();
        write_formatted(&mut out, &tokens, "orders", 3, &Record { offset: 7, ..record }).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "orders/3@7 42 [k] value h=1 1 5 100%\n");
        assert!(parse_format("%x").is_err());
        assert!(parse_format("50%").is_err());
    }
}

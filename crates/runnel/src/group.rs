//! `runnel group list|describe|delete|reset-offsets`: consumer group administration, as
//! Kafka's `kafka-consumer-groups` does it. Describe shows each member's assignment and, per
//! partition, the committed offset, the log end offset and the lag. Reset-offsets computes
//! new offsets (earliest, latest, an offset, a datetime, a duration ago), prints the plan, and
//! with `--execute` commits them as an administrator (generation -1, no member id), which the
//! coordinator refuses while the group has members; so does this command, first.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use clap::{ArgGroup, Args, Subcommand};
use runnel_client::consumer_protocol::{PROTOCOL_TYPE_CONSUMER, decode_assignment};
use runnel_client::{Client, GroupDescription, OffsetSpec};
use serde_json::json;

use crate::client_args::{ClientArgs, block_on};
use crate::output::{OutputFormat, print_json, print_table};
use crate::time_spec::{now_ms, parse_datetime, parse_duration};

#[derive(Args, Debug)]
pub struct GroupArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Subcommand, Debug)]
enum GroupCommand {
    /// List consumer groups with their state.
    List {
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Show a group's members, assignments, committed offsets and lag.
    Describe {
        group: String,
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Delete a group without active members, and its committed offsets.
    Delete {
        group: String,
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Move a group's committed offsets (the group must have no active members).
    ResetOffsets(ResetArgs),
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("scope").required(true).args(["topics", "all_topics"])))]
#[command(group(ArgGroup::new("target").required(true)
    .args(["to_earliest", "to_latest", "to_offset", "to_datetime", "by_duration"])))]
struct ResetArgs {
    group: String,
    /// A topic, or some of its partitions: orders, orders:0,2 (repeatable).
    #[arg(long = "topic", value_name = "TOPIC[:PARTITIONS]")]
    topics: Vec<String>,
    /// Every topic the group has committed offsets for.
    #[arg(long)]
    all_topics: bool,
    /// To the log start offset.
    #[arg(long)]
    to_earliest: bool,
    /// To the log end offset.
    #[arg(long)]
    to_latest: bool,
    /// To this offset (clamped to the log's start and end).
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// To the first record at or after this time: 2026-11-26T10:00:00[.sss][Z|+hh:mm] (local
    /// time without a zone) or epoch milliseconds. Partitions with no such record go to the end.
    #[arg(long, value_name = "DATETIME", value_parser = parse_datetime)]
    to_datetime: Option<i64>,
    /// To the first record at or after now minus this: PT1H30M, P1DT2H, 1h30m, 90s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    by_duration: Option<std::time::Duration>,
    /// Only print the plan (the default).
    #[arg(long, conflicts_with = "execute")]
    dry_run: bool,
    /// Commit the new offsets.
    #[arg(long)]
    execute: bool,
    #[arg(long, value_enum, default_value_t)]
    output: OutputFormat,
}

pub fn run(args: GroupArgs) -> anyhow::Result<()> {
    block_on(async move {
        let mut client = args.client.connect().await?;
        match args.command {
            GroupCommand::List { output } => list(&mut client, output).await,
            GroupCommand::Describe { group, output } => describe(&mut client, &group, output).await,
            GroupCommand::Delete { group, output } => {
                client.delete_group(&group).await?;
                match output {
                    OutputFormat::Json => print_json(&json!({"group": group, "deleted": true})),
                    OutputFormat::Table => println!("deleted group {group}"),
                }
                Ok(())
            }
            GroupCommand::ResetOffsets(reset) => reset_offsets(&mut client, reset).await,
        }
    })
}

async fn list(client: &mut Client, output: OutputFormat) -> anyhow::Result<()> {
    let groups = client.list_groups().await?;
    match output {
        OutputFormat::Json => print_json(&json!(
            groups
                .iter()
                .map(|g| json!({"group": g.group_id, "state": g.state, "protocol_type": g.protocol_type}))
                .collect::<Vec<_>>()
        )),
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> =
                groups.iter().map(|g| vec![g.group_id.clone(), g.state.clone(), g.protocol_type.clone()]).collect();
            print_table(&["GROUP", "STATE", "PROTOCOL-TYPE"], &rows);
        }
    }
    Ok(())
}

/// A member's assigned partitions per topic, or why they could not be decoded.
type Assignment = Result<Vec<(String, Vec<i32>)>, String>;

/// Each member's assigned partitions, decoded when the group speaks the consumer protocol.
fn assignments(description: &GroupDescription) -> Vec<(String, Assignment)> {
    description
        .members
        .iter()
        .map(|m| {
            let decoded = if description.protocol_type == PROTOCOL_TYPE_CONSUMER {
                decode_assignment(&m.assignment)
            } else {
                Ok(Vec::new())
            };
            (m.member_id.clone(), decoded)
        })
        .collect()
}

/// The log end offset of every partition named, by topic.
async fn log_end_offsets(
    client: &mut Client,
    partitions: &BTreeMap<String, Vec<i32>>,
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let mut ends = BTreeMap::new();
    for (topic, ids) in partitions {
        match client.list_offsets(topic, ids, OffsetSpec::Latest).await {
            Ok(listed) => {
                for l in listed {
                    if let Some(offset) = l.offset {
                        ends.insert((topic.clone(), l.partition), offset);
                    }
                }
            }
            // A deleted topic still has committed offsets: show them without an end.
            Err(e) if e.kafka().is_some_and(|k| k.code == 3) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(ends)
}

async fn describe(client: &mut Client, group: &str, output: OutputFormat) -> anyhow::Result<()> {
    let description = client.describe_group(group).await?;
    let committed = client.offset_fetch(group, None).await?;
    if description.state == "Dead" && committed.is_empty() {
        bail!("group {group:?} does not exist");
    }
    let assigned = assignments(&description);
    // Every partition that is committed or assigned, and who owns it.
    let mut rows: BTreeMap<(String, i32), (Option<i64>, Option<String>)> = BTreeMap::new();
    for c in &committed {
        rows.entry((c.topic.clone(), c.partition)).or_default().0 = c.offset;
    }
    for (member, decoded) in &assigned {
        for (topic, partitions) in decoded.as_ref().map(Vec::as_slice).unwrap_or_default() {
            for p in partitions {
                rows.entry((topic.clone(), *p)).or_default().1 = Some(member.clone());
            }
        }
    }
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in rows.keys() {
        by_topic.entry(topic.clone()).or_default().push(*partition);
    }
    let ends = log_end_offsets(client, &by_topic).await?;
    let lag = |key: &(String, i32), committed: Option<i64>| {
        let end = ends.get(key).copied();
        (end, end.zip(committed).map(|(e, c)| (e - c).max(0)))
    };
    match output {
        OutputFormat::Json => {
            let members: Vec<_> = description
                .members
                .iter()
                .zip(&assigned)
                .map(|(m, (_, decoded))| {
                    let assignment = match decoded {
                        Ok(list) => {
                            json!(list.iter().map(|(t, ps)| json!({"topic": t, "partitions": ps})).collect::<Vec<_>>())
                        }
                        Err(e) => json!({"error": e}),
                    };
                    json!({
                        "member_id": m.member_id,
                        "group_instance_id": m.group_instance_id,
                        "client_id": m.client_id,
                        "client_host": m.client_host,
                        "assignment": assignment,
                    })
                })
                .collect();
            let offsets: Vec<_> = rows
                .iter()
                .map(|(key, (committed, owner))| {
                    let (end, lag) = lag(key, *committed);
                    json!({
                        "topic": key.0,
                        "partition": key.1,
                        "committed_offset": committed,
                        "log_end_offset": end,
                        "lag": lag,
                        "member_id": owner,
                    })
                })
                .collect();
            let total_lag: i64 = rows.iter().filter_map(|(key, (c, _))| lag(key, *c).1).sum();
            print_json(&json!({
                "group": group,
                "state": description.state,
                "protocol_type": description.protocol_type,
                "protocol": description.protocol,
                "members": members,
                "offsets": offsets,
                "total_lag": total_lag,
            }));
        }
        OutputFormat::Table => {
            println!(
                "group {group}: state {}, {} members{}",
                description.state,
                description.members.len(),
                if description.protocol.is_empty() {
                    String::new()
                } else {
                    format!(", assignor {}", description.protocol)
                }
            );
            if !description.members.is_empty() {
                println!();
                let table: Vec<Vec<String>> = description
                    .members
                    .iter()
                    .zip(&assigned)
                    .map(|(m, (_, decoded))| {
                        let assignment = match decoded {
                            Ok(list) => list
                                .iter()
                                .map(|(t, ps)| {
                                    format!("{t}:{}", ps.iter().map(i32::to_string).collect::<Vec<_>>().join(","))
                                })
                                .collect::<Vec<_>>()
                                .join(" "),
                            Err(e) => format!("(undecodable: {e})"),
                        };
                        vec![m.member_id.clone(), m.client_id.clone(), m.client_host.clone(), assignment]
                    })
                    .collect();
                print_table(&["MEMBER-ID", "CLIENT-ID", "HOST", "ASSIGNMENT"], &table);
            }
            println!();
            let show = |o: Option<i64>| o.map_or_else(|| "-".to_string(), |o| o.to_string());
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|(key, (committed, owner))| {
                    let (end, lag) = lag(key, *committed);
                    vec![
                        key.0.clone(),
                        key.1.to_string(),
                        show(*committed),
                        show(end),
                        show(lag),
                        owner.clone().unwrap_or_else(|| "-".to_string()),
                    ]
                })
                .collect();
            print_table(&["TOPIC", "PARTITION", "COMMITTED-OFFSET", "LOG-END-OFFSET", "LAG", "MEMBER-ID"], &table);
        }
    }
    Ok(())
}

/// `orders` or `orders:0,2`.
fn parse_topic_partitions(s: &str) -> anyhow::Result<(String, Option<Vec<i32>>)> {
    match s.split_once(':') {
        None => Ok((s.to_string(), None)),
        Some((topic, list)) => {
            let partitions = list
                .split(',')
                .map(|p| p.trim().parse::<i32>().with_context(|| format!("invalid partition {p:?} in --topic {s:?}")))
                .collect::<anyhow::Result<Vec<i32>>>()?;
            Ok((topic.to_string(), Some(partitions)))
        }
    }
}

async fn reset_offsets(client: &mut Client, args: ResetArgs) -> anyhow::Result<()> {
    let group = args.group.as_str();
    let description = client.describe_group(group).await?;
    if description.state != "Empty" && description.state != "Dead" {
        bail!(
            "cannot reset the offsets of group {group:?}: it has {} active member(s) (state {})\n\
             hint: stop the group's consumers first; offsets can only be reset while a group is inactive",
            description.members.len(),
            description.state
        );
    }
    let committed = client.offset_fetch(group, None).await?;
    // The partitions to reset.
    let mut scope: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    if args.all_topics {
        for c in &committed {
            scope.entry(c.topic.clone()).or_default().push(c.partition);
        }
        if scope.is_empty() {
            bail!("group {group:?} has no committed offsets: name the topics with --topic");
        }
    }
    for spec in &args.topics {
        let (topic, partitions) = parse_topic_partitions(spec)?;
        let metadata = client.topic(&topic).await?;
        let existing: Vec<i32> = metadata.partitions.iter().map(|p| p.partition).collect();
        let chosen = match partitions {
            None => existing,
            Some(list) => {
                if let Some(p) = list.iter().find(|p| !existing.contains(p)) {
                    bail!("topic {topic:?} has no partition {p} (it has {})", existing.len());
                }
                list
            }
        };
        let entry = scope.entry(topic).or_default();
        entry.extend(chosen);
        entry.sort_unstable();
        entry.dedup();
    }
    let mut plan: Vec<(String, i32, Option<i64>, i64)> = Vec::new();
    for (topic, partitions) in &scope {
        let earliest = client.list_offsets(topic, partitions, OffsetSpec::Earliest).await?;
        let latest = client.list_offsets(topic, partitions, OffsetSpec::Latest).await?;
        let by_time = match (args.to_datetime, args.by_duration) {
            (Some(ms), _) => Some(client.list_offsets(topic, partitions, OffsetSpec::Timestamp(ms)).await?),
            (None, Some(d)) => {
                let ms = now_ms() - i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
                Some(client.list_offsets(topic, partitions, OffsetSpec::Timestamp(ms)).await?)
            }
            _ => None,
        };
        for &p in partitions {
            let find = |listed: &[runnel_client::ListedOffset]| {
                listed.iter().find(|l| l.partition == p).and_then(|l| l.offset)
            };
            let start = find(&earliest).unwrap_or(0);
            let end = find(&latest).unwrap_or(start);
            let new = if args.to_earliest {
                start
            } else if args.to_latest {
                end
            } else if let Some(offset) = args.to_offset {
                offset.clamp(start, end)
            } else {
                // No record at or after the time: the log end, as Kafka does.
                by_time.as_deref().and_then(find).unwrap_or(end)
            };
            let current = committed.iter().find(|c| c.topic == *topic && c.partition == p).and_then(|c| c.offset);
            plan.push((topic.clone(), p, current, new));
        }
    }
    if args.execute {
        let offsets: Vec<(String, i32, i64)> = plan.iter().map(|(t, p, _, new)| (t.clone(), *p, *new)).collect();
        client.commit_offsets(group, &offsets).await.map_err(|e| {
            if e.kafka().is_some_and(|k| k.code == 25) {
                anyhow::anyhow!(
                    "cannot reset the offsets of group {group:?}: a member joined meanwhile\n\
                     hint: stop the group's consumers first; offsets can only be reset while a group is inactive"
                )
            } else {
                anyhow::Error::from(e)
            }
        })?;
    }
    match args.output {
        OutputFormat::Json => print_json(&json!({
            "group": group,
            "executed": args.execute,
            "offsets": plan.iter().map(|(t, p, current, new)| json!({
                "topic": t, "partition": p, "current_offset": current, "new_offset": new,
            })).collect::<Vec<_>>(),
        })),
        OutputFormat::Table => {
            let show = |o: Option<i64>| o.map_or_else(|| "-".to_string(), |o| o.to_string());
            let rows: Vec<Vec<String>> = plan
                .iter()
                .map(|(t, p, current, new)| vec![t.clone(), p.to_string(), show(*current), new.to_string()])
                .collect();
            print_table(&["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"], &rows);
            if args.execute {
                println!("\nreset {} partition(s) of group {group}", plan.len());
            } else {
                println!("\ndry run: nothing changed (add --execute to commit these offsets)");
            }
        }
    }
    Ok(())
}

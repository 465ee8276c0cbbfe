//! `runnel topic create|list|describe|alter-config|delete`: topic administration over the Kafka
//! protocol (CreateTopics, Metadata, ListOffsets, DescribeConfigs, IncrementalAlterConfigs,
//! DeleteTopics).

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use runnel_client::{ConfigOp, NewTopic, OffsetSpec};
use serde_json::json;

use crate::client_args::{ClientArgs, block_on};
use crate::output::{OutputFormat, print_json, print_table};

#[derive(Args, Debug)]
pub struct TopicArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(Subcommand, Debug)]
enum TopicCommand {
    /// Create a topic.
    Create {
        topic: String,
        /// Number of partitions (default: the broker's default-partitions).
        #[arg(long)]
        partitions: Option<i32>,
        /// A topic config, as key=value (repeatable): --config retention.ms=86400000
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
        /// Succeed when the topic already exists.
        #[arg(long)]
        if_not_exists: bool,
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// List topics with their partition counts.
    List {
        /// Include internal topics (__consumer_offsets).
        #[arg(long)]
        internal: bool,
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Show a topic's partitions (leader, log start and end offsets) and configs.
    Describe {
        topic: String,
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Set or remove topic configs (IncrementalAlterConfigs).
    AlterConfig {
        topic: String,
        /// Set a config, as key=value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        set: Vec<(String, String)>,
        /// Remove a config, back to its default (repeatable).
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Delete a topic and all its records.
    Delete {
        topic: String,
        #[arg(long, value_enum, default_value_t)]
        output: OutputFormat,
    },
}

pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not key=value")),
    }
}

pub fn run(args: TopicArgs) -> anyhow::Result<()> {
    block_on(async move {
        let mut client = args.client.connect().await?;
        match args.command {
            TopicCommand::Create { topic, partitions, configs, if_not_exists, output } => {
                if partitions.is_some_and(|p| p < 1) {
                    bail!("--partitions must be at least 1");
                }
                let new = NewTopic { name: topic.clone(), partitions, configs };
                let created = match client.create_topic(&new).await {
                    Ok(()) => true,
                    Err(e) if if_not_exists && runnel_client::admin::is_topic_already_exists(&e) => false,
                    Err(e) => return Err(e.into()),
                };
                let partitions = client.topic(&topic).await?.partitions.len();
                match output {
                    OutputFormat::Json => {
                        print_json(&json!({"topic": topic, "created": created, "partitions": partitions}))
                    }
                    OutputFormat::Table if created => println!("created topic {topic} ({partitions} partitions)"),
                    OutputFormat::Table => println!("topic {topic} already exists ({partitions} partitions)"),
                }
            }
            TopicCommand::List { internal, output } => {
                let metadata = client.metadata(None).await?;
                let mut topics: Vec<_> = metadata.topics.into_iter().filter(|t| internal || !t.internal).collect();
                topics.sort_by(|a, b| a.name.cmp(&b.name));
                match output {
                    OutputFormat::Json => print_json(&json!(
                        topics
                            .iter()
                            .map(|t| json!({"name": t.name, "partitions": t.partitions.len(), "internal": t.internal}))
                            .collect::<Vec<_>>()
                    )),
                    OutputFormat::Table => {
                        let rows: Vec<Vec<String>> =
                            topics.iter().map(|t| vec![t.name.clone(), t.partitions.len().to_string()]).collect();
                        print_table(&["TOPIC", "PARTITIONS"], &rows);
                    }
                }
            }
            TopicCommand::Describe { topic, output } => {
                let metadata = client.topic(&topic).await?;
                let ids: Vec<i32> = metadata.partitions.iter().map(|p| p.partition).collect();
                let earliest = client.list_offsets(&topic, &ids, OffsetSpec::Earliest).await?;
                let latest = client.list_offsets(&topic, &ids, OffsetSpec::Latest).await?;
                let configs = client.describe_topic_configs(&topic).await?;
                let offset = |listed: &[runnel_client::ListedOffset], p: i32| {
                    listed.iter().find(|l| l.partition == p).and_then(|l| l.offset)
                };
                match output {
                    OutputFormat::Json => print_json(&json!({
                        "name": topic,
                        "internal": metadata.internal,
                        "partitions": metadata.partitions.iter().map(|p| json!({
                            "partition": p.partition,
                            "leader": p.leader,
                            "replicas": p.replicas,
                            "log_start_offset": offset(&earliest, p.partition),
                            "log_end_offset": offset(&latest, p.partition),
                        })).collect::<Vec<_>>(),
                        "configs": configs.iter().map(|c| json!({
                            "name": c.name,
                            "value": if c.sensitive { None } else { c.value.clone() },
                            "source": c.source,
                            "read_only": c.read_only,
                            "sensitive": c.sensitive,
                        })).collect::<Vec<_>>(),
                    })),
                    OutputFormat::Table => {
                        println!("topic {topic}: {} partitions", metadata.partitions.len());
                        println!();
                        let show = |o: Option<i64>| o.map_or_else(|| "-".to_string(), |o| o.to_string());
                        let rows: Vec<Vec<String>> = metadata
                            .partitions
                            .iter()
                            .map(|p| {
                                vec![
                                    p.partition.to_string(),
                                    p.leader.to_string(),
                                    show(offset(&earliest, p.partition)),
                                    show(offset(&latest, p.partition)),
                                ]
                            })
                            .collect();
                        print_table(&["PARTITION", "LEADER", "LOG-START-OFFSET", "LOG-END-OFFSET"], &rows);
                        println!();
                        let rows: Vec<Vec<String>> = configs
                            .iter()
                            .map(|c| {
                                let value = if c.sensitive {
                                    "(sensitive)".to_string()
                                } else {
                                    c.value.clone().unwrap_or_default()
                                };
                                vec![c.name.clone(), value, c.source.to_string()]
                            })
                            .collect();
                        print_table(&["CONFIG", "VALUE", "SOURCE"], &rows);
                    }
                }
            }
            TopicCommand::AlterConfig { topic, set, delete, output } => {
                if set.is_empty() && delete.is_empty() {
                    bail!("nothing to change: give --set KEY=VALUE or --delete KEY");
                }
                let ops: Vec<ConfigOp> = set
                    .iter()
                    .map(|(k, v)| ConfigOp::Set(k.clone(), v.clone()))
                    .chain(delete.iter().map(|k| ConfigOp::Delete(k.clone())))
                    .collect();
                client.alter_topic_configs(&topic, &ops).await.with_context(|| format!("topic {topic}"))?;
                match output {
                    OutputFormat::Json => print_json(&json!({
                        "topic": topic,
                        "set": set.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
                        "deleted": delete,
                    })),
                    OutputFormat::Table => println!("altered the configs of topic {topic}"),
                }
            }
            TopicCommand::Delete { topic, output } => {
                client.delete_topic(&topic).await?;
                match output {
                    OutputFormat::Json => print_json(&json!({"topic": topic, "deleted": true})),
                    OutputFormat::Table => println!("deleted topic {topic}"),
                }
            }
        }
        Ok(())
    })
}

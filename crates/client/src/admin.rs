//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs and
//! IncrementalAlterConfigs, one topic at a time.

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest,
};

use crate::error::{Error, KafkaError, check};
use crate::{Client, name, str_bytes};

/// How long the broker may take over an admin request.
pub const ADMIN_TIMEOUT_MS: i32 = 30_000;
/// DescribeConfigs and IncrementalAlterConfigs resource type of a topic.
const RESOURCE_TOPIC: i8 = 2;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

/// A topic to create.
#[derive(Debug, Clone, Default)]
pub struct NewTopic {
    pub name: String,
    /// `None`: the broker's default.
    pub partitions: Option<i32>,
    pub configs: Vec<(String, String)>,
}

/// One configuration entry of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    /// Kafka's name of where the value comes from: `DYNAMIC_TOPIC_CONFIG`, `DEFAULT_CONFIG`...
    pub source: &'static str,
    pub read_only: bool,
    pub sensitive: bool,
}

/// A change to a topic's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOp {
    Set(String, String),
    Delete(String),
}

/// Kafka's `ConfigSource` names.
pub fn config_source_name(source: i8) -> &'static str {
    match source {
        1 => "DYNAMIC_TOPIC_CONFIG",
        2 => "DYNAMIC_BROKER_CONFIG",
        3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
        4 => "STATIC_BROKER_CONFIG",
        5 => "DEFAULT_CONFIG",
        6 => "DYNAMIC_BROKER_LOGGER_CONFIG",
        7 => "CLIENT_METRICS_CONFIG",
        8 => "GROUP_CONFIG",
        _ => "UNKNOWN",
    }
}

impl Client {
    /// Creates a topic; `Error::Kafka` with TOPIC_ALREADY_EXISTS when it exists.
    pub async fn create_topic(&mut self, topic: &NewTopic) -> Result<(), Error> {
        let connection = self.bootstrap_connection();
        let request = CreateTopicsRequest::default().with_timeout_ms(ADMIN_TIMEOUT_MS).with_topics(vec![
            CreatableTopic::default()
                .with_name(name(&topic.name))
                .with_num_partitions(topic.partitions.unwrap_or(-1))
                .with_replication_factor(-1)
                .with_configs(
                    topic
                        .configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default().with_name(str_bytes(k)).with_value(Some(str_bytes(v)))
                        })
                        .collect(),
                ),
        ]);
        let response = connection.call(&request).await?;
        for t in &response.topics {
            check(t.error_code, t.error_message.as_deref(), || format!("cannot create topic {:?}", topic.name))?;
        }
        Ok(())
    }

    /// Deletes a topic and its data.
    pub async fn delete_topic(&mut self, topic: &str) -> Result<(), Error> {
        let connection = self.bootstrap_connection();
        let version = connection.version::<DeleteTopicsRequest>()?;
        let mut request = DeleteTopicsRequest::default().with_timeout_ms(ADMIN_TIMEOUT_MS);
        if version >= 6 {
            request.topics = vec![DeleteTopicState::default().with_name(Some(name(topic)))];
        } else {
            request.topic_names = vec![name(topic)];
        }
        let response = connection.call_at(version, &request).await?;
        for t in &response.responses {
            check(t.error_code, t.error_message.as_deref(), || format!("cannot delete topic {topic:?}"))?;
        }
        Ok(())
    }

    /// Grows a topic to `total` partitions.
    pub async fn create_partitions(&mut self, topic: &str, total: i32) -> Result<(), Error> {
        let connection = self.bootstrap_connection();
        let request = CreatePartitionsRequest::default()
            .with_timeout_ms(ADMIN_TIMEOUT_MS)
            .with_topics(vec![CreatePartitionsTopic::default().with_name(name(topic)).with_count(total)]);
        let response = connection.call(&request).await?;
        for r in &response.results {
            check(r.error_code, r.error_message.as_deref(), || format!("cannot add partitions to topic {topic:?}"))?;
        }
        Ok(())
    }

    /// Every configuration entry of a topic, with where its value comes from.
    pub async fn describe_topic_configs(&mut self, topic: &str) -> Result<Vec<ConfigEntry>, Error> {
        let connection = self.bootstrap_connection();
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(str_bytes(topic))
                .with_configuration_keys(None),
        ]);
        let response = connection.call(&request).await?;
        let mut entries = Vec::new();
        for r in response.results {
            check(r.error_code, r.error_message.as_deref(), || {
                format!("cannot describe the configs of topic {topic:?}")
            })?;
            entries.extend(r.configs.into_iter().map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.map(|v| v.to_string()),
                source: config_source_name(c.config_source),
                read_only: c.read_only,
                sensitive: c.is_sensitive,
            }));
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Sets and deletes configuration entries of a topic (IncrementalAlterConfigs).
    pub async fn alter_topic_configs(&mut self, topic: &str, ops: &[ConfigOp]) -> Result<(), Error> {
        let connection = self.bootstrap_connection();
        let configs = ops
            .iter()
            .map(|op| match op {
                ConfigOp::Set(k, v) => AlterableConfig::default()
                    .with_name(str_bytes(k))
                    .with_config_operation(OP_SET)
                    .with_value(Some(str_bytes(v))),
                ConfigOp::Delete(k) => {
                    AlterableConfig::default().with_name(str_bytes(k)).with_config_operation(OP_DELETE).with_value(None)
                }
            })
            .collect();
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(str_bytes(topic))
                .with_configs(configs),
        ]);
        let response = connection.call(&request).await?;
        for r in &response.responses {
            check(r.error_code, r.error_message.as_deref(), || format!("cannot alter the configs of topic {topic:?}"))?;
        }
        Ok(())
    }
}

/// Whether `error` says the topic already exists.
pub fn is_topic_already_exists(error: &Error) -> bool {
    error.kafka().is_some_and(|e: &KafkaError| e.code == 36)
}

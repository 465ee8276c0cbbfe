//! An async Kafka-protocol client: what `runnel topic|group|produce|consume` and `runnel bench`
//! use to talk to runnel (or any Kafka-compatible broker).
//!
//! [`Connection`] is one TCP connection (framing, correlation ids, versions agreed through
//! ApiVersions); [`Client`] adds the operations, each answering with plain Rust types and a
//! typed [`Error`] whose Kafka error codes carry Kafka's names. The client routes produce and
//! fetch to the partition leader and group calls to the coordinator; on a single node (runnel
//! today) both are the bootstrap broker, and the bootstrap connection is reused.

pub mod admin;
pub mod connection;
pub mod consumer_protocol;
pub mod data;
pub mod error;
pub mod groups;

use std::collections::HashMap;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

pub use admin::{ConfigEntry, ConfigOp, NewTopic};
pub use connection::{ApiVersions, Connection, Pending, RequestSender, ResponseReceiver};
pub use data::{FetchedPartition, ListedOffset, OffsetSpec, ProduceAck, Producer};
pub use error::{ConnectError, Error, KafkaError};
pub use groups::{CommittedOffset, GroupDescription, GroupListing, JoinedGroup, MemberDescription};

/// The client id sent when none is given.
pub const DEFAULT_CLIENT_ID: &str = "runnel-client";

/// A broker as described by Metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
}

impl BrokerInfo {
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A topic as described by Metadata.
#[derive(Debug, Clone)]
pub struct TopicMetadata {
    pub name: String,
    pub error: Option<KafkaError>,
    pub internal: bool,
    pub partitions: Vec<PartitionMetadata>,
}

/// A partition as described by Metadata.
#[derive(Debug, Clone)]
pub struct PartitionMetadata {
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub error: Option<KafkaError>,
}

/// The cluster as described by Metadata.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: Vec<BrokerInfo>,
    pub topics: Vec<TopicMetadata>,
}

pub(crate) fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A client of one cluster, reached through a bootstrap broker.
#[derive(Debug)]
pub struct Client {
    bootstrap: String,
    client_id: String,
    /// Connections by address; the bootstrap broker's is always there.
    connections: HashMap<String, Connection>,
    /// Broker addresses by node id, from the last Metadata answer.
    brokers: HashMap<i32, String>,
}

impl Client {
    /// Connects to the bootstrap broker (host:port) and agrees API versions.
    pub async fn connect(bootstrap: &str) -> Result<Client, ConnectError> {
        Client::connect_as(bootstrap, DEFAULT_CLIENT_ID).await
    }

    pub async fn connect_as(bootstrap: &str, client_id: &str) -> Result<Client, ConnectError> {
        let connection = Connection::connect(bootstrap, client_id).await?;
        let mut connections = HashMap::new();
        connections.insert(bootstrap.to_string(), connection);
        Ok(Client {
            bootstrap: bootstrap.to_string(),
            client_id: client_id.to_string(),
            connections,
            brokers: HashMap::new(),
        })
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The bootstrap broker's connection.
    pub fn bootstrap_connection(&mut self) -> &mut Connection {
        self.connections.get_mut(&self.bootstrap).expect("the bootstrap connection is kept")
    }

    /// The address of `node_id`: the bootstrap broker when it is the only one known (a single
    /// node may advertise a name the client cannot resolve, and one connection suffices).
    fn addr_of(&self, node_id: i32) -> String {
        if self.brokers.len() <= 1 {
            return self.bootstrap.clone();
        }
        self.brokers.get(&node_id).cloned().unwrap_or_else(|| self.bootstrap.clone())
    }

    /// The connection to `node_id`, opened on first use.
    pub async fn connection_to(&mut self, node_id: i32) -> Result<&mut Connection, Error> {
        let addr = self.addr_of(node_id);
        if !self.connections.contains_key(&addr) {
            let connection = Connection::connect(&addr, &self.client_id).await?;
            self.connections.insert(addr.clone(), connection);
        }
        Ok(self.connections.get_mut(&addr).expect("inserted above"))
    }

    /// A new connection to `node_id`, owned by the caller (for pipelining).
    pub async fn new_connection_to(&self, node_id: i32) -> Result<Connection, Error> {
        Ok(Connection::connect(&self.addr_of(node_id), &self.client_id).await?)
    }

    /// Metadata of the topics named, or of every topic when `topics` is `None`. Never creates
    /// topics.
    pub async fn metadata(&mut self, topics: Option<&[&str]>) -> Result<Metadata, Error> {
        let connection = self.bootstrap_connection();
        let version = connection.version::<MetadataRequest>()?;
        let mut request = MetadataRequest::default();
        request.topics =
            topics.map(|ts| ts.iter().map(|t| MetadataRequestTopic::default().with_name(Some(name(t)))).collect());
        if version >= 4 {
            request.allow_auto_topic_creation = false;
        }
        let response = connection.call_at(version, &request).await?;
        let metadata = Metadata {
            cluster_id: response.cluster_id.map(|c| c.to_string()),
            controller_id: response.controller_id.0,
            brokers: response
                .brokers
                .iter()
                .map(|b| BrokerInfo { node_id: b.node_id.0, host: b.host.to_string(), port: b.port })
                .collect(),
            topics: response
                .topics
                .iter()
                .map(|t| TopicMetadata {
                    name: t.name.as_ref().map(|n| n.to_string()).unwrap_or_default(),
                    error: KafkaError::from_code(t.error_code, None),
                    internal: t.is_internal,
                    partitions: t
                        .partitions
                        .iter()
                        .map(|p| PartitionMetadata {
                            partition: p.partition_index,
                            leader: p.leader_id.0,
                            leader_epoch: p.leader_epoch,
                            replicas: p.replica_nodes.iter().map(|n| n.0).collect(),
                            isr: p.isr_nodes.iter().map(|n| n.0).collect(),
                            error: KafkaError::from_code(p.error_code, None),
                        })
                        .collect(),
                })
                .collect(),
        };
        self.brokers = metadata.brokers.iter().map(|b| (b.node_id, b.addr())).collect();
        Ok(metadata)
    }

    /// One topic's metadata, or `Error::Kafka` (UNKNOWN_TOPIC_OR_PARTITION when it does not exist).
    pub async fn topic(&mut self, topic: &str) -> Result<TopicMetadata, Error> {
        let metadata = self.metadata(Some(&[topic])).await?;
        let found = metadata.topics.into_iter().find(|t| t.name == topic);
        let Some(mut t) = found else {
            return Err(Error::Kafka {
                what: format!("cannot describe topic {topic:?}"),
                error: KafkaError::from_code(3, None).expect("an error code"),
            });
        };
        if let Some(error) = t.error.take() {
            return Err(Error::Kafka { what: format!("cannot describe topic {topic:?}"), error });
        }
        t.partitions.sort_by_key(|p| p.partition);
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_broker_addresses_are_bracketed() {
        let b = BrokerInfo { node_id: 0, host: "::1".into(), port: 9092 };
        assert_eq!(b.addr(), "[::1]:9092");
        let b = BrokerInfo { node_id: 0, host: "localhost".into(), port: 9092 };
        assert_eq!(b.addr(), "localhost:9092");
    }
}

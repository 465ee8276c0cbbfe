//! The Kafka-protocol broker over the runnel log.
//!
//! [`Broker::bind`] opens a TCP listener; [`Broker::run`] accepts Kafka clients until a
//! shutdown signal, answering each connection's requests in order (an acks=all produce waits
//! for its fsync while the next pipelined produce is appended). Requests are decoded with
//! the `kafka-protocol` crate; record batches pass through verbatim: a produce request's
//! `records` bytes go to [`runnel_log::Partition::append`] as they are, and a fetch response
//! carries the bytes [`runnel_log::Partition::read`] returned. Consumer group APIs are
//! delegated to [`group::GroupCoordinator`]. Request-path counters (bytes and records per
//! topic, latency per API, connections) live in [`metrics`], which also writes the Prometheus
//! text the HTTP server (`runnel-http`) serves.

pub mod group;
mod handlers;
pub mod limits;
pub mod metrics;
mod server;
mod state;
mod wire;

use std::net::SocketAddr;

pub use handlers::supported_api_versions;
pub use server::Broker;

/// How the broker presents itself and behaves.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where to listen for Kafka clients (port 0 picks a free port).
    pub listener: SocketAddr,
    /// `host:port` given to clients in Metadata and FindCoordinator; `None` advertises the
    /// bound address.
    pub advertised_listener: Option<(String, u16)>,
    /// This broker's node id in Metadata.
    pub node_id: i32,
    /// Whether Metadata requests create unknown topics (Kafka's `auto.create.topics.enable`).
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic, and of CreateTopics asking for -1 (Kafka's
    /// `num.partitions`).
    pub default_partitions: u32,
    /// The consumer group coordinator's settings (session timeouts, limits, offsets retention).
    pub groups: group::GroupConfig,
}

impl BrokerConfig {
    /// Kafka's defaults on 127.0.0.1:9092.
    pub fn new(listener: SocketAddr) -> BrokerConfig {
        BrokerConfig {
            listener,
            advertised_listener: None,
            node_id: 0,
            auto_create_topics: true,
            default_partitions: 1,
            groups: group::GroupConfig::default(),
        }
    }
}

/// Why the broker could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Log(#[from] runnel_log::LogError),
    #[error("broker state file {path}: {source}")]
    State { path: std::path::PathBuf, source: std::io::Error },
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

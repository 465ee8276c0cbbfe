//! Dispatch of decoded requests to the API handlers, the table of supported API versions,
//! and what the handlers share ([`Context`]).

mod admin;
mod configs;
mod fetch;
mod list_offsets;
mod metadata;
mod produce;

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, InitProducerIdRequest, InitProducerIdResponse, ProduceResponse,
    RequestHeader, RequestKind, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use runnel_log::{Log, TopicInfo};
use tokio::sync::watch;

use produce::Produced;

use crate::BrokerConfig;
use crate::group::{GroupCoordinator, Host};
use crate::state::ProducerIds;
use crate::wire::api_version_list;

/// The APIs served here (key, min version, max version); the group coordinator adds its own.
const OWN_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 13),
    (ApiKey::Fetch, 4, 17),
    (ApiKey::ListOffsets, 1, 10),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
];

/// Every API this broker answers, as (API key, min version, max version), sorted by key:
/// what ApiVersions advertises.
pub fn supported_api_versions() -> Vec<(i16, i16, i16)> {
    let mut all: Vec<(i16, i16, i16)> = OWN_APIS.iter().map(|&(k, min, max)| (k as i16, min, max)).collect();
    for (key, min, max) in GroupCoordinator::supported_versions() {
        if !all.iter().any(|&(k, _, _)| k == key) {
            all.push((key, min, max));
        }
    }
    all.sort_unstable();
    all
}

/// The wait of an appended acks=all produce for its fsync, ending in its response.
pub(crate) type ProduceWait =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<ProduceResponse, Internal>> + Send>>;

/// What to send back for one request.
pub(crate) enum Reply {
    Response(Box<ResponseKind>),
    /// acks=all produce, appended: the response once the batches are fsynced. The connection
    /// may read and append the client's next produce meanwhile.
    AfterSync(ProduceWait),
    /// acks=0 produce: the client expects nothing.
    Nothing,
    /// Nobody here handles this API: answer UNSUPPORTED_VERSION.
    Unsupported,
}

/// A failure inside the broker (not the client's fault) that leaves no honest answer; the
/// connection is closed and the error logged.
#[derive(Debug, thiserror::Error)]
#[error("internal error: {0}")]
pub(crate) struct Internal(pub String);

/// Runs a blocking log call on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Internal> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Internal(format!("log call failed: {e}")))
}

/// State shared by every connection's handlers.
pub(crate) struct Context {
    pub log: Arc<Log>,
    pub config: BrokerConfig,
    pub advertised_host: String,
    pub advertised_port: i32,
    pub cluster_id: String,
    pub groups: Arc<GroupCoordinator>,
    pub producer_ids: Arc<ProducerIds>,
    /// Serialises read-modify-write changes of topic configuration (shared with the HTTP API).
    pub config_lock: Arc<tokio::sync::Mutex<()>>,
    /// Request-path counters (bytes and records per topic, request latency, connections).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Becomes true when the broker shuts down (ends fetch long polls early).
    pub shutdown: watch::Receiver<bool>,
    /// What ApiVersions advertises: (API key, min version, max version), sorted by key.
    pub supported: Vec<(i16, i16, i16)>,
}

pub(crate) fn code(e: ResponseError) -> i16 {
    e.code()
}

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// Topics by id, for the request versions that name topics by id.
pub(crate) fn topics_by_id(log: &Log) -> HashMap<[u8; 16], TopicInfo> {
    log.topics().into_iter().map(|t| (t.id, t)).collect()
}

pub(crate) fn uuid(id: [u8; 16]) -> uuid::Uuid {
    uuid::Uuid::from_bytes(id)
}

impl Context {
    pub(crate) async fn handle(
        &self,
        header: &RequestHeader,
        request: RequestKind,
        client_host: &str,
    ) -> Result<Reply, Internal> {
        let version = header.request_api_version;
        let response = match request {
            RequestKind::ApiVersions(r) => ResponseKind::ApiVersions(self.api_versions(r)),
            RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(self, r, version).await?),
            RequestKind::Produce(r) => match produce::handle(self, r, version).await? {
                Produced::Now(resp) => ResponseKind::Produce(resp),
                Produced::Nothing => return Ok(Reply::Nothing),
                Produced::AfterSync(wait) => return Ok(Reply::AfterSync(wait)),
            },
            RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(self, r, version).await?),
            RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(list_offsets::handle(self, r, version).await?),
            RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(admin::create_topics(self, r, version).await?),
            RequestKind::DeleteTopics(r) => ResponseKind::DeleteTopics(admin::delete_topics(self, r, version).await?),
            RequestKind::CreatePartitions(r) => {
                ResponseKind::CreatePartitions(admin::create_partitions(self, r).await?)
            }
            RequestKind::DeleteRecords(r) => ResponseKind::DeleteRecords(admin::delete_records(self, r).await?),
            RequestKind::DescribeCluster(r) => ResponseKind::DescribeCluster(admin::describe_cluster(self, r)),
            RequestKind::DescribeConfigs(r) => ResponseKind::DescribeConfigs(configs::describe(self, r, version)),
            RequestKind::AlterConfigs(r) => ResponseKind::AlterConfigs(configs::alter(self, r).await?),
            RequestKind::IncrementalAlterConfigs(r) => {
                ResponseKind::IncrementalAlterConfigs(configs::incremental_alter(self, r).await?)
            }
            RequestKind::InitProducerId(r) => ResponseKind::InitProducerId(self.init_producer_id(r).await?),
            other => {
                let host = Host {
                    node_id: self.config.node_id,
                    host: self.advertised_host.clone(),
                    port: self.advertised_port,
                    client_id: header.client_id.as_ref().map(|c| c.to_string()).unwrap_or_default(),
                    client_host: client_host.to_string(),
                };
                return Ok(match self.groups.handle(header.request_api_key, version, other, &host).await {
                    Some(resp) => Reply::Response(Box::new(resp)),
                    None => Reply::Unsupported,
                });
            }
        };
        Ok(Reply::Response(Box::new(response)))
    }

    fn api_versions(&self, _request: ApiVersionsRequest) -> ApiVersionsResponse {
        ApiVersionsResponse::default().with_api_keys(api_version_list(&self.supported))
    }

    /// Idempotent producers get a fresh producer id (or, re-initialising with their current
    /// id and epoch, the next epoch). Transactions are not supported: a transactional id is
    /// refused with UNSUPPORTED_VERSION, which clients report as a fatal, clear error.
    async fn init_producer_id(&self, request: InitProducerIdRequest) -> Result<InitProducerIdResponse, Internal> {
        let response = InitProducerIdResponse::default();
        if request.transactional_id.as_ref().is_some_and(|id| id.0.is_empty()) {
            return Ok(response.with_error_code(code(ResponseError::InvalidRequest)));
        }
        if request.transactional_id.is_some() {
            tracing::info!("InitProducerId with a transactional id refused: runnel does not support transactions");
            return Ok(response.with_error_code(code(ResponseError::UnsupportedVersion)));
        }
        let current = request.producer_id.0;
        let epoch = request.producer_epoch;
        if (0..i16::MAX - 1).contains(&epoch) && self.producer_ids.issued(current) {
            return Ok(response.with_producer_id(request.producer_id).with_producer_epoch(epoch + 1));
        }
        let ids = self.producer_ids.clone();
        match blocking(move || ids.allocate()).await? {
            Ok(id) => Ok(response.with_producer_id(id.into()).with_producer_epoch(0)),
            Err(e) => {
                tracing::error!(error = %e, "cannot persist the producer id reservation");
                Ok(response.with_error_code(code(ResponseError::KafkaStorageError)))
            }
        }
    }
}

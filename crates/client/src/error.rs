//! The client's errors: why a connection could not be made, why a call failed, and Kafka error
//! codes turned into their names and a sentence a user can act on.

use std::fmt;

use kafka_protocol::ResponseError;

/// A broker could not be reached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    #[error("cannot reach runnel at {addr}: connection refused (is \"runnel serve\" running?)")]
    Refused { addr: String },
    #[error("cannot reach runnel at {addr}: no answer within {timeout_secs} s (is the address right?)")]
    TimedOut { addr: String, timeout_secs: u64 },
    #[error("cannot reach runnel at {addr}: {error}")]
    Io { addr: String, error: std::io::Error },
    #[error("cannot reach runnel at {addr}: the address resolves to nothing")]
    Unresolved { addr: String },
    #[error("runnel at {addr} does not answer ApiVersions: {detail}")]
    Handshake { addr: String, detail: String },
}

/// A Kafka error code in a response, with Kafka's name for it and a human sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaError {
    pub code: i16,
    /// Kafka's name, as in its documentation: `UNKNOWN_TOPIC_OR_PARTITION`.
    pub name: String,
    /// The broker's own message when it sent one, else a standard description.
    pub message: String,
}

impl KafkaError {
    /// `None` for code 0 (no error).
    pub fn from_code(code: i16, broker_message: Option<&str>) -> Option<KafkaError> {
        let error = ResponseError::try_from_code(code)?;
        let name = match error {
            ResponseError::Unknown(code) => format!("UNKNOWN_ERROR_CODE_{code}"),
            other => screaming_snake(&other.to_string()),
        };
        let message = match broker_message.filter(|m| !m.is_empty()) {
            Some(m) => m.to_string(),
            None => describe(error).to_string(),
        };
        Some(KafkaError { code, name, message })
    }

    pub fn response_error(&self) -> ResponseError {
        ResponseError::try_from_code(self.code).unwrap_or(ResponseError::Unknown(self.code))
    }
}

impl fmt::Display for KafkaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.name, self.code, self.message)
    }
}

impl std::error::Error for KafkaError {}

/// `UnknownTopicOrPartition` → `UNKNOWN_TOPIC_OR_PARTITION`.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Kafka's descriptions of the errors a CLI user meets most, reworded to say what to do.
fn describe(error: ResponseError) -> &'static str {
    use ResponseError as E;
    match error {
        E::UnknownServerError => "the broker hit an unexpected error (see its log)",
        E::OffsetOutOfRange => "the offset is outside the partition's log (before its start or past its end)",
        E::CorruptMessage => "the record batch failed its CRC check or is malformed",
        E::UnknownTopicOrPartition => "no such topic or partition",
        E::MessageTooLarge => "the batch is larger than the topic's max.message.bytes",
        E::RequestTimedOut => "the request timed out on the broker",
        E::NotCoordinator | E::CoordinatorNotAvailable | E::CoordinatorLoadInProgress => {
            "the group coordinator is not available yet: retry"
        }
        E::InvalidTopicException => "invalid topic name (letters, digits, '.', '_' and '-', at most 249)",
        E::RecordListTooLarge => "the batch is larger than the topic's segment size",
        E::InvalidRequiredAcks => "acks must be all (-1), 1 or 0",
        E::IllegalGeneration => "the group's generation has moved on: rejoin the group",
        E::InvalidGroupId => "invalid group id",
        E::UnknownMemberId => "the group does not know this member (a group with active members refuses admin commits)",
        E::RebalanceInProgress => "the group is rebalancing: retry when it is stable",
        E::InvalidTimestamp => "a record's timestamp is out of the accepted range",
        E::UnsupportedVersion => "the broker does not support this API version",
        E::TopicAlreadyExists => "the topic already exists",
        E::InvalidPartitions => "invalid number of partitions (a topic's partition count can only grow)",
        E::InvalidReplicationFactor => "invalid replication factor (a single runnel node only has 1)",
        E::InvalidConfig => "invalid topic configuration",
        E::InvalidRequest => "the broker considers the request invalid",
        E::PolicyViolation => "the request violates a broker policy",
        E::NonEmptyGroup => "the group still has active members: stop its consumers first",
        E::GroupIdNotFound => "no such consumer group",
        E::GroupSubscribedToTopic => "the group still consumes this topic",
        E::MemberIdRequired => "the group asks the member to rejoin with the member id it was given",
        E::GroupMaxSizeReached => "the group has reached its maximum number of members",
        E::UnknownTopicId => "no topic with this id",
        E::TopicDeletionDisabled => "topic deletion is disabled on the broker",
        E::NotLeaderOrFollower => "this broker does not lead the partition: refresh metadata and retry",
        E::InvalidRecord => "the broker refused a record as invalid",
        _ => "see the Kafka protocol documentation for this error code",
    }
}

/// A request failed: the connection, the encoding, or the broker's answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("lost the connection to {addr} during {api}: {error}")]
    Io { addr: String, api: String, error: std::io::Error },
    #[error("the broker at {addr} closed the connection during {api}")]
    Closed { addr: String, api: String },
    #[error("no answer to {api} from {addr} within {timeout_secs} s")]
    TimedOut { addr: String, api: String, timeout_secs: u64 },
    #[error("the broker at {addr} does not support {api} (client supports v{client_min}-v{client_max})")]
    Unsupported { addr: String, api: String, client_min: i16, client_max: i16 },
    #[error("invalid {api} answer from {addr}: {detail}")]
    Protocol { addr: String, api: String, detail: String },
    #[error("cannot encode a {api} request: {detail}")]
    Encode { api: String, detail: String },
    #[error("{what}: {error}")]
    Kafka { what: String, error: KafkaError },
    #[error("{0}")]
    Invalid(String),
    #[error("cannot build a record batch: {0}")]
    Batch(String),
}

impl Error {
    /// The Kafka error inside, if the broker answered with one.
    pub fn kafka(&self) -> Option<&KafkaError> {
        match self {
            Error::Kafka { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// `Err(Error::Kafka)` when `code` is not 0.
pub(crate) fn check(code: i16, message: Option<&str>, what: impl FnOnce() -> String) -> Result<(), Error> {
    match KafkaError::from_code(code, message) {
        None => Ok(()),
        Some(error) => Err(Error::Kafka { what: what(), error }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_errors_have_their_kafka_names() {
        let e = KafkaError::from_code(3, None).unwrap();
        assert_eq!(e.name, "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(e.to_string(), "UNKNOWN_TOPIC_OR_PARTITION (3): no such topic or partition");
        assert!(KafkaError::from_code(0, None).is_none());
        assert_eq!(KafkaError::from_code(-1, Some("boom")).unwrap().name, "UNKNOWN_SERVER_ERROR");
        assert_eq!(KafkaError::from_code(9999, None).unwrap().name, "UNKNOWN_ERROR_CODE_9999");
    }
}

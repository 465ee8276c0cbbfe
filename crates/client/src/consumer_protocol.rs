//! The "consumer" embedded protocol of consumer groups: the subscription a member sends in
//! JoinGroup and the assignment the leader hands out through SyncGroup, each an i16 version
//! followed by the struct at that version.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use kafka_protocol::protocol::{Decodable, Encodable, Message};

use crate::{name, str_bytes};

/// The protocol type of Kafka consumers' groups.
pub const PROTOCOL_TYPE_CONSUMER: &str = "consumer";

/// A subscription to `topics` (version 0: topics and no user data).
pub fn encode_subscription(topics: &[&str]) -> Bytes {
    let subscription =
        ConsumerProtocolSubscription::default().with_topics(topics.iter().map(|t| str_bytes(t)).collect());
    let mut out = BytesMut::new();
    out.put_i16(0);
    subscription.encode(&mut out, 0).expect("a v0 subscription always encodes");
    out.freeze()
}

/// An assignment of partitions per topic (version 0).
pub fn encode_assignment(assignment: &[(&str, Vec<i32>)]) -> Bytes {
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
        assignment
            .iter()
            .map(|(topic, partitions)| {
                TopicPartition::default().with_topic(name(topic)).with_partitions(partitions.clone())
            })
            .collect(),
    );
    let mut out = BytesMut::new();
    out.put_i16(0);
    assignment.encode(&mut out, 0).expect("a v0 assignment always encodes");
    out.freeze()
}

/// The partitions per topic of a member's assignment. Versions newer than kafka-protocol knows
/// are read as its newest, as Kafka does (fields are only ever appended). An empty assignment
/// (a member that has not synced yet) decodes to no partitions.
pub fn decode_assignment(bytes: &[u8]) -> Result<Vec<(String, Vec<i32>)>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut buf = Bytes::copy_from_slice(bytes);
    if buf.remaining() < 2 {
        return Err("assignment shorter than its version".to_string());
    }
    let version = buf.get_i16();
    if version < 0 {
        return Err(format!("invalid assignment version {version}"));
    }
    let version = version.min(ConsumerProtocolAssignment::VERSIONS.max);
    let assignment = ConsumerProtocolAssignment::decode(&mut buf, version).map_err(|e| e.to_string())?;
    Ok(assignment.assigned_partitions.into_iter().map(|tp| (tp.topic.to_string(), tp.partitions)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_round_trip() {
        let bytes = encode_assignment(&[("orders", vec![0, 2]), ("payments", vec![1])]);
        let decoded = decode_assignment(&bytes).unwrap();
        assert_eq!(decoded, vec![("orders".to_string(), vec![0, 2]), ("payments".to_string(), vec![1])]);
        assert!(decode_assignment(&[]).unwrap().is_empty());
        assert!(decode_assignment(&[0]).is_err());
    }
}

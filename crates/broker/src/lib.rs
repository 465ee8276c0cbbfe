//! The Kafka-protocol broker over the runnel log.

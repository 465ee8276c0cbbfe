//! Integration tests of the broker over loopback, with a tiny raw Kafka client built on the
//! `kafka-protocol` crate (encode a request, frame it, decode the response).

mod admin;
mod common;
mod connections;
mod group;
mod produce_fetch;
mod protocol;

//! Memory under hostile input, measured on the real process: compression bombs sent by several
//! clients at once, frames announced large and sent slowly, and a request claiming billions of
//! array entries; `runnel serve` answers or closes only those connections, keeps serving, and
//! its peak resident memory (VmHWM) stays far below what the input claims.

use std::io::{Read, Write};
use std::thread;

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse, FetchRequest, FetchResponse,
    ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use runnel_records::{BatchBuilder, Compression, Record};

use super::{Serve, call, data_dir_arg};

const INVALID_RECORD: i16 = 87;
/// What one bomb inflates to: 128 MiB of zeros, about 4 KiB once compressed (twice the
/// decompression limit of one batch).
const BOMB_INFLATED_BYTES: usize = 128 << 20;
/// Clients sending the bomb at the same time.
const BOMB_CLIENTS: usize = 8;
/// Connections that announce a large frame and send only part of it.
const SLOW_CLIENTS: usize = 16;
/// The bound asserted on the server's peak resident memory. Without the decompression budget,
/// the bombs alone would inflate to BOMB_CLIENTS x 128 MiB = 1 GiB.
const PEAK_RSS_BYTES_MAX: u64 = 512 << 20;

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn produce(topic_name: &str, records: Bytes) -> ProduceRequest {
    ProduceRequest::default().with_acks(1).with_timeout_ms(30_000).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(topic(topic_name))
            .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(records))]),
    ])
}

fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("a VmHWM line");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmHWM in kB");
    kib * 1024
}

#[test]
fn memory_stays_bounded_under_bombs_slow_frames_and_huge_counts() {
    let dir = tempfile::tempdir().unwrap();
    let data = data_dir_arg(dir.path());
    let serve = Serve::start(&["--kafka-listener", "127.0.0.1:0", "--data-dir", &data, "--log-level", "error"], &[]);
    let before = peak_rss_bytes(serve.child.id());

    let mut admin = serve.connect();
    let create = CreateTopicsRequest::default().with_timeout_ms(30_000).with_topics(vec![
        CreatableTopic::default()
            .with_name(topic("compacted"))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(vec![
                CreatableTopicConfig::default()
                    .with_name(StrBytes::from_static_str("cleanup.policy"))
                    .with_value(Some(StrBytes::from_static_str("compact"))),
            ]),
        CreatableTopic::default().with_name(topic("plain")).with_num_partitions(1).with_replication_factor(1),
    ]);
    let created: CreateTopicsResponse = call(&mut admin, 5, &create);
    assert!(created.topics.iter().all(|t| t.error_code == 0), "{created:?}");

    let mut builder = BatchBuilder::new();
    builder.push(Record::new(Some("k"), Some(vec![0u8; BOMB_INFLATED_BYTES])).at(1_000));
    let bomb = builder.build(Compression::Zstd).unwrap();
    drop(builder);
    assert!(bomb.len() < 1 << 20, "{} bytes on the wire", bomb.len());

    // Slow frames: after a first small request (larger first frames are cut off at once), each
    // announces 64 MiB and sends 1 MiB of it, held open during the bombs.
    let mut slow = Vec::new();
    for _ in 0..SLOW_CLIENTS {
        let mut c = serve.connect();
        let _: ApiVersionsResponse = call(&mut c, 3, &ApiVersionsRequest::default());
        c.write_all(&(64i32 << 20).to_be_bytes()).unwrap();
        c.write_all(&[0u8; 1 << 20]).unwrap();
        slow.push(c);
    }

    // Bombs to a compacted topic, whose records the broker must decode to check their keys.
    let answers: Vec<i16> = thread::scope(|s| {
        let handles: Vec<_> = (0..BOMB_CLIENTS)
            .map(|_| {
                let bomb = bomb.clone();
                let serve = &serve;
                s.spawn(move || {
                    let response: ProduceResponse = call(&mut serve.connect(), 9, &produce("compacted", bomb));
                    response.responses[0].partition_responses[0].error_code
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(answers, vec![INVALID_RECORD; BOMB_CLIENTS], "every bomb is refused");

    // A topic that is not compacted stores the bomb verbatim and serves it back verbatim: no
    // decompression on that path, for a consumer to decide what to do with it.
    let response: ProduceResponse = call(&mut admin, 9, &produce("plain", bomb.clone()));
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    let fetch =
        FetchRequest::default().with_max_wait_ms(0).with_max_bytes(50 << 20).with_session_epoch(-1).with_topics(vec![
            FetchTopic::default().with_topic(topic("plain")).with_partitions(vec![
                FetchPartition::default().with_partition(0).with_fetch_offset(0).with_partition_max_bytes(1 << 20),
            ]),
        ]);
    let fetched: FetchResponse = call(&mut admin, 12, &fetch);
    assert_eq!(fetched.responses[0].partitions[0].records.as_deref(), Some(&bomb[..]));

    // The slow frames are still pending (their 16 x 64 MiB announced exceed the 512 MiB request
    // memory budget, but only what they sent is reserved, so they stalled nobody) and the
    // broker still serves others.
    for c in &mut slow {
        c.set_nonblocking(true).unwrap();
        let pending = c.read(&mut [0u8; 1]);
        assert!(matches!(&pending, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock), "{pending:?}");
    }
    let response: ApiVersionsResponse = call(&mut serve.connect(), 3, &ApiVersionsRequest::default());
    assert_eq!(response.error_code, 0);
    drop(slow);

    let after = peak_rss_bytes(serve.child.id());
    eprintln!(
        "runnel serve peak RSS: {:.1} MiB at start, {:.1} MiB after {BOMB_CLIENTS} concurrent {} MiB bombs and \
         {SLOW_CLIENTS} slow 64 MiB frames (bound asserted: {} MiB)",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        BOMB_INFLATED_BYTES >> 20,
        PEAK_RSS_BYTES_MAX >> 20
    );
    assert!(after < PEAK_RSS_BYTES_MAX, "peak RSS {after} bytes");
    assert!(serve.terminate());
}

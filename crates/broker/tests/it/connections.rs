//! Connection handling: malformed and oversized frames close only their own connection;
//! shutdown closes idle connections and lets `run` return.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
use tokio::io::AsyncWriteExt;

use crate::common::{Client, TestBroker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_only_their_connection() {
    let mut broker = TestBroker::start().await;
    let mut healthy = broker.client().await;
    healthy.call(3, &ApiVersionsRequest::default()).await;

    // A size above socket.request.max.bytes, after a first good request.
    let mut oversized = broker.client().await;
    oversized.call(0, &ApiVersionsRequest::default()).await;
    oversized.stream.write_all(&(200i32 << 20).to_be_bytes()).await.unwrap();
    assert!(oversized.is_closed_by_broker().await);

    // A first frame larger than the pre-handshake cap, even though within the global one.
    let mut early_big = broker.client().await;
    early_big.stream.write_all(&(1i32 << 20).to_be_bytes()).await.unwrap();
    assert!(early_big.is_closed_by_broker().await);

    // Negative and too-short sizes.
    for size in [-5i32, 3] {
        let mut c = broker.client().await;
        c.stream.write_all(&size.to_be_bytes()).await.unwrap();
        c.stream.write_all(&[0u8; 3]).await.unwrap();
        assert!(c.is_closed_by_broker().await, "size {size}");
    }

    // A well-framed request whose body is garbage.
    let mut garbage = broker.client().await;
    let mut body = BytesMut::new();
    body.put_i16(ApiKey::Metadata as i16);
    body.put_i16(12);
    body.put_i32(1);
    body.put_slice(&[0xff; 40]);
    garbage.send_frame(&body).await;
    assert!(garbage.is_closed_by_broker().await);

    // A frame announcing more bytes than the client sends, then hanging up.
    let mut truncated = broker.client().await;
    truncated.stream.write_all(&100i32.to_be_bytes()).await.unwrap();
    truncated.stream.write_all(&[0u8; 10]).await.unwrap();
    truncated.stream.shutdown().await.unwrap();
    assert!(truncated.is_closed_by_broker().await);

    // The other connection, and new ones, are unaffected.
    assert_eq!(healthy.call(3, &ApiVersionsRequest::default()).await.error_code, 0);
    assert_eq!(broker.client().await.call(1, &ApiVersionsRequest::default()).await.error_code, 0);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections_and_returns() {
    let mut broker = TestBroker::start().await;
    let mut idle = broker.client().await;
    idle.call(3, &ApiVersionsRequest::default()).await;
    broker.stop().await;
    assert!(idle.is_closed_by_broker().await);
    assert!(tokio::net::TcpStream::connect(broker.addr).await.is_err(), "no longer accepting");
    let _ = Client::connect;
}

//! What every client command shares: where the broker is, and the runtime it runs on.

use anyhow::Context;
use clap::Args;
use runnel_client::Client;

/// The broker a client command talks to.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// host:port of a runnel (or Kafka-compatible) broker.
    #[arg(long, global = true, env = "RUNNEL_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
}

impl ClientArgs {
    pub async fn connect(&self) -> anyhow::Result<Client> {
        Ok(Client::connect_as(&self.bootstrap, "runnel-cli").await?)
    }
}

/// Runs a client command on a single-threaded runtime: a command is one conversation with
/// the broker, and requests are pipelined rather than spread over threads.
pub fn block_on<T>(future: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?
        .block_on(future)
}

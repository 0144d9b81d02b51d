//! The bench's one error type. The harness is a library the `truc` binary
//! links, so it keeps to `thiserror` like the other library crates; `anyhow`
//! stays in the CLI.

use truc_node::ClientError;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("certificates: {0}")]
    Pki(#[from] truc_pki::PkiError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Starting or reaching the hub, or preparing the run, went wrong.
    #[error("{0}")]
    Setup(String),
    /// Options that contradict each other or the hub.
    #[error("{0}")]
    Usage(String),
    #[error("NATS: {0}")]
    Nats(String),
}

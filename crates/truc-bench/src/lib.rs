//! A load generator and benchmark harness for the axis. It drives a hub that
//! runs in its own process (spawned here from the `truc` executable, or one
//! already running) through the public gRPC API over mutual TLS, with real
//! agency certificates and real signatures, and measures sustained durable
//! intake, deliveries at a fan-out, status moves, latencies, the hub's peak
//! memory and its bytes on disk per document; and, size by size, streamed
//! attachments beside the disk's own write-and-sync bandwidth. `nats`
//! (feature `nats`) runs the same messages and fan-out through NATS
//! JetStream for a side-by-side figure.
//!
//! Entry point: [`run`] with [`BenchOptions`] and a [`HubTarget`]; the
//! [`BenchReport`] it returns prints as a table and serialises as JSON.

mod agencies;
mod attachments;
mod documents;
mod error;
mod fanout;
mod hub_process;
mod latency;
pub mod many_nodes;
#[cfg(feature = "nats")]
pub mod nats;
mod nodes;
mod options;
mod report;
pub mod resources;
mod run;
mod scenarios;
pub mod year;

pub use agencies::{bench_agencies, directory_toml, Agency, ScenarioKind};
pub use error::BenchError;
pub use fanout::FanoutMix;
pub use hub_process::{
    HubExtras, HubTarget, SpawnStore, SpawnedHub, SpawnedHubs, DEFAULT_OPERATOR,
};
pub use latency::{LatencyRecorder, LatencySummary};
pub use options::{
    BenchOptions, NatsOptions, RateSpec, Scenario, ATTACHMENT_SIZES_DEFAULT, MOVES_PER_CALL_DEFAULT,
};
pub use report::{AttachmentPhase, AttachmentsFigures, BenchReport, SendFigures};
pub use run::run;

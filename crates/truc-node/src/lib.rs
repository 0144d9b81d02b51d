//! The agency side of the axis: a client that signs and sends documents,
//! moves statuses and reads them ([`client`]), the one loop that holds a
//! delivery stream, acknowledges and reconnects ([`deliveries`]), and the
//! node agent that, through it, verifies what arrives and writes it into an
//! inbox exactly once ([`agent`]), also in edXML ([`edxml_inbox`]), and the
//! outbox that sends what an agency's own system drops into a folder
//! ([`outbox`]); each may be given several hubs and moves to the next when
//! one does not answer ([`failover`]).

pub mod agent;
pub mod client;
pub mod compose;
pub mod deliveries;
pub mod edxml_inbox;
pub mod failover;
pub mod outbox;
pub mod verify;

#[cfg(test)]
mod signing_example;

pub use agent::{ack_message, recalled_marker_name, run_node, InboxError, NodeConfig, NodeEvent};
pub use client::{
    certificate_problem, connect_channel, Acks, AxisClient, ByteChunks, CertificateProblem,
    ClientError, Deliveries,
};
pub use compose::{Attachment, Draft};
pub use deliveries::{
    run_deliveries, Backoff, DeliveryHandler, Receipt, SessionEnd, StreamItem, StreamOptions,
};
pub use failover::{FailoverOptions, HubAddressError, HubAddresses};
pub use outbox::{OutboxConfig, OutboxEvent};

//! The node agent: one delivery stream to a hub, reconnecting with backoff,
//! to the next hub of its list when its hub ended the stream or stopped
//! answering; each delivery is verified, its attachments fetched and checked, written
//! into the inbox with an atomic rename, and only then acknowledged. A
//! document already in the inbox is acknowledged again, never rewritten, so
//! the agency's application sees each document exactly once. A document
//! whose recall was agreed is marked recalled beside it in the inbox.
//!
//! Durable before acknowledged, through a power cut too: every file is
//! synced, then its folder, the rename and then the folder it lands in; a
//! folder the node creates (the inbox, a relay's unit, the notices) has its
//! name synced in its parent before anything in it is acknowledged.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ring::digest::{Context, SHA256};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use truc_pki::{Credentials, TrustRoots};
use truc_proto::v1 as pb;

use crate::client::{Acks, AxisClient, ClientError};
use crate::deliveries::{
    run_deliveries, Backoff, DeliveryHandler, Receipt, SessionEnd, StreamOptions,
};
use crate::failover::{FailoverOptions, HubAddresses};
use crate::verify::{verify_wire, WireVerified};

#[derive(Clone)]
pub struct NodeConfig {
    /// The hubs, in order of preference.
    pub hubs: HubAddresses,
    pub roots: TrustRoots,
    pub credentials: Credentials,
    /// Where delivered documents are written; `None` keeps only an in-memory
    /// record (replays, which verify everything but write nothing).
    pub inbox: Option<PathBuf>,
    /// Unacknowledged deliveries the node accepts at once.
    pub window: u32,
    /// Told of each new delivery and notice, if set.
    pub events: Option<mpsc::Sender<NodeEvent>>,
    /// Longest wait between reconnection attempts.
    pub backoff_max: Duration,
    /// Also write each document as an edXML package and each notice as an
    /// edXML status message into the inbox ([`crate::edxml_inbox`]).
    pub edxml: bool,
    /// Send what the agency's system drops into this folder ([`crate::outbox`]).
    pub outbox: Option<crate::outbox::OutboxConfig>,
}

#[derive(Clone, Debug)]
pub enum NodeEvent {
    /// A delivery stream opened on this hub.
    Connected { hub: SocketAddr },
    Delivered {
        document_id: String,
        recipient: String,
        header: Box<truc_domain::RawHeader>,
        document_signature: truc_domain::views::SignatureState,
    },
    /// A status notice about a document this agency sent.
    Notice(truc_domain::views::StatusNotice),
    /// A document this node received (for its agency, or for a unit it
    /// relays for) was recalled: the recall was agreed, or the sender
    /// withdrew it while it was on its way. `marked` is the file written
    /// beside the document in the inbox; `None` when the inbox does not
    /// hold it (it never reached this node, or the node keeps no inbox).
    Recalled {
        document_id: String,
        recipient: String,
        marked: Option<PathBuf>,
    },
    /// A delivery that failed verification; it is not acknowledged.
    Refused { document_id: String, reason: String },
    /// An outbox entry sent, or moved to `failed/`.
    Outbox(crate::outbox::OutboxEvent),
}

/// Attachments live in their own folder so that no attachment name can
/// collide with the files the node writes beside them.
pub const ATTACHMENTS_FOLDER: &str = "attachments";

/// Folder name for a document id: `/` would nest folders, so it is escaped.
pub fn inbox_name(document_id: &str) -> String {
    document_id.replace('%', "%25").replace('/', "%2F")
}

/// Creates the inbox (and its parents) and makes every name on the way
/// durable, so that a power cut cannot take the folder with the documents
/// acknowledged into it.
pub fn prepare_inbox(inbox: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(inbox)?;
    std::fs::File::open(inbox)?.sync_all()?;
    for ancestor in inbox.ancestors().skip(1) {
        if !ancestor.as_os_str().is_empty() {
            std::fs::File::open(ancestor)?.sync_all()?;
        }
    }
    Ok(())
}

/// Why something could not be written into the inbox (a document, its
/// edXML package, a notice, a recall's mark). A full disk or a refused
/// permission stays recognisable by the `io::ErrorKind` of the source.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    /// A file or folder operation failed; `op` says which ("create", "sync", …).
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The hub did not give an attachment the delivery did not carry inline.
    #[error("cannot fetch attachment {name}: {source}")]
    Fetch {
        name: String,
        #[source]
        source: Box<ClientError>,
    },
    /// The bytes received are not those the sender signed.
    #[error("attachment {name} does not match its signed digest")]
    Mismatch { name: String },
    #[error("cannot encode {what}: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The document does not map to an edXML package.
    #[error("no edXML package for {document_id}: {source}")]
    Package {
        document_id: String,
        #[source]
        source: truc_edxml::FromEnvelopeError,
    },
    #[error("cannot write edXML: {0}")]
    Edxml(#[from] truc_edxml::WriteError),
    /// The package was written on a blocking thread that did not finish.
    #[error("writing an edXML package did not finish: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl InboxError {
    /// A failed file operation on `path`.
    pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InboxError {
        let path = path.to_owned();
        move |source| InboxError::Io { op, path, source }
    }
}

/// Creates `folder` in `parent` if missing, its name durable in `parent`.
async fn create_durable_folder(parent: &Path, folder: &Path) -> Result<(), InboxError> {
    if tokio::fs::try_exists(folder)
        .await
        .map_err(InboxError::io("look for", folder))?
    {
        return Ok(());
    }
    tokio::fs::create_dir_all(folder)
        .await
        .map_err(InboxError::io("create", folder))?;
    sync_dir(parent).await
}

/// First wait before reconnecting; it doubles up to `backoff_max` while
/// attempts fail, and starts again after a stream that opened ([`Backoff`]).
const BACKOFF_FIRST: Duration = Duration::from_millis(100);

/// Runs the node until `shutdown` resolves: the delivery stream, and the
/// outbox beside it when the config has one.
pub async fn run_node(config: NodeConfig, shutdown: impl std::future::Future<Output = ()>) {
    let Some(outbox) = config.outbox.clone() else {
        return run_delivery_stream(config, shutdown).await;
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(crate::outbox::run_outbox(
        config.clone(),
        outbox,
        stopped.clone(),
    ));
    let mut stream_stopped = stopped;
    tokio::join!(
        async move {
            shutdown.await;
            let _ = stop.send(true);
        },
        run_delivery_stream(config, async move {
            let _ = stream_stopped.wait_for(|stop| *stop).await;
        }),
    );
    let _ = worker.await;
}

/// The delivery stream, reconnecting, until `shutdown` resolves.
async fn run_delivery_stream(config: NodeConfig, shutdown: impl std::future::Future<Output = ()>) {
    // One client for every stream: it knows which hub is current, so a
    // stream that ends sends the next one to the next hub. It connects at
    // its first call, so a node may start before its hubs.
    let client = match AxisClient::lazy(
        &config.hubs,
        &config.roots,
        config.credentials.clone(),
        FailoverOptions::default(),
    ) {
        Ok(client) => client,
        Err(error) => {
            // Made from the node's own credentials: no later attempt would fare better.
            tracing::error!(%error, "node cannot make its client; no delivery stream");
            return shutdown.await;
        }
    };
    let seed = config
        .credentials
        .cert_chain_der
        .first()
        .map_or(&[][..], Vec::as_slice);
    let mut inbox = Inbox {
        own: own_code(&config),
        backoff: Backoff::new(BACKOFF_FIRST, config.backoff_max, seed),
        config: &config,
        client: client.clone(),
        seen: HashSet::new(),
    };
    let options = StreamOptions {
        window: config.window,
        batch_acks: true,
    };
    run_deliveries(&client, options, &mut inbox, shutdown).await;
}

/// The agent's part of the delivery loop: each delivery verified and
/// written into the inbox (or remembered, without one), each notice recorded.
struct Inbox<'a> {
    config: &'a NodeConfig,
    client: AxisClient,
    /// The agency code of the node's own certificate.
    own: Option<String>,
    /// Deliveries received, when there is no inbox to find them in.
    seen: HashSet<String>,
    backoff: Backoff,
}

impl DeliveryHandler for Inbox<'_> {
    type Item = pb::HubMessage;

    async fn opened(&mut self, hub: SocketAddr) {
        tracing::info!(%hub, "delivery stream open");
        if let Some(events) = &self.config.events {
            let _ = events.send(NodeEvent::Connected { hub }).await;
        }
    }

    async fn handle(&mut self, message: pb::HubMessage, _: &Acks) -> Result<Receipt, ClientError> {
        let (config, own) = (self.config, self.own.as_deref());
        let accepted = match message.kind {
            Some(pb::hub_message::Kind::Delivery(delivery)) => {
                receive(config, &self.client, &mut self.seen, delivery).await?
            }
            Some(pb::hub_message::Kind::Notice(notice)) if !sent_by(own, &notice) => {
                // A notice about a document this node received: its recall
                // was agreed, and the document must not be acted on.
                record_notice(config, &notice).await?;
                let marked = mark_recalled(config, own, &notice).await?;
                if let Some(events) = &config.events {
                    let _ = events
                        .send(NodeEvent::Recalled {
                            document_id: notice.document_id.clone(),
                            recipient: notice.recipient.clone(),
                            marked,
                        })
                        .await;
                }
                true
            }
            Some(pb::hub_message::Kind::Notice(notice)) => {
                record_notice(config, &notice).await?;
                if let (true, Some(inbox)) = (config.edxml, &config.inbox) {
                    crate::edxml_inbox::write_notice_messages(inbox, &notice).await?;
                }
                if let Some(events) = &config.events {
                    let _ = events.send(NodeEvent::Notice(notice.into())).await;
                }
                true
            }
            None => false,
        };
        Ok(if accepted {
            Receipt::Ack
        } else {
            Receipt::Hold
        })
    }

    /// Forever: a node holds its stream as long as it runs.
    fn reconnect(&mut self, end: &SessionEnd) -> Option<Duration> {
        match end {
            SessionEnd::Ended | SessionEnd::AcksClosed => {
                tracing::info!("delivery stream ended; reconnecting")
            }
            SessionEnd::NotOpened(error) | SessionEnd::Broke(error) | SessionEnd::Failed(error) => {
                tracing::warn!(%error, "node session failed; reconnecting")
            }
        }
        let opened = !matches!(end, SessionEnd::NotOpened(_));
        Some(self.backoff.after(opened))
    }
}

/// The message that acknowledges `queue_seqs`.
pub fn ack_message(queue_seqs: Vec<u64>) -> pb::NodeMessage {
    pb::NodeMessage {
        kind: Some(pb::node_message::Kind::Ack(pb::Ack { queue_seqs })),
    }
}

/// Returns whether the delivery may be acknowledged.
async fn receive(
    config: &NodeConfig,
    client: &AxisClient,
    seen: &mut HashSet<String>,
    delivery: pb::Delivery,
) -> Result<bool, ClientError> {
    let verified = match verify_wire(&delivery, &config.roots) {
        Ok(verified) => verified,
        Err(error) => {
            tracing::error!(document_id = %delivery.document_id, %error, "security: delivery refused");
            if let Some(events) = &config.events {
                let _ = events
                    .send(NodeEvent::Refused {
                        document_id: delivery.document_id.clone(),
                        reason: error.to_string(),
                    })
                    .await;
            }
            return Ok(false);
        }
    };
    let key = format!("{}\u{0}{}", verified.document_id, delivery.recipient);
    let new = match &config.inbox {
        Some(inbox) => {
            // A relay (LGSP) passes each unit's documents down into that
            // unit's own folder; its own stay at the top.
            let inbox = &match own_code(config) {
                Some(own) if own != delivery.recipient => {
                    let unit = inbox.join(inbox_name(&delivery.recipient));
                    create_durable_folder(inbox, &unit).await?;
                    unit
                }
                _ => inbox.clone(),
            };
            let folder = inbox.join(inbox_name(&verified.document_id));
            let new = if tokio::fs::try_exists(&folder)
                .await
                .map_err(InboxError::io("look for", &folder))?
            {
                false
            } else {
                if let Err(reason) =
                    write_document(client, inbox, &folder, &delivery, &verified).await
                {
                    tracing::error!(document_id = %verified.document_id, %reason, "delivery not written; it stays queued");
                    return Ok(false);
                }
                true
            };
            // Beside the folder, and after it: a crash between the two
            // leaves the package to the redelivery, which finds the folder.
            if config.edxml {
                if let Err(reason) = crate::edxml_inbox::write_document_package(
                    inbox,
                    &folder,
                    &verified.document_id,
                    &verified.header,
                )
                .await
                {
                    tracing::error!(document_id = %verified.document_id, %reason, "edXML package not written; the delivery stays queued");
                    return Ok(false);
                }
            }
            new
        }
        None => {
            if seen.contains(&key) {
                false
            } else {
                if let Err(reason) = receive_attachments(client, &delivery, &verified, None).await {
                    tracing::error!(document_id = %verified.document_id, %reason, "attachment check failed; it stays queued");
                    return Ok(false);
                }
                seen.insert(key);
                true
            }
        }
    };
    if new {
        if let Some(events) = &config.events {
            let _ = events
                .send(NodeEvent::Delivered {
                    document_id: verified.document_id.clone(),
                    recipient: delivery.recipient.clone(),
                    header: Box::new(verified.header.clone().into()),
                    document_signature: truc_domain::views::SignatureState::from_code(
                        delivery.document_signature,
                    ),
                })
                .await;
        }
    }
    Ok(true)
}

/// The agency code of the node's own certificate.
fn own_code(config: &NodeConfig) -> Option<String> {
    match truc_pki::peer_identity(config.credentials.certificate_der()) {
        Ok(truc_pki::PeerIdentity {
            role: truc_pki::PeerRole::Agency { code },
            ..
        }) => Some(code),
        _ => None,
    }
}

/// Reads every attachment (inline in the delivery, or fetched from the hub),
/// checks its size and digest against the signed header, and writes it into
/// `staging` when given.
async fn receive_attachments(
    client: &AxisClient,
    delivery: &pb::Delivery,
    verified: &WireVerified,
    staging: Option<&Path>,
) -> Result<(), InboxError> {
    let inline = delivery.inline_attachments.len() == verified.header.attachments.len();
    for (index, info) in verified.header.attachments.iter().enumerate() {
        let path = staging.map(|staging| staging.join(ATTACHMENTS_FOLDER).join(&info.name));
        let mut file = match &path {
            Some(path) => Some(
                tokio::fs::File::create(path)
                    .await
                    .map_err(InboxError::io("create", path))?,
            ),
            None => None,
        };
        let mut context = Context::new(&SHA256);
        let mut size = 0u64;
        let mut take = |data: &[u8]| {
            size += data.len() as u64;
            context.update(data);
        };
        let fetch_failed = |source: ClientError| InboxError::Fetch {
            name: info.name.clone(),
            source: Box::new(source),
        };
        if inline {
            let data = &delivery.inline_attachments[index];
            take(data);
            if let (Some(file), Some(path)) = (file.as_mut(), &path) {
                file.write_all(data)
                    .await
                    .map_err(InboxError::io("write", path))?;
            }
        } else {
            let mut stream = client
                .fetch_attachment(&verified.document_id, index as u32)
                .await
                .map_err(fetch_failed)?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(fetch_failed)?;
                take(&chunk);
                if let (Some(file), Some(path)) = (file.as_mut(), &path) {
                    file.write_all(&chunk)
                        .await
                        .map_err(InboxError::io("write", path))?;
                }
            }
        }
        if size != info.size_bytes || context.finish().as_ref() != info.sha256.as_slice() {
            return Err(InboxError::Mismatch {
                name: info.name.clone(),
            });
        }
        if let (Some(file), Some(path)) = (file, &path) {
            file.sync_all()
                .await
                .map_err(InboxError::io("sync", path))?;
        }
    }
    Ok(())
}

/// Writes header, envelope and attachments into a hidden folder, checks every
/// digest, syncs, and renames it into the inbox in one step.
async fn write_document(
    client: &AxisClient,
    inbox: &Path,
    folder: &Path,
    delivery: &pb::Delivery,
    verified: &WireVerified,
) -> Result<(), InboxError> {
    let staging = inbox.join(format!(".incoming-{}", inbox_name(&verified.document_id)));
    let _ = tokio::fs::remove_dir_all(&staging).await;
    let attachments = staging.join(ATTACHMENTS_FOLDER);
    tokio::fs::create_dir_all(&attachments)
        .await
        .map_err(InboxError::io("create", &attachments))?;
    receive_attachments(client, delivery, verified, Some(&staging)).await?;
    let envelope = delivery.envelope.clone().unwrap_or_default();
    let header_json = header_json(&verified.header, delivery);
    for (name, bytes) in [
        (
            "header.json",
            serde_json::to_vec_pretty(&header_json).map_err(|source| InboxError::Json {
                what: "header.json",
                source,
            })?,
        ),
        ("envelope.header.pb", envelope.header),
        ("envelope.signature", envelope.signature),
        ("sender.der", delivery.sender_certificate.clone()),
    ] {
        write_synced(&staging.join(name), &bytes).await?;
    }
    sync_dir(&attachments).await?;
    sync_dir(&staging).await?;
    tokio::fs::rename(&staging, folder)
        .await
        .map_err(InboxError::io("rename into place", folder))?;
    sync_dir(inbox).await
}

async fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), InboxError> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(InboxError::io("create", path))?;
    file.write_all(bytes)
        .await
        .map_err(InboxError::io("write", path))?;
    file.sync_all().await.map_err(InboxError::io("sync", path))
}

/// Makes the names in the folder `path` durable.
pub(crate) async fn sync_dir(path: &Path) -> Result<(), InboxError> {
    let dir = tokio::fs::File::open(path)
        .await
        .map_err(InboxError::io("open", path))?;
    dir.sync_all().await.map_err(InboxError::io("sync", path))
}

fn header_json(header: &pb::EnvelopeHeader, delivery: &pb::Delivery) -> serde_json::Value {
    let organ =
        |o: &pb::Organ| serde_json::json!({"organ_id": o.organ_id, "organ_name": o.organ_name});
    let code = header.code.clone().unwrap_or_default();
    let promulgation = header.promulgation.clone().unwrap_or_default();
    serde_json::json!({
        "document_id": delivery.document_id,
        "recipient": delivery.recipient,
        "from": header.from.as_ref().map(organ),
        "to": header.to.iter().map(organ).collect::<Vec<_>>(),
        "number": code.number,
        "notation": code.notation,
        "promulgation_place": promulgation.place,
        "promulgation_date": promulgation.date,
        "subject": header.subject,
        "due_date": header.due_date,
        "business_type": header.business_type,
        "business_refs": header.business_refs,
        "response_for": header.response_for,
        "document_signature": pb::DocumentSignatureState::try_from(delivery.document_signature)
            .map(|s| s.as_str_name())
            .unwrap_or("UNKNOWN"),
        "accepted_at_unix_ms": delivery.accepted_at_unix_ms,
        "attachments": header.attachments.iter().map(|a| serde_json::json!({
            "name": a.name, "media_type": a.media_type, "size_bytes": a.size_bytes,
            "sha256": hex::encode(&a.sha256),
        })).collect::<Vec<_>>(),
    })
}

/// Whether a notice is about a document `own` sent (its sender's notices),
/// rather than one it received (a recall told to a recipient's node).
fn sent_by(own: Option<&str>, notice: &pb::StatusNotice) -> bool {
    let sender = notice.document_id.split(',').next().unwrap_or_default();
    own.is_none_or(|own| own == sender)
}

/// The name of the file that marks a received document recalled, beside
/// its folder in the inbox.
pub fn recalled_marker_name(document_id: &str) -> String {
    format!("{}.recalled.json", inbox_name(document_id))
}

/// Writes `<document>.recalled.json` beside the document's folder, if the
/// inbox holds it: the agency's application must not act on it any more.
/// Written whole (hidden name, sync, rename), so a crash leaves it or not.
async fn mark_recalled(
    config: &NodeConfig,
    own: Option<&str>,
    notice: &pb::StatusNotice,
) -> Result<Option<PathBuf>, ClientError> {
    let Some(inbox) = &config.inbox else {
        return Ok(None);
    };
    // A relay's units have folders of their own, as in `receive`.
    let inbox = match own {
        Some(own) if own != notice.recipient => inbox.join(inbox_name(&notice.recipient)),
        _ => inbox.clone(),
    };
    let folder = inbox.join(inbox_name(&notice.document_id));
    if !tokio::fs::try_exists(&folder)
        .await
        .map_err(InboxError::io("look for", &folder))?
    {
        return Ok(None);
    }
    let entry = notice.entries.last().cloned().unwrap_or_default();
    let name = recalled_marker_name(&notice.document_id);
    let marked = write_into_place(&inbox, &name, &notice_json(notice, &entry)).await?;
    sync_dir(&inbox).await?;
    Ok(Some(marked))
}

/// One status entry of a notice, as the inbox keeps it.
fn notice_json(notice: &pb::StatusNotice, entry: &pb::StatusEntry) -> Vec<u8> {
    let json = serde_json::json!({
        "document_id": notice.document_id,
        "recipient": notice.recipient,
        "status": entry.status,
        "at_unix_ms": entry.at_unix_ms,
        "actor": entry.actor,
        "reason": entry.reason,
    });
    serde_json::to_vec_pretty(&json).unwrap_or_default()
}

/// Writes `folder/name` whole: under a hidden name, synced, then renamed,
/// so a crash leaves it or not. The caller syncs the folder.
async fn write_into_place(folder: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, InboxError> {
    let temporary = folder.join(format!(".{name}.tmp"));
    write_synced(&temporary, bytes).await?;
    let named = folder.join(name);
    tokio::fs::rename(&temporary, &named)
        .await
        .map_err(InboxError::io("rename into place", &named))?;
    Ok(named)
}

async fn record_notice(config: &NodeConfig, notice: &pb::StatusNotice) -> Result<(), ClientError> {
    if let Some(inbox) = &config.inbox {
        let folder = inbox.join(".notices");
        create_durable_folder(inbox, &folder).await?;
        for entry in &notice.entries {
            let name = format!(
                "{}__{}__{:02}.json",
                inbox_name(&notice.document_id),
                notice.recipient,
                entry.status
            );
            write_into_place(&folder, &name, &notice_json(notice, entry)).await?;
        }
        // The renames are durable before the notice is acknowledged.
        sync_dir(&folder).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A notice's entry lands whole under its name, with nothing left
    /// under the hidden one, and says who moved what and when.
    #[tokio::test]
    async fn a_notice_entry_is_written_whole_into_place() {
        let folder = tempfile::tempdir().unwrap();
        let notice = pb::StatusNotice {
            document_id: "000.00.00.G22,2026/12/07,1/VPCP".into(),
            recipient: "000.00.00.H41".into(),
            ..Default::default()
        };
        let entry = pb::StatusEntry {
            status: 6,
            at_unix_ms: 1_765_000_000_000,
            actor: "000.00.00.H41".into(),
            reason: "xong".into(),
        };
        let named = write_into_place(folder.path(), "n.json", &notice_json(&notice, &entry))
            .await
            .unwrap();
        assert_eq!(named, folder.path().join("n.json"));
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&named).unwrap()).unwrap();
        assert_eq!(written["document_id"], notice.document_id);
        assert_eq!(written["recipient"], "000.00.00.H41");
        assert_eq!(written["status"], 6);
        assert_eq!(written["at_unix_ms"], 1_765_000_000_000i64);
        assert_eq!(written["reason"], "xong");
        let names: Vec<_> = std::fs::read_dir(folder.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["n.json"], "no hidden file left");
    }
}

//! The outbox: an agency's own document system drops an edXML package, a
//! status message, or the JSON folder form into a folder, and the node
//! checks it, signs it, sends it, and moves it to `sent/` with the hub's
//! acknowledgement beside it (`<entry>.receipt.json`), or to `failed/` with
//! the refusal (`<entry>.refusal.json`: gRPC code, element, reason in
//! Vietnamese and English).
//!
//! An entry is picked up only under its final name: the system writes it
//! under a name starting with `.` or ending in `.tmp` or `.part` and renames
//! it when complete (a folder too). Crash safety, `kill -9` at any moment:
//! 1. the entry is claimed by a rename into `.truc/processing/`, so it is
//!    in exactly one place and a restart finds it there;
//! 2. once the outcome is known (the hub's answer or a refusal) it is
//!    written to `.truc/done/<entry>.json` with the entry's final name,
//!    before anything moves; a restart finishes the moves from that record
//!    and never asks the hub again;
//! 3. a crash before the record is written sends the entry again: the same
//!    entry makes the same header bytes, so the hub answers with the
//!    original acknowledgement (its duplicate), and nothing is sent twice.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use truc_domain::views::StatusEntry;
use truc_domain::{AgencyCode, DocumentDate, SigningKey, Status};
use truc_edxml::{
    element_for_field, status_element_for_field, status_move, Category, CheckContext, Checked,
    EdxmlLimits, Entry, Package, Problem, Refused, StatusMessage,
};

use crate::agent::{NodeConfig, NodeEvent};
use crate::client::{AxisClient, ClientError};
use crate::compose::Prepared;
use crate::edxml_inbox::write_atomically;

/// Entries sent, each beside its receipt.
pub const SENT_FOLDER: &str = "sent";
/// Entries refused, each beside its refusal.
pub const FAILED_FOLDER: &str = "failed";
/// The node's own state, hidden inside the outbox (the same file system,
/// so every move is one rename).
pub const STATE_FOLDER: &str = ".truc";
const PROCESSING_FOLDER: &str = "processing";
const DONE_FOLDER: &str = "done";
pub const RECEIPT_SUFFIX: &str = ".receipt.json";
pub const REFUSAL_SUFFIX: &str = ".refusal.json";
/// Names that say an entry is still being written.
const PARTIAL_SUFFIXES: [&str; 2] = [".tmp", ".part"];
/// First wait after a failure to reach the hub; it doubles to the node's `backoff_max`.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
/// Most names tried when an entry's name is taken in `sent/` or `failed/`.
const UNIQUE_NAME_TRIES_MAX: u32 = 10_000;

#[derive(Clone, Debug)]
pub struct OutboxConfig {
    /// The folder the agency's system drops entries into.
    pub folder: PathBuf,
    /// How often the folder is looked at.
    pub scan_interval: Duration,
    /// Most entries claimed in one look.
    pub claims_per_scan_max: usize,
    /// The limits entries are checked against (the hub's defaults).
    pub limits: truc_domain::Limits,
    pub edxml_limits: EdxmlLimits,
}

impl OutboxConfig {
    pub fn new(folder: PathBuf) -> Self {
        OutboxConfig {
            folder,
            scan_interval: Duration::from_millis(500),
            claims_per_scan_max: 64,
            limits: truc_domain::Limits::default(),
            edxml_limits: EdxmlLimits::default(),
        }
    }

    fn processing(&self) -> PathBuf {
        self.folder.join(STATE_FOLDER).join(PROCESSING_FOLDER)
    }

    fn done(&self) -> PathBuf {
        self.folder.join(STATE_FOLDER).join(DONE_FOLDER)
    }
}

/// What became of an entry.
#[derive(Clone, Debug)]
pub enum OutboxEvent {
    Sent {
        entry: String,
        document_id: String,
        receipt: PathBuf,
    },
    Failed {
        entry: String,
        refusal: PathBuf,
        /// The first problem, for a log line.
        summary: String,
    },
}

/// An entry that cannot be finished now and stays claimed.
#[derive(Debug)]
struct Pending {
    reason: String,
    retry_after: Option<Duration>,
}

impl Pending {
    fn new(reason: impl Into<String>) -> Self {
        Pending {
            reason: reason.into(),
            retry_after: None,
        }
    }
}

/// The outcome of an entry, decided once and recorded before anything moves.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Record {
    /// `sent` or `failed`.
    destination: String,
    /// The entry's name there (its own, or with `-2`, `-3`… when taken).
    final_name: String,
    document_id: String,
    /// The receipt or the refusal, as written beside it.
    body: serde_json::Value,
}

/// Runs the outbox of `node` until `stop` says so.
pub async fn run_outbox(node: NodeConfig, outbox: OutboxConfig, mut stop: watch::Receiver<bool>) {
    let own = match truc_pki::peer_identity(node.credentials.certificate_der()) {
        Ok(truc_pki::PeerIdentity {
            role: truc_pki::PeerRole::Agency { code },
            ..
        }) => code,
        _ => {
            tracing::error!("the outbox needs an agency certificate; it does not run");
            return;
        }
    };
    let Ok(own_code) = own.parse::<AgencyCode>() else {
        tracing::error!(%own, "the certificate's agency code is ill-formed; the outbox does not run");
        return;
    };
    let key = match SigningKey::from_pkcs8(&node.credentials.key_pkcs8_der) {
        Ok(key) => key,
        Err(error) => {
            tracing::error!(%error, "the agency key is unusable; the outbox does not run");
            return;
        }
    };
    let resumed = list_names(&outbox.processing())
        .await
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut worker = Worker {
        node,
        outbox,
        own,
        own_code,
        key,
        client: None,
        resumed,
    };
    let mut backoff = BACKOFF_FIRST;
    loop {
        if *stop.borrow() {
            return;
        }
        let wait = match worker.scan().await {
            Ok(()) => {
                backoff = BACKOFF_FIRST;
                worker.outbox.scan_interval
            }
            Err(pending) => {
                tracing::warn!(reason = %pending.reason, "outbox entry waits; trying again");
                worker.client = None;
                let wait = pending.retry_after.unwrap_or(backoff);
                backoff = (backoff * 2).min(worker.node.backoff_max.max(BACKOFF_FIRST));
                wait
            }
        };
        tokio::select! {
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

struct Worker {
    node: NodeConfig,
    outbox: OutboxConfig,
    own: String,
    own_code: AgencyCode,
    key: SigningKey,
    client: Option<AxisClient>,
    /// Entries found claimed when the node started: a crash interrupted them.
    resumed: HashSet<String>,
}

/// Whether the agency's system is done with a name.
fn eligible(name: &str) -> bool {
    !name.starts_with('.')
        && name != SENT_FOLDER
        && name != FAILED_FOLDER
        && !PARTIAL_SUFFIXES.iter().any(|suffix| name.ends_with(suffix))
}

async fn list_names(folder: &Path) -> Result<Vec<String>, std::io::Error> {
    let mut names = Vec::new();
    let mut listing = tokio::fs::read_dir(folder).await?;
    while let Some(entry) = listing.next_entry().await? {
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

async fn sync_dir(folder: &Path) -> Result<(), std::io::Error> {
    tokio::fs::File::open(folder).await?.sync_all().await
}

fn io(error: impl std::fmt::Display) -> Pending {
    Pending::new(format!("outbox folder: {error}"))
}

fn today_in_vietnam() -> Result<DocumentDate, Pending> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64);
    DocumentDate::vietnam_date_of_unix_ms(now_ms)
        .ok_or_else(|| Pending::new("the system clock is out of range"))
}

fn problems_json(problems: &[Problem]) -> serde_json::Value {
    serde_json::to_value(problems).unwrap_or_default()
}

/// What a gRPC code means, in Vietnamese, for a refusal file.
fn vietnamese_for(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::InvalidArgument => "Trục từ chối: dữ liệu không hợp lệ",
        tonic::Code::PermissionDenied => "Trục từ chối: không có thẩm quyền",
        tonic::Code::AlreadyExists => {
            "Trục từ chối: mã văn bản đã được gửi với nội dung khác; bản gốc được giữ nguyên"
        }
        tonic::Code::NotFound => "Trục từ chối: không tìm thấy văn bản hoặc đơn vị được nêu",
        tonic::Code::FailedPrecondition => {
            "Trục từ chối: trạng thái hiện tại của văn bản không cho phép thay đổi này"
        }
        tonic::Code::ResourceExhausted => "Trục từ chối: vượt quá giới hạn",
        tonic::Code::Unauthenticated => "Trục từ chối: chữ ký hoặc chứng thư số không hợp lệ",
        _ => "Trục từ chối",
    }
}

fn category_for(code: tonic::Code) -> Category {
    match code {
        tonic::Code::PermissionDenied => Category::Authority,
        tonic::Code::Unauthenticated => Category::Signature,
        tonic::Code::AlreadyExists | tonic::Code::NotFound => Category::Notation,
        tonic::Code::ResourceExhausted => Category::Format,
        _ => Category::Form,
    }
}

/// The field a hub refusal names: its messages read `field: reason`.
fn refused_field(message: &str) -> Option<&str> {
    let (field, _) = message.split_once(": ")?;
    (!field.is_empty() && !field.contains(' ')).then_some(field)
}

/// Fields of the envelope a size refusal may name; any other
/// RESOURCE_EXHAUSTED (a quota, a full disk) passes and is tried again.
const ENVELOPE_FIELDS: [&str; 7] = [
    "to",
    "attachments",
    "header",
    "envelope",
    "response_for",
    "business_refs",
    "subject",
];

/// A hub refusal that sending again will not change, or how long to wait.
fn final_refusal(status: &tonic::Status) -> Result<(), Pending> {
    use tonic::Code;
    match status.code() {
        Code::InvalidArgument
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::NotFound
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::Unauthenticated => Ok(()),
        Code::ResourceExhausted => {
            if let Some(seconds) = status
                .metadata()
                .get("retry-after")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<u64>().ok())
            {
                return Err(Pending {
                    reason: status.message().to_owned(),
                    retry_after: Some(Duration::from_secs(seconds)),
                });
            }
            let named = refused_field(status.message())
                .map(|field| field.split(['.', '[']).next().unwrap_or(field))
                .is_some_and(|field| ENVELOPE_FIELDS.contains(&field));
            if named {
                Ok(())
            } else {
                Err(Pending::new(status.message()))
            }
        }
        _ => Err(Pending::new(format!(
            "{} ({:?})",
            status.message(),
            status.code()
        ))),
    }
}

fn hub_refusal(
    entry: &str,
    kind: &str,
    status: &tonic::Status,
    element: impl Fn(&str) -> String,
) -> serde_json::Value {
    let element = refused_field(status.message())
        .map(&element)
        .unwrap_or_else(|| "edXML".to_owned());
    let problem = Problem::error(
        element.clone(),
        category_for(status.code()),
        format!("{}: {element}", vietnamese_for(status.code())),
        status.message(),
    );
    json!({
        "entry": entry,
        "kind": kind,
        "refused_by": "hub",
        "code": format!("{:?}", status.code()),
        "grpc_code": status.code() as i32,
        "problems": problems_json(&[problem]),
    })
}

impl Worker {
    /// One look at the folder: finish recorded outcomes, claim new entries,
    /// and process every claimed one in name order. A pending entry stops
    /// the look, so entries keep their order.
    async fn scan(&mut self) -> Result<(), Pending> {
        let folder = self.outbox.folder.clone();
        for dir in [
            folder.join(SENT_FOLDER),
            folder.join(FAILED_FOLDER),
            self.outbox.processing(),
            self.outbox.done(),
        ] {
            tokio::fs::create_dir_all(&dir).await.map_err(io)?;
        }
        for name in list_names(&self.outbox.done()).await.map_err(io)? {
            if let Some(entry) = name.strip_suffix(".json") {
                if !entry.starts_with('.') {
                    self.finish(entry).await?;
                }
            }
        }
        let mut claimed = 0;
        for name in list_names(&folder).await.map_err(io)? {
            if claimed >= self.outbox.claims_per_scan_max {
                break;
            }
            if !eligible(&name) {
                continue;
            }
            let target = self.outbox.processing().join(&name);
            if tokio::fs::try_exists(&target).await.map_err(io)? {
                // The same name is still being processed: it waits its turn.
                continue;
            }
            tokio::fs::rename(folder.join(&name), &target)
                .await
                .map_err(io)?;
            claimed += 1;
        }
        if claimed > 0 {
            sync_dir(&self.outbox.processing()).await.map_err(io)?;
            sync_dir(&folder).await.map_err(io)?;
        }
        for name in list_names(&self.outbox.processing()).await.map_err(io)? {
            self.process(&name).await?;
        }
        Ok(())
    }

    async fn client(&mut self) -> Result<AxisClient, Pending> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let client = AxisClient::connect_hubs(
            &self.node.hubs,
            &self.node.roots,
            self.node.credentials.clone(),
        )
        .await
        .map_err(|error| Pending::new(error.to_string()))?;
        self.client = Some(client.clone());
        Ok(client)
    }

    async fn process(&mut self, name: &str) -> Result<(), Pending> {
        let path = self.outbox.processing().join(name);
        let context = CheckContext {
            today: today_in_vietnam()?,
            sender: Some(self.own_code),
            limits: self.outbox.limits.clone(),
            edxml_limits: self.outbox.edxml_limits.clone(),
        };
        let own = self.own.clone();
        let read = tokio::task::spawn_blocking(move || {
            truc_edxml::read_entry(&path, &context, Some(&own))
        })
        .await
        .map_err(|error| Pending::new(format!("checking the entry stopped: {error}")))?;
        let record = match read {
            Err(Refused(problems)) => Record {
                destination: FAILED_FOLDER.into(),
                final_name: String::new(),
                document_id: String::new(),
                body: json!({
                    "entry": name,
                    "refused_by": "node",
                    "code": "InvalidArgument",
                    "grpc_code": tonic::Code::InvalidArgument as i32,
                    "problems": problems_json(&problems),
                }),
            },
            Ok(Checked {
                entry:
                    Entry::Document {
                        package,
                        sign_document,
                    },
                warnings,
            }) => {
                self.send_document(name, &package, sign_document, &warnings)
                    .await?
            }
            Ok(Checked {
                entry: Entry::Status(status),
                warnings,
            }) => self.move_status(name, &status, &warnings).await?,
        };
        self.commit(name, record).await
    }

    async fn send_document(
        &mut self,
        name: &str,
        package: &Package,
        sign_document: bool,
        warnings: &[Problem],
    ) -> Result<Record, Pending> {
        let parts = truc_edxml::to_envelope(package);
        let client = self.client().await?;
        let prepared =
            Prepared::from_envelope_parts(parts, sign_document, client.credentials(), &self.key)
                .map_err(|error| Pending::new(error.to_string()))?;
        let document_id = prepared.document_id.clone();
        match client.send_prepared(prepared).await {
            Ok(response) => {
                let recipients: Vec<serde_json::Value> = response
                    .recipients
                    .iter()
                    .map(|recipient| {
                        let index = package
                            .header
                            .to
                            .iter()
                            .position(|to| to.organ_id == recipient.organ_id);
                        json!({
                            "organ_id": recipient.organ_id,
                            "accepted": recipient.accepted,
                            "reason": recipient.reason,
                            "element": index.map(|at| format!("MessageHeader/To[{}]/OrganId", at + 1)),
                        })
                    })
                    .collect();
                Ok(Record {
                    destination: SENT_FOLDER.into(),
                    final_name: String::new(),
                    document_id: response.document_id.clone(),
                    body: json!({
                        "entry": name,
                        "kind": "document",
                        "document_id": response.document_id,
                        "accepted_at_unix_ms": response.accepted_at_unix_ms,
                        "accepted_at": truc_edxml::status::vietnam_timestamp(response.accepted_at_unix_ms),
                        "duplicate": response.duplicate,
                        "resumed_after_restart": self.resumed.contains(name),
                        "document_signature": response.document_signature.as_str_name(),
                        "recipients": recipients,
                        "warnings": problems_json(warnings),
                    }),
                })
            }
            Err(ClientError::Refused(status)) => {
                final_refusal(&status)?;
                Ok(Record {
                    destination: FAILED_FOLDER.into(),
                    final_name: String::new(),
                    document_id,
                    body: hub_refusal(name, "document", &status, |field| {
                        element_for_field(field, package)
                    }),
                })
            }
            Err(other) => Err(Pending::new(other.to_string())),
        }
    }

    async fn move_status(
        &mut self,
        name: &str,
        status: &StatusMessage,
        warnings: &[Problem],
    ) -> Result<Record, Pending> {
        let Some(moved) = status_move(status) else {
            return Ok(Record {
                destination: FAILED_FOLDER.into(),
                final_name: String::new(),
                document_id: status.response_for.document_id.clone(),
                body: json!({"entry": name, "kind": "status", "refused_by": "node", "code": "InvalidArgument",
                    "grpc_code": tonic::Code::InvalidArgument as i32,
                    "problems": problems_json(&[Problem::error("MessageHeader/StatusCode", Category::Format,
                        "Mã trạng thái không hợp lệ", "is not a status a recipient reports")])}),
            });
        };
        let client = self.client().await?;
        let recipient = (moved.recipient != self.own).then_some(moved.recipient.as_str());
        let sent = |entry: &StatusEntry, already: bool| Record {
            destination: SENT_FOLDER.into(),
            final_name: String::new(),
            document_id: moved.document_id.clone(),
            body: json!({
                "entry": name,
                "kind": "status",
                "document_id": moved.document_id,
                "recipient": moved.recipient,
                "status": format!("{:02}", entry.status.code()),
                "at_unix_ms": entry.at_unix_ms,
                "at": truc_edxml::status::vietnam_timestamp(entry.at_unix_ms),
                "actor": entry.actor,
                "reason": entry.reason,
                "already_recorded": already,
                "warnings": problems_json(warnings),
            }),
        };
        // Arrival is the node's acknowledgement; an agency's system that
        // reports it too is told when it was recorded.
        if moved.status == Status::Arrived {
            let recorded = self
                .recorded(&client, &moved.document_id, &moved.recipient, 1, None)
                .await?;
            return Ok(match recorded {
                Some(entry) => sent(&entry, true),
                None => Record {
                    destination: FAILED_FOLDER.into(),
                    final_name: String::new(),
                    document_id: moved.document_id.clone(),
                    body: json!({"entry": name, "kind": "status", "refused_by": "node", "code": "FailedPrecondition",
                        "grpc_code": tonic::Code::FailedPrecondition as i32,
                        "problems": problems_json(&[Problem::error("MessageHeader/StatusCode", Category::Form,
                            "01 (đã đến) do nút ghi khi văn bản vào hộp thư đến; văn bản này chưa đến",
                            "01 (arrived) is recorded by the node when the document is written into its inbox; this delivery has not arrived")])}),
                },
            });
        }
        match client
            .move_status(&moved.document_id, recipient, moved.status, &moved.reason)
            .await
        {
            Ok(entry) => Ok(sent(&entry, false)),
            Err(ClientError::Refused(refusal)) => {
                final_refusal(&refusal)?;
                // The same status dropped again, or sent before a crash:
                // the entry already recorded is the answer.
                if refusal.code() == tonic::Code::FailedPrecondition {
                    if let Some(entry) = self
                        .recorded(
                            &client,
                            &moved.document_id,
                            &moved.recipient,
                            moved.status.code(),
                            Some(&moved.reason),
                        )
                        .await?
                    {
                        return Ok(sent(&entry, true));
                    }
                }
                Ok(Record {
                    destination: FAILED_FOLDER.into(),
                    final_name: String::new(),
                    document_id: moved.document_id.clone(),
                    body: hub_refusal(name, "status", &refusal, status_element_for_field),
                })
            }
            Err(other) => Err(Pending::new(other.to_string())),
        }
    }

    /// The entry with `code` (and `reason`, if given) on a delivery whose
    /// current state it is, or for arrivals anywhere in its history.
    async fn recorded(
        &self,
        client: &AxisClient,
        document_id: &str,
        recipient: &str,
        code: u32,
        reason: Option<&str>,
    ) -> Result<Option<StatusEntry>, Pending> {
        let response = match client.get_status(document_id).await {
            Ok(response) => response,
            Err(ClientError::Refused(status)) if final_refusal(&status).is_ok() => return Ok(None),
            Err(other) => return Err(Pending::new(other.to_string())),
        };
        let Some(row) = response
            .recipients
            .iter()
            .find(|row| row.recipient == recipient)
        else {
            return Ok(None);
        };
        let current = u32::try_from(row.current.code()).ok();
        if reason.is_some() && current != Some(code) {
            return Ok(None);
        }
        Ok(row
            .history
            .iter()
            .rev()
            .find(|entry| {
                u32::try_from(entry.status.code()).ok() == Some(code)
                    && reason.is_none_or(|reason| entry.reason == reason)
            })
            .cloned())
    }

    /// Records the outcome, then moves the entry and writes its file.
    async fn commit(&mut self, name: &str, mut record: Record) -> Result<(), Pending> {
        let destination = self.outbox.folder.join(&record.destination);
        let suffix = if record.destination == SENT_FOLDER {
            RECEIPT_SUFFIX
        } else {
            REFUSAL_SUFFIX
        };
        record.final_name = unique_name(&destination, name, suffix).await?;
        let bytes = serde_json::to_vec_pretty(&record).map_err(io)?;
        let done = self.outbox.done();
        write_atomically(&done, &done.join(format!("{name}.json")), &bytes)
            .await
            .map_err(io)?;
        self.finish(name).await
    }

    /// Carries out a recorded outcome; each step may already be done.
    async fn finish(&mut self, name: &str) -> Result<(), Pending> {
        let done = self.outbox.done();
        let record_path = done.join(format!("{name}.json"));
        let bytes = tokio::fs::read(&record_path).await.map_err(io)?;
        let Ok(record) = serde_json::from_slice::<Record>(&bytes) else {
            // Only ever written whole (hidden name, then rename).
            return Err(io(format!("{} is unreadable", record_path.display())));
        };
        let destination = self.outbox.folder.join(&record.destination);
        let claimed = self.outbox.processing().join(name);
        let target = destination.join(&record.final_name);
        if tokio::fs::try_exists(&claimed).await.map_err(io)? {
            tokio::fs::rename(&claimed, &target).await.map_err(io)?;
        }
        let sent = record.destination == SENT_FOLDER;
        let file = destination.join(format!(
            "{}{}",
            record.final_name,
            if sent { RECEIPT_SUFFIX } else { REFUSAL_SUFFIX }
        ));
        let body = serde_json::to_vec_pretty(&record.body).map_err(io)?;
        write_atomically(&destination, &file, &body)
            .await
            .map_err(io)?;
        sync_dir(&self.outbox.processing()).await.map_err(io)?;
        tokio::fs::remove_file(&record_path).await.map_err(io)?;
        sync_dir(&done).await.map_err(io)?;
        self.resumed.remove(name);
        let event = if sent {
            tracing::info!(entry = %name, document_id = %record.document_id, "outbox entry sent");
            OutboxEvent::Sent {
                entry: name.to_owned(),
                document_id: record.document_id.clone(),
                receipt: file,
            }
        } else {
            let summary = record.body["problems"][0]["element"]
                .as_str()
                .map(|element| {
                    format!(
                        "{element}: {}",
                        record.body["problems"][0]["reason_en"]
                            .as_str()
                            .unwrap_or_default()
                    )
                })
                .unwrap_or_default();
            tracing::warn!(entry = %name, %summary, "outbox entry refused");
            OutboxEvent::Failed {
                entry: name.to_owned(),
                refusal: file,
                summary,
            }
        };
        if let Some(events) = &self.node.events {
            let _ = events.send(NodeEvent::Outbox(event)).await;
        }
        Ok(())
    }
}

/// `name`, or `stem-2.ext`, `stem-3.ext`… when `name` or its file is taken.
async fn unique_name(folder: &Path, name: &str, suffix: &str) -> Result<String, Pending> {
    let taken = |candidate: &str| {
        let entry = folder.join(candidate);
        let file = folder.join(format!("{candidate}{suffix}"));
        async move {
            Ok::<bool, Pending>(
                tokio::fs::try_exists(&entry).await.map_err(io)?
                    || tokio::fs::try_exists(&file).await.map_err(io)?,
            )
        }
    };
    if !taken(name).await? {
        return Ok(name.to_owned());
    }
    let (stem, extension) = match name.rsplit_once('.') {
        Some((stem, extension)) if !stem.is_empty() => (stem, format!(".{extension}")),
        _ => (name, String::new()),
    };
    for number in 2..UNIQUE_NAME_TRIES_MAX {
        let candidate = format!("{stem}-{number}{extension}");
        if !taken(&candidate).await? {
            return Ok(candidate);
        }
    }
    Err(io(format!(
        "no free name for {name} in {}",
        folder.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_still_being_written_are_left_alone() {
        for name in ["a.edxml", "văn bản 1", "status.json"] {
            assert!(eligible(name), "{name}");
        }
        for name in [
            ".a.edxml",
            "a.edxml.tmp",
            "a.part",
            "sent",
            "failed",
            ".truc",
        ] {
            assert!(!eligible(name), "{name}");
        }
    }

    #[test]
    fn refusals_are_final_or_tried_again() {
        assert!(final_refusal(&tonic::Status::invalid_argument("subject: is required")).is_ok());
        assert!(final_refusal(&tonic::Status::unavailable("hub stopping")).is_err());
        assert!(final_refusal(&tonic::Status::resource_exhausted(
            "attachments: more than 100"
        ))
        .is_ok());
        let mut quota = tonic::Status::resource_exhausted("sender: backlog; retry after 5 s");
        quota
            .metadata_mut()
            .insert("retry-after", "5".parse().unwrap());
        assert_eq!(
            final_refusal(&quota).unwrap_err().retry_after,
            Some(Duration::from_secs(5))
        );
        assert!(final_refusal(&tonic::Status::resource_exhausted(
            "the disk filled up while storing this document's bytes"
        ))
        .is_err());
        assert_eq!(
            refused_field("to[1].organ_id: not registered"),
            Some("to[1].organ_id")
        );
        assert_eq!(refused_field("the disk filled up: x"), None);
    }
}

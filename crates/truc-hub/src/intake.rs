//! Intake of one send: check the envelope, stream the attachments into the
//! store while hashing them, and accept the document durably.

use ring::digest::{Context, SHA256};
use tokio_stream::StreamExt;
use tonic::Streaming;
use truc_domain::{Addressee, AgencyCode, BusinessType, DocumentDate, Header};
use truc_proto::v1 as pb;
use truc_store::{
    AcceptOutcome, AcceptPlan, AttachmentRef, BusinessEffect, BusinessOutcome, BusinessRequest,
    DocumentRecord, DocumentSignatureState, PendingBlob, RefusedRecipient,
};

use crate::convert::{raw_header, signature_state};
use crate::error::HubError;
use crate::Hub;

pub(crate) fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Attachments uploaded so far. Large ones are in the payload log as they
/// arrive; if the send fails, or its document turns out stored already,
/// nothing names them and their space is given back.
struct Uploads<'a> {
    hub: &'a Hub,
    /// Uploads whose size and digest checked out.
    complete: Vec<PendingBlob>,
    /// Every extent appended for this send.
    streamed: Vec<truc_store::Extent>,
    /// Set once a stored document names them.
    kept: bool,
}

impl Drop for Uploads<'_> {
    fn drop(&mut self) {
        if !self.kept && !self.streamed.is_empty() {
            self.hub.store.discard_chunks(&self.streamed);
        }
    }
}

pub(crate) async fn send(
    hub: &Hub,
    sender: AgencyCode,
    sender_certificate: Vec<u8>,
    public_key: truc_domain::PublicKey,
    mut stream: Streaming<pb::SendRequest>,
) -> Result<pb::SendResponse, HubError> {
    let envelope = first_envelope(&mut stream).await?;
    let header = verified_header(hub, sender, &public_key, &envelope)?;
    let document_id = header.document_id.to_string();
    let content_sha256 = sha256(&envelope.header);
    if let Some(answer) = earlier_answer(hub, &document_id, content_sha256)? {
        return Ok(answer);
    }
    let mut plan = AcceptPlan::default();
    let (recipients, refused) = route(hub, sender, &header, &mut plan)?;

    let document_signature_state = match &envelope.document_signature {
        None => DocumentSignatureState::Absent,
        Some(signature) => check_document_signature(hub, &document_id, &header, signature),
    };

    // Before any attachment byte is taken, so that a full disk refuses the
    // send whole; the writer asks again before storing it.
    match hub.store.check_room() {
        Err(error @ truc_store::StoreError::StorageFull { .. }) => return Err(error.into()),
        Err(error) => tracing::warn!(%error, "cannot check the free space"),
        Ok(()) => {}
    }

    let mut uploads = Uploads {
        hub,
        complete: Vec::new(),
        streamed: Vec::new(),
        kept: false,
    };
    receive_attachments(hub, &header, &mut stream, &mut uploads).await?;
    check_queued_quota(hub, sender).await?;

    let record = DocumentRecord {
        document_id: document_id.clone(),
        sender: sender.to_string(),
        date_key: header.document_id.date().ordinal_key(),
        subject: header.subject.clone(),
        header_bytes: envelope.header,
        signature: envelope.signature,
        sender_certificate,
        document_signature: envelope
            .document_signature
            .map(|s| (s.signer_certificate, s.signature)),
        document_signature_state,
        content_sha256,
        accepted_at_unix_ms: hub.watch.clock.now_unix_ms(),
        recipients,
        refused,
        attachments: header
            .attachments
            .iter()
            .map(|a| AttachmentRef {
                sha256: a.sha256,
                size_bytes: a.size_bytes,
            })
            .collect(),
    };
    let due_date = header.due_date.map(|date| date.iso());
    let deadlines = hub
        .watch
        .accept_deadlines(record.accepted_at_unix_ms, due_date.as_deref());
    let (outcome, business) = hub
        .store
        .accept_watched(
            record,
            std::mem::take(&mut uploads.complete),
            plan,
            deadlines,
        )
        .await?;
    Ok(match outcome {
        AcceptOutcome::Accepted(record) => {
            uploads.kept = true;
            tracing::debug!(document_id = %record.document_id, recipients = record.recipients.len(), "accepted");
            note_queued(hub, sender, record.recipients.len());
            with_business_outcomes(response(&record, false), &business)
        }
        AcceptOutcome::Duplicate(original) => response(&original, true),
        AcceptOutcome::Archived(archived) => archived_response(&archived),
    })
}

/// The send's first message, which must be the envelope.
async fn first_envelope(
    stream: &mut Streaming<pb::SendRequest>,
) -> Result<pb::SignedEnvelope, HubError> {
    match stream.next().await {
        Some(Ok(pb::SendRequest {
            part: Some(pb::send_request::Part::Envelope(envelope)),
        })) => Ok(envelope),
        Some(Ok(_)) => Err(HubError::invalid(
            "envelope",
            "the first message of a send must be the envelope",
        )),
        // Over the message limit is a size limit, as it is for a chunk.
        Some(Err(status)) if status.code() == tonic::Code::OutOfRange => Err(HubError::TooLarge {
            field: "envelope".into(),
            reason: status.message().to_owned(),
        }),
        Some(Err(status)) => Err(HubError::invalid("envelope", status.message().to_owned())),
        None => Err(HubError::invalid(
            "envelope",
            "the send carried no envelope",
        )),
    }
}

/// The envelope's header, once its size, the sender's signature over its
/// bytes, every field and the sender named in it are checked.
fn verified_header(
    hub: &Hub,
    sender: AgencyCode,
    public_key: &truc_domain::PublicKey,
    envelope: &pb::SignedEnvelope,
) -> Result<Header, HubError> {
    let limits = &hub.limits;
    if envelope.header.len() > limits.header_bytes_max {
        return Err(HubError::TooLarge {
            field: "envelope.header".into(),
            reason: format!(
                "{} bytes is more than the limit of {} bytes",
                envelope.header.len(),
                limits.header_bytes_max
            ),
        });
    }
    if envelope.signature.is_empty() {
        return Err(HubError::Unauthenticated {
            field: "envelope.signature".into(),
            reason: "is missing; every envelope must be signed by its sender".into(),
        });
    }
    truc_domain::verify_envelope(public_key, &envelope.header, &envelope.signature).map_err(
        |error| HubError::Unauthenticated {
            field: "envelope.signature".into(),
            reason: format!("{error} ({sender})"),
        },
    )?;
    let wire_header: pb::EnvelopeHeader = prost::Message::decode(envelope.header.as_slice())
        .map_err(|error| {
            HubError::invalid("envelope.header", format!("not an EnvelopeHeader: {error}"))
        })?;
    let today = DocumentDate::vietnam_date_of_unix_ms(hub.watch.clock.now_unix_ms())
        .ok_or_else(|| HubError::invalid("clock", "the hub's clock is out of range"))?;
    let header = Header::validate(raw_header(wire_header), limits, today)?;
    if header.from.code != sender {
        return Err(HubError::denied(
            "from.organ_id",
            format!(
                "{} is not the sending agency; this connection's certificate is {sender}",
                header.from.code
            ),
        ));
    }
    Ok(header)
}

/// The answer to a resend: a document accepted before, live or archived,
/// gets its original acknowledgement without its attachments being read
/// again; another document under its id is refused.
fn earlier_answer(
    hub: &Hub,
    document_id: &str,
    content_sha256: [u8; 32],
) -> Result<Option<pb::SendResponse>, HubError> {
    if let Some(original) = hub.store.document(document_id)? {
        if original.content_sha256 == content_sha256 {
            return Ok(Some(response(&original, true)));
        }
        return Err(truc_store::StoreError::AlreadyExists {
            document_id: document_id.to_owned(),
            accepted_at_unix_ms: original.accepted_at_unix_ms,
        }
        .into());
    }
    // The duplicate index outlives the live store.
    if let Some(archived) = hub.store.archived(document_id)? {
        if archived.content_sha256 == content_sha256 {
            return Ok(Some(archived_response(&archived)));
        }
        return Err(truc_store::StoreError::AlreadyExists {
            document_id: document_id.to_owned(),
            accepted_at_unix_ms: archived.accepted_at_unix_ms,
        }
        .into());
    }
    Ok(None)
}

/// The recipients the directory routes to (whose queues a relay's node
/// holds go into `plan`) and those refused, with the business rules
/// applied; a document no recipient can receive is refused whole.
fn route(
    hub: &Hub,
    sender: AgencyCode,
    header: &Header,
    plan: &mut AcceptPlan,
) -> Result<(Vec<String>, Vec<RefusedRecipient>), HubError> {
    let mut recipients = Vec::new();
    let mut refused = Vec::new();
    let directory = hub.directory();
    for addressee in &header.to {
        match addressee {
            Addressee::Valid(organ) => {
                let route = directory.route(&organ.code);
                match (route.node(), route.refusal()) {
                    (Some(node), _) => {
                        let code = organ.code.to_string();
                        if node != organ.code {
                            plan.queue_owners.insert(code.clone(), node.to_string());
                        }
                        recipients.push(code);
                    }
                    (None, reason) => refused.push(RefusedRecipient {
                        organ_id: organ.code.to_string(),
                        reason: reason.unwrap_or_default(),
                    }),
                }
            }
            Addressee::Refused { organ_id, reason } => refused.push(RefusedRecipient {
                organ_id: organ_id.clone(),
                reason: reason.clone(),
            }),
        }
    }
    plan.business = check_business(hub, sender, header, &mut recipients, &mut refused)?;
    if recipients.is_empty() {
        let reasons: Vec<String> = refused
            .iter()
            // The organ id is as the client wrote it, perhaps ill-formed: quoted with escapes.
            .map(|r| format!("{:?}: {}", r.organ_id, r.reason))
            .collect();
        return Err(HubError::invalid(
            "to",
            format!(
                "no recipient can receive this document ({})",
                reasons.join("; ")
            ),
        ));
    }
    Ok((recipients, refused))
}

/// Refuses a send while the sender's deliveries already waiting in queues
/// reach `quotas.queued_deliveries_max`, so that one agency's backlog cannot
/// crowd out the others'.
///
/// Counting reads every waiting entry of the sender, so a count is reused
/// for `QUEUED_COUNT_FRESH` and made off the async threads: a sender with a
/// large backlog would otherwise pay for it on every send. Sends are added
/// to the count as they are accepted and acknowledgements are seen at the
/// next count, so a refusal may outlast the backlog by at most that time.
async fn check_queued_quota(hub: &Hub, sender: AgencyCode) -> Result<(), HubError> {
    let max = hub.watch.quotas.queued_deliveries_max;
    if max == u64::MAX {
        return Ok(());
    }
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    let cached = hub
        .queued_counts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&sender)
        .filter(|(at, _)| at.elapsed() < QUEUED_COUNT_FRESH)
        .map(|(_, count)| *count);
    let queued = match cached {
        Some(count) => count,
        None => {
            let store = hub.store.clone();
            let count =
                crate::error::blocking("counting the sender's queued deliveries", move || {
                    store.pending_sends(&sender.to_string(), max)
                })
                .await??;
            hub.queued_counts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(sender, (std::time::Instant::now(), count));
            count
        }
    };
    if queued >= max {
        return Err(HubError::Exhausted {
            field: "sender".into(),
            reason: format!(
                "{sender} has {queued} deliveries waiting unacknowledged; at most {max}"
            ),
            retry_after_seconds: hub.watch.quotas.retry_after_seconds,
        });
    }
    Ok(())
}

/// Adds what a send just queued to the sender's reused count, so that the
/// count can only be high between recounts (acknowledgements are not seen):
/// the quota refuses early rather than late.
fn note_queued(hub: &Hub, sender: AgencyCode, deliveries: usize) {
    if let Some((_, count)) = hub
        .queued_counts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_mut(&sender)
    {
        *count += deliveries;
    }
}

/// How long a sender's count of waiting deliveries is reused.
const QUEUED_COUNT_FRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// Checks a recall, update or replace before anything is read or written:
/// every earlier document it names exists and was sent by this sender. A
/// recall goes only to recipients of the documents it recalls.
fn check_business(
    hub: &Hub,
    sender: AgencyCode,
    header: &Header,
    recipients: &mut Vec<String>,
    refused: &mut Vec<RefusedRecipient>,
) -> Result<Option<BusinessRequest>, HubError> {
    if header.business_type == BusinessType::New {
        return Ok(None);
    }
    let mut earlier_recipients = std::collections::BTreeSet::new();
    for (index, reference) in header.business_refs.iter().enumerate() {
        let field = format!("business_refs[{index}]");
        if reference.sender() != sender {
            return Err(HubError::denied(
                field,
                format!(
                    "{reference} was sent by {}; only its sender may recall, update or replace it",
                    reference.sender()
                ),
            ));
        }
        if *reference == header.document_id {
            return Err(HubError::invalid(
                field,
                "a document cannot recall, update or replace itself",
            ));
        }
        let Some(earlier) = hub.store.document(&reference.to_string())? else {
            // Every delivery of an archived document was final: none can be
            // asked to give it back or to take another in its place.
            if let Some(archived) = hub.store.archived(&reference.to_string())? {
                return Err(HubError::Precondition {
                    field,
                    reason: format!(
                        "{reference} left the live store for archive {} once every delivery \
                         was final; it can no longer be recalled, updated or replaced",
                        archived.archive
                    ),
                });
            }
            return Err(HubError::not_found(
                field,
                format!("{reference} is not on the axis"),
            ));
        };
        earlier_recipients.extend(earlier.recipients);
    }
    if header.business_type == BusinessType::Revoke {
        recipients.retain(|recipient| {
            let known = earlier_recipients.contains(recipient);
            if !known {
                refused.push(RefusedRecipient {
                    organ_id: recipient.clone(),
                    reason: "not a recipient of the document recalled".into(),
                });
            }
            known
        });
    }
    Ok(Some(BusinessRequest {
        business_type: header.business_type.code(),
        references: header
            .business_refs
            .iter()
            .map(ToString::to_string)
            .collect(),
    }))
}

/// Says, per recipient, what a recall, update or replace did to its earlier delivery.
fn with_business_outcomes(
    mut response: pb::SendResponse,
    outcomes: &[BusinessOutcome],
) -> pb::SendResponse {
    for outcome in outcomes {
        let said = match &outcome.effect {
            BusinessEffect::Withdrawn => format!(
                "{}: withdrawn at once (not yet fetched; nothing was delivered)",
                outcome.reference
            ),
            BusinessEffect::Requested => format!(
                "{}: held by the recipient, asked to agree (15) or refuse (16)",
                outcome.reference
            ),
            BusinessEffect::Unchanged { reason } => {
                format!("{}: unchanged ({reason})", outcome.reference)
            }
        };
        match response
            .recipients
            .iter_mut()
            .find(|r| r.accepted && r.organ_id == outcome.recipient)
        {
            Some(row) if row.reason.is_empty() => row.reason = said,
            Some(row) => {
                row.reason.push_str("; ");
                row.reason.push_str(&said);
            }
            // A recall is not delivered to a recipient it withdrew the document from.
            None => response.recipients.push(pb::RecipientOutcome {
                organ_id: outcome.recipient.clone(),
                accepted: true,
                reason: said,
            }),
        }
    }
    response
}

fn check_document_signature(
    hub: &Hub,
    document_id: &str,
    header: &Header,
    signature: &pb::DocumentSignature,
) -> DocumentSignatureState {
    let verified = hub
        .trust
        .verify_certificate(&signature.signer_certificate, std::time::SystemTime::now())
        .ok()
        .and_then(|_| truc_pki::certificate_public_key(&signature.signer_certificate).ok())
        .is_some_and(|key| {
            truc_domain::verify_document(
                &key,
                document_id,
                &header.attachment_digests(),
                &signature.signature,
            )
            .is_ok()
        });
    if verified {
        DocumentSignatureState::Valid
    } else {
        DocumentSignatureState::Invalid
    }
}

/// Reads every attachment's chunks in header order, storing each blob once by
/// digest, and checks sizes and digests.
async fn receive_attachments(
    hub: &Hub,
    header: &Header,
    stream: &mut Streaming<pb::SendRequest>,
    uploads: &mut Uploads<'_>,
) -> Result<(), HubError> {
    let limits = &hub.limits;
    let mut current: Option<AttachmentInProgress> = None;
    let mut next_index = 0usize;
    loop {
        let message = stream.next().await;
        let chunk = match message {
            None => None,
            Some(Ok(pb::SendRequest {
                part: Some(pb::send_request::Part::Chunk(chunk)),
            })) => Some(chunk),
            Some(Ok(_)) => {
                return Err(HubError::invalid(
                    "chunk",
                    "only attachment chunks may follow the envelope",
                ))
            }
            Some(Err(status)) => {
                let reason = status.message().to_owned();
                return Err(
                    if status.code() == tonic::Code::OutOfRange
                        || reason.contains("message length too large")
                    {
                        HubError::TooLarge {
                            field: "chunk".into(),
                            reason,
                        }
                    } else {
                        HubError::invalid("chunk", reason)
                    },
                );
            }
        };
        let starts_new = match (&current, &chunk) {
            (Some(open), Some(chunk)) => chunk.index as usize != open.index,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        if starts_new || chunk.is_none() {
            if let Some(open) = current.take() {
                uploads.complete.extend(open.finish(header)?);
            }
        }
        let Some(chunk) = chunk else { break };
        if chunk.data.len() > limits.chunk_bytes_max {
            return Err(HubError::TooLarge {
                field: "chunk.data".into(),
                reason: format!("a chunk may carry at most {} bytes", limits.chunk_bytes_max),
            });
        }
        if starts_new {
            if chunk.index as usize != next_index {
                return Err(HubError::invalid(
                    "chunk.index",
                    format!(
                        "expected attachment {next_index}, got {}; attachments are sent in order",
                        chunk.index
                    ),
                ));
            }
            if next_index >= header.attachments.len() {
                return Err(HubError::invalid(
                    "chunk.index",
                    format!("the header lists {} attachments", header.attachments.len()),
                ));
            }
            let meta = &header.attachments[next_index];
            let already_stored = hub.store.blob(&meta.sha256)?.is_some();
            let kept = if already_stored {
                Kept::Nothing
            } else if meta.size_bytes <= truc_store::CARRIED_ATTACHMENT_BYTES_MAX {
                Kept::Inline(Vec::with_capacity(meta.size_bytes as usize))
            } else {
                Kept::Extents(Vec::new())
            };
            current = Some(AttachmentInProgress {
                index: next_index,
                digest: Context::new(&SHA256),
                bytes: 0,
                kept,
            });
            next_index += 1;
        }
        let open = current.as_mut().expect("an attachment is open");
        let meta = &header.attachments[open.index];
        open.bytes += chunk.data.len() as u64;
        if open.bytes > meta.size_bytes {
            let field = format!("attachments[{}].size_bytes", open.index);
            return Err(HubError::invalid(
                field,
                format!("more bytes arrived than the {} declared", meta.size_bytes),
            ));
        }
        open.digest.update(&chunk.data);
        match &mut open.kept {
            Kept::Nothing => {}
            Kept::Inline(bytes) => bytes.extend_from_slice(&chunk.data),
            Kept::Extents(extents) => {
                let extent = hub.store.put_chunk(&chunk.data)?;
                uploads.streamed.push(extent);
                extents.push(extent);
            }
        }
    }
    if next_index != header.attachments.len() {
        let field = format!("attachments[{next_index}]");
        return Err(HubError::invalid(
            field,
            "the stream ended before this attachment's bytes",
        ));
    }
    Ok(())
}

struct AttachmentInProgress {
    index: usize,
    digest: Context,
    bytes: u64,
    kept: Kept,
}

/// What a send keeps of an attachment's bytes.
enum Kept {
    /// The same bytes are stored already.
    Nothing,
    /// Small: held for the writer, which carries them in the journal.
    Inline(Vec<u8>),
    /// Large: streamed into the payload log as they arrive.
    Extents(Vec<truc_store::Extent>),
}

impl AttachmentInProgress {
    fn finish(self, header: &Header) -> Result<Option<PendingBlob>, HubError> {
        let meta = &header.attachments[self.index];
        if self.bytes != meta.size_bytes {
            return Err(HubError::invalid(
                format!("attachments[{}].size_bytes", self.index),
                format!("{} bytes arrived, {} declared", self.bytes, meta.size_bytes),
            ));
        }
        if self.digest.finish().as_ref() != meta.sha256 {
            return Err(HubError::invalid(
                format!("attachments[{}].sha256", self.index),
                "the bytes do not match the declared digest",
            ));
        }
        let (extents, inline) = match self.kept {
            Kept::Nothing => return Ok(None),
            Kept::Inline(bytes) => (Vec::new(), Some(bytes)),
            Kept::Extents(extents) => (extents, None),
        };
        Ok(Some(PendingBlob {
            sha256: meta.sha256,
            size_bytes: self.bytes,
            extents,
            inline,
        }))
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&SHA256, bytes).as_ref());
    out
}

/// The original acknowledgement of a document that left for an archive,
/// from what the duplicate index kept of it.
fn archived_response(archived: &truc_store::ArchivedDocument) -> pb::SendResponse {
    acknowledgement(
        &archived.document_id,
        &archived.recipients,
        &archived.refused,
        archived.document_signature_state,
        archived.accepted_at_unix_ms,
        true,
    )
}

pub(crate) fn response(record: &DocumentRecord, duplicate: bool) -> pb::SendResponse {
    acknowledgement(
        &record.document_id,
        &record.recipients,
        &record.refused,
        record.document_signature_state,
        record.accepted_at_unix_ms,
        duplicate,
    )
}

fn acknowledgement(
    document_id: &str,
    accepted: &[String],
    refused: &[RefusedRecipient],
    signature: DocumentSignatureState,
    accepted_at_unix_ms: i64,
    duplicate: bool,
) -> pb::SendResponse {
    let mut recipients: Vec<pb::RecipientOutcome> = accepted
        .iter()
        .map(|code| pb::RecipientOutcome {
            organ_id: code.clone(),
            accepted: true,
            reason: String::new(),
        })
        .collect();
    recipients.extend(refused.iter().map(|r| pb::RecipientOutcome {
        organ_id: r.organ_id.clone(),
        accepted: false,
        reason: r.reason.clone(),
    }));
    pb::SendResponse {
        document_id: document_id.to_owned(),
        recipients,
        duplicate,
        document_signature: signature_state(signature) as i32,
        accepted_at_unix_ms,
    }
}

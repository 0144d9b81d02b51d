//! The senders of a replay: each planned document signed and sent by its unit, in plan order
//! and at the plan's pace, with what it carries (its draft and its one attachment).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use truc_domain::views::SignatureState;
use truc_domain::SplitMix64;
use truc_node::compose::{Attachment, Draft};
use truc_node::ClientError;

use super::{retry_delay, Nodes, Pace, Shared, TRANSIENT_ATTEMPTS_MAX};
use crate::plan::{Plan, PlannedDocument};

/// The notation (ký hiệu) every replayed document carries: with the sender, date and the
/// plan's per-sender number it makes a unique document id.
pub const NOTATION: &str = "VP-TLT";

/// Sends every document in plan order, paced, with at most `send_concurrency` in flight.
pub(super) async fn dispatch(plan: Arc<Plan>, nodes: Nodes, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(shared.options.send_concurrency.max(1)));
    let started = tokio::time::Instant::now();
    let first_at = plan.documents.first().map(|d| d.at_unix_ms).unwrap_or(0);
    for index in 0..plan.documents.len() {
        let due = match shared.options.pace {
            Pace::Unpaced => None,
            Pace::DocumentsPerSecond(rate) => {
                Some(started + Duration::from_secs_f64(index as f64 / rate.max(1e-9)))
            }
            Pace::Speedup(factor) => {
                let historical_ms = (plan.documents[index].at_unix_ms - first_at).max(0);
                Some(
                    started
                        + Duration::from_secs_f64(historical_ms as f64 / 1000.0 / factor.max(1e-9)),
                )
            }
        };
        if let Some(due) = due {
            tokio::time::sleep_until(due).await;
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        if shared.failure().is_some() || *shared.stop.borrow() {
            return;
        }
        if let Some(clock) = &shared.options.clock {
            // The document's own time: it is accepted then, and ages from then.
            clock.advance_to(plan.documents[index].at_unix_ms);
        }
        let plan = plan.clone();
        let nodes = nodes.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let document = &plan.documents[index];
            match send_document(&plan, document, &nodes, &shared).await {
                Ok(()) => {
                    shared.sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => shared.fail(format!(
                    "sending document {} of {}: {error}",
                    document.seq, document.sender
                )),
            }
        });
    }
}

/// The one attachment of a document, `length` bytes that differ for every document (unless
/// too short to hold its header line), so every digest (and the hub's blob store) sees
/// distinct content.
pub fn attachment_bytes(plan_seed: u64, document: &PlannedDocument, length: u64) -> Vec<u8> {
    let length = usize::try_from(length).unwrap_or(usize::MAX);
    let mut bytes = Vec::with_capacity(length.min(ATTACHMENT_CAPACITY_MAX));
    bytes.extend_from_slice(
        format!(
            "%PDF-1.4\n% truc replay: document {} of {} dated {}, number {}/{NOTATION}\n",
            document.seq, document.sender, document.date, document.number
        )
        .as_bytes(),
    );
    let mut rng = SplitMix64::new(plan_seed ^ document.seq.rotate_left(17));
    while bytes.len() < length {
        bytes.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    bytes.truncate(length);
    bytes
}

/// Most bytes reserved up front for one attachment: sizes are parsed within the hub's
/// document limit, but a size that is not must not reserve memory it will never fill.
const ATTACHMENT_CAPACITY_MAX: usize = 64 << 20;

/// The draft of a planned document: its date and number, the fixed notation, the recipients.
pub fn draft_of(document: &PlannedDocument, sender_name: &str) -> Draft {
    Draft {
        from: document.sender.to_string(),
        from_name: sender_name.to_owned(),
        to: document
            .recipients
            .iter()
            .map(ToString::to_string)
            .collect(),
        number: document.number.to_string(),
        notation: NOTATION.to_owned(),
        place: "Việt Nam".into(),
        date: document.date.iso(),
        document_type: 1,
        document_type_name: "Công văn".into(),
        subject: format!(
            "Công văn số {}/{NOTATION} (bản phát lại số {})",
            document.number, document.seq
        ),
        page_count: 1,
        sign_document: document.document_signed,
        ..Draft::default()
    }
}

/// The wait a RESOURCE_EXHAUSTED refusal asks for in its `retry-after`
/// metadata (a hub's per-agency quotas), if it carries one.
fn quota_wait(error: &ClientError) -> Option<Duration> {
    let ClientError::Refused(status) = error else {
        return None;
    };
    if status.code() != tonic::Code::ResourceExhausted {
        return None;
    }
    let seconds: u64 = status
        .metadata()
        .get("retry-after")?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds.min(QUOTA_WAIT_MAX_SECONDS)))
}

/// A hub's quota hint longer than this is taken as this: a replay that
/// waits minutes for one agency measures nothing.
const QUOTA_WAIT_MAX_SECONDS: u64 = 30;

async fn send_document(
    plan: &Plan,
    document: &PlannedDocument,
    nodes: &Nodes,
    shared: &Shared,
) -> Result<(), String> {
    let node = &nodes[&document.sender.to_string()];
    let draft = draft_of(document, &node.name);
    let length = shared
        .options
        .attachment_sizes
        .size_of(plan.seed, document.seq);
    // Whole in memory while it is signed and sent (sends in flight × the mean size);
    // the node's client streams it in chunks.
    let attachment = Attachment::bytes(
        "van-ban.pdf",
        "application/pdf",
        attachment_bytes(plan.seed, document, length),
    );
    let mut attempt = 0;
    let response = loop {
        match node.client.send(&draft, vec![attachment.clone()]).await {
            Ok(response) => break response,
            // A quota refusal is not a failure: the hub says when to come back.
            Err(error) if quota_wait(&error).is_some() => {
                shared.send_retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(quota_wait(&error).unwrap_or_default()).await;
            }
            Err(error) if error.is_transient() && attempt < TRANSIENT_ATTEMPTS_MAX => {
                shared.send_retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(retry_delay(attempt)).await;
                attempt += 1;
            }
            Err(error) => return Err(error.to_string()),
        }
    };
    if let Some(refused) = response.recipients.iter().find(|r| !r.accepted) {
        return Err(format!(
            "the hub refused recipient {}: {}",
            refused.organ_id, refused.reason
        ));
    }
    if response.recipients.len() != document.recipients.len() {
        return Err(format!(
            "{} recipients accepted of {}",
            response.recipients.len(),
            document.recipients.len()
        ));
    }
    let expected_signature = if document.document_signed {
        SignatureState::Valid
    } else {
        SignatureState::Absent
    };
    if response.document_signature != expected_signature {
        return Err(format!(
            "document signature state {} where {} was expected",
            response.document_signature.code(),
            expected_signature.code()
        ));
    }
    shared.attachment_bytes.fetch_add(length, Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_differ_per_document_and_have_the_asked_size() {
        let plan = crate::plan::plan_2021(1, Some((1, 2000))).unwrap();
        let default = crate::attachments::ATTACHMENT_BYTES_DEFAULT;
        let first = attachment_bytes(plan.seed, &plan.documents[0], default);
        let second = attachment_bytes(plan.seed, &plan.documents[1], default);
        assert_eq!(first.len(), 320);
        assert_ne!(first, second);
        assert_eq!(first, attachment_bytes(plan.seed, &plan.documents[0], 320));
        // A longer one starts with the same bytes: the default replay's are unchanged.
        let long = attachment_bytes(plan.seed, &plan.documents[0], 100_000);
        assert_eq!(long.len(), 100_000);
        assert_eq!(long[..320], first[..]);
        assert!(attachment_bytes(plan.seed, &plan.documents[0], 0).is_empty());
    }
}

//! Acknowledging queue items: a delivery's acknowledgement takes its queue
//! item and records "arrived" (counted as received, told to the sender), a
//! notice's only takes the item. Each item is its own operation: one that
//! fails fails the command, but those before it stand.

use truc_domain::Status;

use super::{status_event, Notices, Op, Rules};
use crate::error::StoreError;
use crate::records::{QueueItem, StatusEntry, WatchRecord};
use crate::DeadlineKind;

#[derive(Debug, PartialEq, Eq)]
pub enum AckOutcome {
    /// A delivery arrived; the entry was recorded.
    Arrived(StatusEntry),
    NoticeDone,
    /// Nothing waits at that sequence number (already acknowledged), or the
    /// delivery's arrival was already recorded by the recipient's first move.
    AlreadyDone,
}

/// One acknowledged queue item: its outcome, and the delivery (document id,
/// recipient) it was, if it was one.
type Acked = (AckOutcome, Option<(String, String)>);

impl Rules<'_> {
    /// Acknowledges each item on its own, as if they had come in their own
    /// messages; each delivery that arrives now gets its "received"
    /// deadline, if one is given.
    pub(crate) fn ack_all(
        &mut self,
        agency: &str,
        queue_seqs: &[u64],
        at_unix_ms: i64,
        received_deadline_unix_ms: Option<i64>,
    ) -> Result<Vec<AckOutcome>, StoreError> {
        let mut notices = Notices::default();
        let mut outcomes = Vec::with_capacity(queue_seqs.len());
        let mut failure = None;
        for &queue_seq in queue_seqs {
            let mut op = self.begin();
            match self.stage_ack(&mut op, agency, queue_seq, at_unix_ms, &mut notices) {
                Ok((outcome, delivery)) => {
                    if let (
                        AckOutcome::Arrived(_),
                        Some((document_id, recipient)),
                        Some(deadline),
                    ) = (&outcome, delivery, received_deadline_unix_ms)
                    {
                        let sender = truc_domain::sender_of_id(&document_id).to_owned();
                        op.changes.watches.push(WatchRecord {
                            kind: DeadlineKind::Received,
                            deadline_unix_ms: deadline,
                            document_id,
                            recipient,
                            sender,
                        });
                    }
                    self.commit(op);
                    outcomes.push(outcome);
                }
                Err(error) => {
                    self.abandon(op);
                    failure = Some(error);
                    break;
                }
            }
        }
        self.queue_notices(notices);
        match failure {
            Some(error) => Err(error),
            None => Ok(outcomes),
        }
    }

    fn stage_ack(
        &mut self,
        op: &mut Op,
        agency: &str,
        queue_seq: u64,
        at_unix_ms: i64,
        notices: &mut Notices,
    ) -> Result<Acked, StoreError> {
        let Some(item) = self.queue_item(op, agency, queue_seq)? else {
            return Ok((AckOutcome::AlreadyDone, None));
        };
        op.changes
            .queue
            .insert((agency.to_owned(), queue_seq), None);
        match item {
            QueueItem::Notice { .. } | QueueItem::Notices { .. } => {
                Ok((AckOutcome::NoticeDone, None))
            }
            QueueItem::Delivery {
                document_id,
                recipient,
            } => {
                op.changes.backlog(&document_id, -1);
                let (mut slot, sender, date_key) =
                    self.read_delivery(op, &document_id, &recipient)?;
                let delivery = slot.delivery();
                if !delivery.history.is_empty() {
                    // The recipient's first move already recorded the arrival.
                    return Ok((AckOutcome::AlreadyDone, Some((document_id, recipient))));
                }
                let entry = StatusEntry {
                    code: Status::Arrived.code(),
                    at_unix_ms,
                    actor: agency.to_owned(),
                    reason: String::new(),
                };
                op.changes.count(&recipient, date_key, 0, 1);
                delivery.history.push(entry.clone());
                slot.stage(op);
                op.changes
                    .audit_events
                    .push(status_event(&document_id, &recipient, &entry));
                notices.add(&sender, &document_id, &recipient, entry.clone());
                Ok((AckOutcome::Arrived(entry), Some((document_id, recipient))))
            }
        }
    }
}

//! The writer's commands for watched deadlines, expiry and dead letters.
//! Each deadline is written into the time-ordered index in the same batch as
//! the event that sets it (acceptance, arrival), so the watcher reads only
//! what is due; operators' resends and cancels are recorded with their names.

use std::collections::BTreeSet;

use tokio::sync::oneshot;

use super::{
    AcceptOutcome, AcceptPlan, AckOutcome, Notices, Op, PendingBlob, PlannedAcceptResult, Writer,
};
use crate::audit::{AuditEvent, AuditKind};
use crate::error::StoreError;
use crate::keys;
use crate::records::{
    decode, encode, DeadLetterAction, DeadLetterRecord, DeadLetterState, DeadlineKind,
    DeliveryRecord, DocumentRecord, OverdueRecord, QueueItem, StatusEntry, WatchRecord,
};

/// Status code of the hub's notice that a deadline passed (never in a history).
pub const OVERDUE_CODE: u32 = 20;
/// Status code of the hub's notice that a delivery expired into a dead letter.
pub const EXPIRED_CODE: u32 = 21;
/// The actor of the hub's own notices.
pub const HUB_ACTOR: &str = "hub";

/// Absolute deadlines for each delivery of a newly accepted document
/// (`None`: not watched).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcceptDeadlines {
    pub arrived_unix_ms: Option<i64>,
    pub due_date_unix_ms: Option<i64>,
    pub expiry_unix_ms: Option<i64>,
}

/// What the watcher did with the deadlines it handed over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LapseOutcome {
    /// Met in time (or the delivery is gone): the watch was dropped.
    pub met: usize,
    pub overdue: Vec<OverdueRecord>,
    pub expired: Vec<DeadLetterRecord>,
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

// Moved once through the writer's channel, like `Command`: boxing would only
// add an allocation per command.
#[allow(clippy::large_enum_variant)]
pub(crate) enum WatchCommand {
    Accept {
        document: DocumentRecord,
        blobs: Vec<PendingBlob>,
        plan: AcceptPlan,
        deadlines: AcceptDeadlines,
        reply: oneshot::Sender<PlannedAcceptResult>,
    },
    Ack {
        agency: String,
        queue_seqs: Vec<u64>,
        at_unix_ms: i64,
        received_deadline_unix_ms: Option<i64>,
        reply: Reply<Vec<AckOutcome>>,
    },
    Lapse {
        /// Keys of due watch blocks; the writer reads them again.
        blocks: Vec<Vec<u8>>,
        at_unix_ms: i64,
        /// Why an expired delivery expired, for its dead letter and the sender.
        expiry_reason: String,
        reply: Reply<LapseOutcome>,
    },
    Resend {
        document_id: String,
        recipient: String,
        operator: String,
        at_unix_ms: i64,
        deadlines: AcceptDeadlines,
        reply: Reply<DeadLetterRecord>,
    },
    Cancel {
        document_id: String,
        recipient: String,
        operator: String,
        at_unix_ms: i64,
        reason: String,
        reply: Reply<DeadLetterRecord>,
    },
}

/// A reply held until its group is flushed: called with `None` to answer,
/// or with the write failure's message.
pub(crate) type WatchPending = Box<dyn FnOnce(Option<String>) + Send>;

fn hold<T: Send + 'static>(
    reply: oneshot::Sender<Result<T, StoreError>>,
    result: Result<T, StoreError>,
) -> WatchPending {
    Box::new(move |failure| {
        let _ = reply.send(match failure {
            None => result,
            Some(message) => Err(StoreError::Storage(sled::Error::Io(std::io::Error::other(
                message,
            )))),
        });
    })
}

impl WatchCommand {
    pub(crate) fn refuse(self, error: StoreError) {
        match self {
            WatchCommand::Accept { reply, .. } => drop(reply.send(Err(error))),
            WatchCommand::Ack { reply, .. } => drop(reply.send(Err(error))),
            WatchCommand::Lapse { reply, .. } => drop(reply.send(Err(error))),
            WatchCommand::Resend { reply, .. } | WatchCommand::Cancel { reply, .. } => {
                drop(reply.send(Err(error)))
            }
        }
    }
}

/// The audit event of an operator's action on a dead letter.
fn operator_event(
    kind: AuditKind,
    document_id: &str,
    recipient: &str,
    operator: &str,
    at_unix_ms: i64,
    reason: &str,
) -> AuditEvent {
    AuditEvent {
        kind,
        at_unix_ms,
        actor: operator.to_owned(),
        document_id: document_id.to_owned(),
        recipient: recipient.to_owned(),
        status: 0,
        reason: reason.to_owned(),
        signed_sha256: None,
        signature: Vec::new(),
        certificate_sha256: None,
    }
}

impl Writer {
    pub(crate) fn watch_command(
        &mut self,
        command: WatchCommand,
        woken: &mut BTreeSet<String>,
    ) -> WatchPending {
        match command {
            WatchCommand::Accept {
                document,
                blobs,
                plan,
                deadlines,
                reply,
            } => {
                let result = self.accept_planned(document, &blobs, &plan, woken);
                let result = match result {
                    Ok((AcceptOutcome::Accepted(record), outcomes)) => self
                        .stage_accept_watches(&record, deadlines)
                        .map(|()| (AcceptOutcome::Accepted(record), outcomes)),
                    other => other,
                };
                hold(reply, result)
            }
            WatchCommand::Ack {
                agency,
                queue_seqs,
                at_unix_ms,
                received_deadline_unix_ms,
                reply,
            } => {
                let result = self.ack_watched(
                    &agency,
                    &queue_seqs,
                    at_unix_ms,
                    received_deadline_unix_ms,
                    woken,
                );
                hold(reply, result)
            }
            WatchCommand::Lapse {
                blocks,
                at_unix_ms,
                expiry_reason,
                reply,
            } => {
                let result = self.lapse(blocks, at_unix_ms, &expiry_reason, woken);
                hold(reply, result)
            }
            WatchCommand::Resend {
                document_id,
                recipient,
                operator,
                at_unix_ms,
                deadlines,
                reply,
            } => {
                let mut op = self.begin();
                let result = self.stage_resend(
                    &mut op,
                    &document_id,
                    &recipient,
                    &operator,
                    at_unix_ms,
                    deadlines,
                );
                match &result {
                    Ok(letter) => {
                        woken.insert(letter.queue_owner.clone());
                        self.commit(op);
                    }
                    Err(_) => self.abandon(op),
                }
                hold(reply, result)
            }
            WatchCommand::Cancel {
                document_id,
                recipient,
                operator,
                at_unix_ms,
                reason,
                reply,
            } => {
                let mut op = self.begin();
                let result = self.stage_cancel(
                    &mut op,
                    &document_id,
                    &recipient,
                    &operator,
                    at_unix_ms,
                    &reason,
                );
                let result = match result {
                    Ok(letter) => {
                        self.commit(op);
                        let mut notices = Notices::default();
                        notices.add(
                            &letter.sender,
                            &document_id,
                            &recipient,
                            StatusEntry {
                                code: EXPIRED_CODE,
                                at_unix_ms,
                                actor: operator.clone(),
                                reason: format!(
                                    "dead letter cancelled by operator {operator}: {reason}"
                                ),
                            },
                        );
                        self.queue_notices(notices, woken);
                        Ok(letter)
                    }
                    Err(error) => {
                        self.abandon(op);
                        Err(error)
                    }
                };
                hold(reply, result)
            }
        }
    }

    /// The deadlines of each delivery just accepted.
    fn stage_accept_watches(
        &mut self,
        document: &DocumentRecord,
        deadlines: AcceptDeadlines,
    ) -> Result<(), StoreError> {
        // Every recipient of the accepted record has a delivery.
        for recipient in &document.recipients {
            for (kind, deadline) in [
                (DeadlineKind::Arrived, deadlines.arrived_unix_ms),
                (DeadlineKind::DueDate, deadlines.due_date_unix_ms),
                (DeadlineKind::Expiry, deadlines.expiry_unix_ms),
            ] {
                if let Some(deadline_unix_ms) = deadline {
                    self.group_watches.push(WatchRecord {
                        kind,
                        deadline_unix_ms,
                        document_id: document.document_id.clone(),
                        recipient: recipient.clone(),
                        sender: document.sender.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// [`Writer::ack_all`], then for each delivery that arrived now its
    /// "received" deadline, in the same group; the queue items are read
    /// once, by the acknowledgement.
    fn ack_watched(
        &mut self,
        agency: &str,
        queue_seqs: &[u64],
        at_unix_ms: i64,
        received_deadline_unix_ms: Option<i64>,
        woken: &mut BTreeSet<String>,
    ) -> Result<Vec<AckOutcome>, StoreError> {
        let acked = self.ack_items(agency, queue_seqs, at_unix_ms, woken)?;
        let mut outcomes = Vec::with_capacity(acked.len());
        for (outcome, delivery) in acked {
            if let Some((document_id, recipient)) = delivery {
                let sender = document_id.split(',').next().unwrap_or_default().to_owned();
                if let (AckOutcome::Arrived(_), Some(deadline_unix_ms)) =
                    (&outcome, received_deadline_unix_ms)
                {
                    self.group_watches.push(WatchRecord {
                        kind: DeadlineKind::Received,
                        deadline_unix_ms,
                        document_id,
                        recipient,
                        sender,
                    });
                }
            }
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// Handles the blocks of deadlines the watcher found due: met ones are
    /// dropped, unmet ones become overdue records (the sender told), unmet
    /// expiries dead letters. A block goes once all of its deadlines are handled.
    fn lapse(
        &mut self,
        blocks: Vec<Vec<u8>>,
        at_unix_ms: i64,
        expiry_reason: &str,
        woken: &mut BTreeSet<String>,
    ) -> Result<LapseOutcome, StoreError> {
        let mut outcome = LapseOutcome::default();
        let mut notices = Notices::default();
        for block in blocks {
            let mut op = self.begin();
            let Some(bytes) = self.read(&op, &block)? else {
                // Handled by an earlier pass.
                continue;
            };
            let watches: Vec<WatchRecord> = decode(&block, &bytes)?;
            for watch in &watches {
                let mut watch_op = self.begin();
                match self.stage_lapse(
                    &mut watch_op,
                    watch,
                    at_unix_ms,
                    expiry_reason,
                    &mut notices,
                    &mut outcome,
                ) {
                    Ok(()) => self.commit(watch_op),
                    Err(error) => {
                        self.abandon(watch_op);
                        self.queue_notices(notices, woken);
                        return Err(error);
                    }
                }
            }
            op.changes.insert(block, None);
            self.commit(op);
        }
        self.queue_notices(notices, woken);
        Ok(outcome)
    }

    fn stage_lapse(
        &mut self,
        op: &mut Op,
        watch: &WatchRecord,
        at_unix_ms: i64,
        expiry_reason: &str,
        notices: &mut Notices,
        outcome: &mut LapseOutcome,
    ) -> Result<(), StoreError> {
        let Some(delivery) = self.find_delivery(op, &watch.document_id, &watch.recipient)? else {
            outcome.met += 1;
            return Ok(());
        };
        if watch.kind.met_by(&delivery) {
            outcome.met += 1;
            return Ok(());
        }
        if watch.kind == DeadlineKind::Expiry {
            let letter_key = keys::dead_letter(&watch.recipient, &watch.document_id);
            if self.read(op, &letter_key)?.is_some() {
                return Ok(());
            }
            let holder = self.take_queued_delivery(op, &delivery)?;
            let Some(queue_owner) = holder else {
                // Not queued anywhere: acknowledged meanwhile, nothing expires.
                outcome.met += 1;
                return Ok(());
            };
            op.backlog(&watch.document_id, -1);
            let letter = DeadLetterRecord {
                document_id: watch.document_id.clone(),
                recipient: watch.recipient.clone(),
                sender: watch.sender.clone(),
                queue_owner,
                expired_at_unix_ms: at_unix_ms,
                reason: expiry_reason.to_owned(),
                state: DeadLetterState::Open,
                actions: Vec::new(),
            };
            op.changes.insert(letter_key, Some(encode(&letter)));
            op.audit.push(AuditEvent {
                kind: AuditKind::Expired,
                at_unix_ms,
                actor: HUB_ACTOR.into(),
                document_id: watch.document_id.clone(),
                recipient: watch.recipient.clone(),
                status: EXPIRED_CODE,
                reason: expiry_reason.to_owned(),
                signed_sha256: None,
                signature: Vec::new(),
                certificate_sha256: None,
            });
            notices.add(
                &watch.sender,
                &watch.document_id,
                &watch.recipient,
                StatusEntry {
                    code: EXPIRED_CODE,
                    at_unix_ms,
                    actor: HUB_ACTOR.into(),
                    reason: expiry_reason.to_owned(),
                },
            );
            outcome.expired.push(letter);
            return Ok(());
        }
        let record = OverdueRecord {
            kind: watch.kind,
            deadline_unix_ms: watch.deadline_unix_ms,
            detected_at_unix_ms: at_unix_ms,
            document_id: watch.document_id.clone(),
            recipient: watch.recipient.clone(),
            sender: watch.sender.clone(),
        };
        op.changes.insert(
            keys::overdue(&watch.recipient, &watch.document_id, watch.kind.byte()),
            Some(encode(&record)),
        );
        let late_minutes = (at_unix_ms - watch.deadline_unix_ms).max(0) / 60_000;
        notices.add(
            &watch.sender,
            &watch.document_id,
            &watch.recipient,
            StatusEntry {
                code: OVERDUE_CODE,
                at_unix_ms,
                actor: HUB_ACTOR.into(),
                reason: format!(
                    "no \"{}\" feedback by the deadline (at {} ms); {late_minutes} min late",
                    watch.kind.name(),
                    watch.deadline_unix_ms
                ),
            },
        );
        outcome.overdue.push(record);
        Ok(())
    }

    /// Removes a delivery's queue item from whichever queue holds it (the
    /// recipient's own or a relay's above it); returns that queue's owner.
    fn take_queued_delivery(
        &self,
        op: &mut Op,
        delivery: &DeliveryRecord,
    ) -> Result<Option<String>, StoreError> {
        let mut holder = delivery.recipient.parse::<truc_domain::AgencyCode>().ok();
        while let Some(code) = holder {
            let owner = code.to_string();
            let key = keys::queue(&owner, delivery.queue_seq);
            if let Some(bytes) = self.read(op, &key)? {
                let item: QueueItem = decode(&key, &bytes)?;
                if matches!(&item, QueueItem::Delivery { document_id, recipient }
                    if *document_id == delivery.document_id && *recipient == delivery.recipient)
                {
                    op.changes.insert(key, None);
                    return Ok(Some(owner));
                }
            }
            holder = code.parent();
        }
        Ok(None)
    }

    fn open_letter(
        &self,
        op: &Op,
        document_id: &str,
        recipient: &str,
    ) -> Result<(Vec<u8>, DeadLetterRecord), StoreError> {
        let key = keys::dead_letter(recipient, document_id);
        let bytes = self.read(op, &key)?.ok_or_else(|| StoreError::NotFound {
            what: format!("dead letter of {document_id} to {recipient}"),
        })?;
        let letter: DeadLetterRecord = decode(&key, &bytes)?;
        if letter.state != DeadLetterState::Open {
            let last = letter.actions.last();
            return Err(StoreError::Closed {
                what: format!(
                    "the dead letter of {document_id} to {recipient} was already {} by {}",
                    letter.state.name(),
                    last.map_or("?", |a| a.operator.as_str())
                ),
            });
        }
        Ok((key, letter))
    }

    fn stage_resend(
        &mut self,
        op: &mut Op,
        document_id: &str,
        recipient: &str,
        operator: &str,
        at_unix_ms: i64,
        deadlines: AcceptDeadlines,
    ) -> Result<DeadLetterRecord, StoreError> {
        let (letter_key, mut letter) = self.open_letter(op, document_id, recipient)?;
        let (mut slot, _, _) = self.read_delivery(op, document_id, recipient)?;
        let seq = self.take_seq();
        slot.delivery().queue_seq = seq;
        slot.stage(op);
        op.changes.insert(
            keys::queue(&letter.queue_owner, seq),
            Some(encode(&QueueItem::Delivery {
                document_id: document_id.to_owned(),
                recipient: recipient.to_owned(),
            })),
        );
        op.backlog(document_id, 1);
        for (kind, deadline) in [
            (DeadlineKind::Arrived, deadlines.arrived_unix_ms),
            (DeadlineKind::Expiry, deadlines.expiry_unix_ms),
        ] {
            if let Some(deadline_unix_ms) = deadline {
                op.watches.push(WatchRecord {
                    kind,
                    deadline_unix_ms,
                    document_id: document_id.to_owned(),
                    recipient: recipient.to_owned(),
                    sender: letter.sender.clone(),
                });
            }
        }
        op.audit.push(operator_event(
            AuditKind::DeadLetterResend,
            document_id,
            recipient,
            operator,
            at_unix_ms,
            "",
        ));
        letter.state = DeadLetterState::Resent;
        letter.actions.push(DeadLetterAction {
            action: DeadLetterState::Resent,
            operator: operator.to_owned(),
            at_unix_ms,
            reason: String::new(),
        });
        op.changes.insert(letter_key, Some(encode(&letter)));
        Ok(letter)
    }

    fn stage_cancel(
        &mut self,
        op: &mut Op,
        document_id: &str,
        recipient: &str,
        operator: &str,
        at_unix_ms: i64,
        reason: &str,
    ) -> Result<DeadLetterRecord, StoreError> {
        let (letter_key, mut letter) = self.open_letter(op, document_id, recipient)?;
        op.audit.push(operator_event(
            AuditKind::DeadLetterCancel,
            document_id,
            recipient,
            operator,
            at_unix_ms,
            reason,
        ));
        letter.state = DeadLetterState::Cancelled;
        letter.actions.push(DeadLetterAction {
            action: DeadLetterState::Cancelled,
            operator: operator.to_owned(),
            at_unix_ms,
            reason: reason.to_owned(),
        });
        op.changes.insert(letter_key, Some(encode(&letter)));
        Ok(letter)
    }
}

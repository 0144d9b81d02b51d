//! Watched deadlines, expiry and dead letters: each deadline is set in the
//! same write as the event that sets it (acceptance, arrival); due ones are
//! settled (met ones dropped, unmet ones recorded as overdue and told to the
//! sender, unmet expiries turned into dead letters); operators' resends and
//! cancels are recorded with their names.

use super::{AcceptOutcome, AcceptPlan, Notices, Op, PlannedAcceptResult, Rules, WatchBlockId};
use crate::audit::{AuditEvent, AuditKind};
use crate::error::StoreError;
use crate::records::{
    DeadLetterAction, DeadLetterRecord, DeadLetterState, DeadlineKind, DocumentRecord,
    OverdueRecord, QueueItem, StatusEntry, WatchRecord,
};
use crate::PendingBlob;

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

impl Rules<'_> {
    /// [`Rules::accept_planned`], with each delivery's deadlines set in the
    /// same write.
    pub(crate) fn accept_watched(
        &mut self,
        document: DocumentRecord,
        blobs: Vec<PendingBlob>,
        plan: &AcceptPlan,
        deadlines: AcceptDeadlines,
    ) -> PlannedAcceptResult {
        let result = self.accept_planned(document, blobs, plan);
        if let Ok((AcceptOutcome::Accepted(record), _)) = &result {
            // Every recipient of the accepted record has a delivery.
            for recipient in &record.recipients {
                for (kind, deadline) in [
                    (DeadlineKind::Arrived, deadlines.arrived_unix_ms),
                    (DeadlineKind::DueDate, deadlines.due_date_unix_ms),
                    (DeadlineKind::Expiry, deadlines.expiry_unix_ms),
                ] {
                    if let Some(deadline_unix_ms) = deadline {
                        self.watch(WatchRecord {
                            kind,
                            deadline_unix_ms,
                            document_id: record.document_id.clone(),
                            recipient: recipient.clone(),
                            sender: record.sender.clone(),
                        });
                    }
                }
            }
        }
        result
    }

    /// Handles the blocks of deadlines the watcher found due. A block goes
    /// once all of its deadlines are handled.
    pub(crate) fn lapse(
        &mut self,
        blocks: Vec<WatchBlockId>,
        at_unix_ms: i64,
        expiry_reason: &str,
    ) -> Result<LapseOutcome, StoreError> {
        let mut outcome = LapseOutcome::default();
        let mut notices = Notices::default();
        for block in blocks {
            let Some(watches) = self.watch_block(&block)? else {
                // Handled by an earlier pass.
                continue;
            };
            for watch in &watches {
                let mut op = self.begin();
                match self.stage_lapse(
                    &mut op,
                    watch,
                    at_unix_ms,
                    expiry_reason,
                    &mut notices,
                    &mut outcome,
                ) {
                    Ok(()) => self.commit(op),
                    Err(error) => {
                        self.abandon(op);
                        self.queue_notices(notices);
                        return Err(error);
                    }
                }
            }
            let mut op = self.begin();
            op.changes.watch_blocks_done.push(block);
            self.commit(op);
        }
        self.queue_notices(notices);
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
            if self
                .dead_letter(op, &watch.recipient, &watch.document_id)?
                .is_some()
            {
                return Ok(());
            }
            let holder = self.take_queued_delivery(
                op,
                &delivery.document_id,
                &delivery.recipient,
                delivery.queue_seq,
            )?;
            let Some(queue_owner) = holder else {
                // Not queued anywhere: acknowledged meanwhile, nothing expires.
                outcome.met += 1;
                return Ok(());
            };
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
            op.changes.dead_letters.insert(
                (watch.recipient.clone(), watch.document_id.clone()),
                letter.clone(),
            );
            op.changes.audit_events.push(AuditEvent {
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
        op.changes.overdue.push(record.clone());
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

    /// An open dead letter, or why there is none to act on.
    fn open_letter(
        &mut self,
        op: &Op,
        document_id: &str,
        recipient: &str,
    ) -> Result<DeadLetterRecord, StoreError> {
        let letter = self
            .dead_letter(op, recipient, document_id)?
            .ok_or_else(|| StoreError::NotFound {
                what: format!("dead letter of {document_id} to {recipient}"),
            })?;
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
        Ok(letter)
    }

    /// Queues an open dead letter again with new deadlines, recording the operator.
    pub(crate) fn resend(
        &mut self,
        document_id: &str,
        recipient: &str,
        operator: &str,
        at_unix_ms: i64,
        deadlines: AcceptDeadlines,
    ) -> Result<DeadLetterRecord, StoreError> {
        let mut op = self.begin();
        match self.stage_resend(
            &mut op,
            document_id,
            recipient,
            operator,
            at_unix_ms,
            deadlines,
        ) {
            Ok(letter) => {
                self.woken.insert(letter.queue_owner.clone());
                self.commit(op);
                Ok(letter)
            }
            Err(error) => {
                self.abandon(op);
                Err(error)
            }
        }
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
        let mut letter = self.open_letter(op, document_id, recipient)?;
        let (mut slot, _, _) = self.read_delivery(op, document_id, recipient)?;
        let seq = self.take_seq();
        slot.delivery().queue_seq = seq;
        slot.stage(op);
        op.changes.queue.insert(
            (letter.queue_owner.clone(), seq),
            Some(QueueItem::Delivery {
                document_id: document_id.to_owned(),
                recipient: recipient.to_owned(),
            }),
        );
        op.changes.backlog(document_id, 1);
        for (kind, deadline) in [
            (DeadlineKind::Arrived, deadlines.arrived_unix_ms),
            (DeadlineKind::Expiry, deadlines.expiry_unix_ms),
        ] {
            if let Some(deadline_unix_ms) = deadline {
                op.changes.watches.push(WatchRecord {
                    kind,
                    deadline_unix_ms,
                    document_id: document_id.to_owned(),
                    recipient: recipient.to_owned(),
                    sender: letter.sender.clone(),
                });
            }
        }
        op.changes.audit_events.push(operator_event(
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
        op.changes.dead_letters.insert(
            (recipient.to_owned(), document_id.to_owned()),
            letter.clone(),
        );
        Ok(letter)
    }

    /// Closes an open dead letter for good, recording the operator and why,
    /// and tells the sender.
    pub(crate) fn cancel(
        &mut self,
        document_id: &str,
        recipient: &str,
        operator: &str,
        at_unix_ms: i64,
        reason: &str,
    ) -> Result<DeadLetterRecord, StoreError> {
        let mut op = self.begin();
        let mut letter = match self.open_letter(&op, document_id, recipient) {
            Ok(letter) => letter,
            Err(error) => {
                self.abandon(op);
                return Err(error);
            }
        };
        op.changes.audit_events.push(operator_event(
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
        op.changes.dead_letters.insert(
            (recipient.to_owned(), document_id.to_owned()),
            letter.clone(),
        );
        self.commit(op);
        let mut notices = Notices::default();
        notices.add(
            &letter.sender,
            document_id,
            recipient,
            StatusEntry {
                code: EXPIRED_CODE,
                at_unix_ms,
                actor: operator.to_owned(),
                reason: format!("dead letter cancelled by operator {operator}: {reason}"),
            },
        );
        self.queue_notices(notices);
        Ok(letter)
    }
}

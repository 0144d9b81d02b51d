//! A recipient's status moves, each checked against the status machine and
//! recorded with its actor, time and reason. A recipient that moves a
//! delivery still queued holds it: its arrival is recorded first. A recall
//! agreed takes the delivery out of its queue, if still there, and tells the
//! node that holds it or had it on its way.

use truc_domain::Status;

use super::{status_event, Notices, Op, Rules};
use crate::error::StoreError;
use crate::records::StatusEntry;

/// One status move asked of the store.
#[derive(Clone, Debug)]
pub struct MoveRequest {
    pub document_id: String,
    pub recipient: String,
    pub entry: StatusEntry,
}

pub(crate) type MoveResults = Vec<Result<StatusEntry, StoreError>>;

impl Rules<'_> {
    /// Applies each move on its own, in order; a refused move stages nothing.
    pub(crate) fn move_all(&mut self, moves: Vec<MoveRequest>) -> MoveResults {
        let mut notices = Notices::default();
        let mut results = Vec::with_capacity(moves.len());
        for request in moves {
            let mut op = self.begin();
            let mut entries = Vec::with_capacity(2);
            match self.stage_move(&mut op, &request, &mut entries) {
                Ok(sender) => {
                    self.commit(op);
                    for entry in entries {
                        notices.add(&sender, &request.document_id, &request.recipient, entry);
                    }
                    results.push(Ok(request.entry));
                }
                Err(error) => {
                    self.abandon(op);
                    results.push(Err(error));
                }
            }
        }
        self.queue_notices(notices);
        results
    }

    /// Stages one move (and the arrival it implies, if the delivery is still
    /// queued); returns the sender to tell.
    fn stage_move(
        &mut self,
        op: &mut Op,
        request: &MoveRequest,
        entries: &mut Vec<StatusEntry>,
    ) -> Result<String, StoreError> {
        let (mut slot, sender, date_key) =
            self.read_delivery(op, &request.document_id, &request.recipient)?;
        let delivery = slot.delivery();
        let current = delivery.state()?;
        let target = Status::from_code(request.entry.code)?;
        // The actor is the recipient, or the relay that holds the recipient's
        // deliveries: either way the one whose node receives it.
        if current.is_none() && target != Status::Arrived {
            // A recipient that moves a delivery holds it, even if the
            // acknowledgement from its node has not been written yet. The
            // queue item stays: the node still gets the document, and its
            // acknowledgement then finds the arrival recorded.
            Status::check_move(Some(Status::Arrived), target, &request.entry.reason)?;
            let arrival = StatusEntry {
                code: Status::Arrived.code(),
                reason: String::new(),
                ..request.entry.clone()
            };
            op.changes.count(&request.recipient, date_key, 0, 1);
            delivery.history.push(arrival.clone());
            op.changes.audit_events.push(status_event(
                &request.document_id,
                &request.recipient,
                &arrival,
            ));
            entries.push(arrival);
        } else {
            Status::check_move(current, target, &request.entry.reason)?;
        }
        delivery.history.push(request.entry.clone());
        op.changes.audit_events.push(status_event(
            &request.document_id,
            &request.recipient,
            &request.entry,
        ));
        entries.push(request.entry.clone());
        if target == Status::RecallAgreed {
            // A recipient that moved the document before its node fetched it
            // left the queue item in place (above); once the recall is
            // agreed, the document must not reach that node any more.
            let queue_seq = delivery.queue_seq;
            let holder = delivery
                .history
                .iter()
                .find(|entry| entry.code == Status::Arrived.code())
                .map(|arrival| arrival.actor.clone());
            let queued_at =
                self.take_queued_delivery(op, &request.document_id, &request.recipient, queue_seq)?;
            if let Some(node) = queued_at.or(holder) {
                self.tell_node_recalled(
                    op,
                    &node,
                    &request.document_id,
                    &request.recipient,
                    request.entry.clone(),
                );
            }
        }
        slot.stage(op);
        Ok(sender)
    }
}

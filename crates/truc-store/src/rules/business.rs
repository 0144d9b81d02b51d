//! A recall (business type 1), update (2) or replace (3) by the sender of
//! the earlier documents it names: what it records on each recipient's
//! delivery (decided by `Status::request_effect`), and the links between
//! the documents both ways.

use truc_domain::{RequestEffect, Status};

use super::{status_event, Notices, Op, Rules};
use crate::error::StoreError;
use crate::records::{DocumentRecord, LinkRecord, StatusEntry};

/// A recall (business type 1), update (2) or replace (3) by the sender of
/// the documents it names. Only recipients of each earlier document on the
/// new one's list are affected.
#[derive(Clone, Debug)]
pub struct BusinessRequest {
    pub business_type: i32,
    pub references: Vec<String>,
}

/// What a business request did to one recipient's delivery of one earlier document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusinessEffect {
    /// Not yet fetched: withdrawn at once (13 then 15), its queue item removed.
    Withdrawn,
    /// The recipient holds it: 13 recorded, its answer (15 or 16) awaited.
    Requested,
    /// Nothing recorded, and why (a final state, or a request already waiting).
    Unchanged { reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusinessOutcome {
    pub reference: String,
    pub recipient: String,
    pub effect: BusinessEffect,
}

impl Rules<'_> {
    /// Records a business request on every earlier delivery it concerns, and
    /// the links between the documents both ways.
    pub(super) fn stage_business(
        &mut self,
        op: &mut Op,
        document: &DocumentRecord,
        business: &BusinessRequest,
        notices: &mut Notices,
        outcomes: &mut Vec<BusinessOutcome>,
    ) -> Result<(), StoreError> {
        let at_unix_ms = document.accepted_at_unix_ms;
        let what = match business.business_type {
            1 => "recall",
            2 => "update",
            _ => "replace",
        };
        for reference in &business.references {
            op.changes.links.push(LinkRecord {
                business_type: business.business_type,
                earlier: reference.clone(),
                later: document.document_id.clone(),
            });
            for recipient in &document.recipients {
                let Some(mut delivery) = self.find_delivery(op, reference, recipient)? else {
                    continue;
                };
                let request = StatusEntry {
                    code: Status::RecallRequested.code(),
                    at_unix_ms,
                    actor: document.sender.clone(),
                    reason: format!("{what}: {}", document.document_id),
                };
                let effect = match Status::request_effect(delivery.state()?) {
                    RequestEffect::Withdraw => {
                        let queued_at = self.take_queued_delivery(
                            op,
                            reference,
                            recipient,
                            delivery.queue_seq,
                        )?;
                        let withdrawn = StatusEntry {
                            code: Status::RecallAgreed.code(),
                            at_unix_ms,
                            actor: document.sender.clone(),
                            reason: "withdrawn before it was fetched; nothing was delivered".into(),
                        };
                        // The node may have the document on its way (sent on
                        // its stream, not yet acknowledged): it is told, and
                        // marks it recalled if it wrote it after all.
                        if let Some(node) = queued_at {
                            self.tell_node_recalled(
                                op,
                                &node,
                                reference,
                                recipient,
                                withdrawn.clone(),
                            );
                        }
                        for entry in [request, withdrawn] {
                            delivery.history.push(entry.clone());
                            op.changes
                                .audit_events
                                .push(status_event(reference, recipient, &entry));
                            notices.add(&document.sender, reference, recipient, entry);
                        }
                        BusinessEffect::Withdrawn
                    }
                    RequestEffect::Ask => {
                        delivery.history.push(request.clone());
                        op.changes
                            .audit_events
                            .push(status_event(reference, recipient, &request));
                        notices.add(&document.sender, reference, recipient, request);
                        BusinessEffect::Requested
                    }
                    RequestEffect::Unchanged(refusal) => BusinessEffect::Unchanged {
                        reason: refusal.to_string(),
                    },
                };
                if !matches!(effect, BusinessEffect::Unchanged { .. }) {
                    self.put_delivery(op, delivery)?;
                }
                outcomes.push(BusinessOutcome {
                    reference: reference.clone(),
                    recipient: recipient.clone(),
                    effect,
                });
            }
        }
        Ok(())
    }
}

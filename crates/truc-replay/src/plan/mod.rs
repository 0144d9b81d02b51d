//! Traffic plans: the exact list of documents a replay sends, built so that counting them the
//! reports' way (once for the sender, once per recipient) gives the published figures exactly.
//!
//! [`build`] is the general construction from per-unit targets; [`plan_2019`], [`plan_2021`]
//! and [`plan_2022`] derive the targets from the seed tables. A plan holds every document in
//! memory as [`PlannedDocument`] (56 bytes plus a small heap block for the recipients); the
//! construction works on `u32` unit indices in flat arrays. The 1.27 million documents of 2021
//! build in about a second in a release build and peak near 180 MB.

mod apportion;
mod calendar;
mod construct;
mod datasets;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use truc_domain::{AgencyCode, DocumentDate, Status};

pub use calendar::OFFICE_HOURS_MS;
pub use construct::build;
pub use datasets::{plan_2019, plan_2021, plan_2022};

/// One body taking part in a replay, with the counts it must end with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    pub code: AgencyCode,
    pub name: String,
    /// Administrative level: 1 ministry/province, 2 department/district, 3 commune.
    pub level: u8,
    /// Documents it must send.
    pub sent: u64,
    /// Deliveries it must acknowledge (one per document it is a recipient of).
    pub received: u64,
}

/// One document to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDocument {
    /// 0.. in send order (the order of `at_unix_ms`).
    pub seq: u64,
    pub sender: AgencyCode,
    /// Distinct, never the sender, never empty; sorted by unit order.
    pub recipients: Vec<AgencyCode>,
    /// A working day (Monday to Friday) inside the plan's period.
    pub date: DocumentDate,
    /// Office hours on `date`, Vietnam time (UTC+7): see [`OFFICE_HOURS_MS`].
    pub at_unix_ms: i64,
    /// The sender's running document number over the period, from 1 in send order: unique per
    /// sender, so `(sender, date, number/notation)` is a unique document id.
    pub number: u32,
    /// Carries the document's own digital signature (not the envelope's, which is always there).
    pub document_signed: bool,
}

/// Which statuses a recipient reports after "arrived" (01), which every recipient reports
/// because the replay acknowledges every delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeedbackProfile {
    /// 01, 03, 04, 05, 06: five distinct statuses.
    Full,
    /// 01, 03, 06: three distinct statuses.
    Partial,
    /// 01 only.
    ArrivedOnly,
}

impl FeedbackProfile {
    /// The moves after arrival, in order.
    pub fn moves(self) -> &'static [Status] {
        match self {
            FeedbackProfile::Full => &[
                Status::Received,
                Status::Assigned,
                Status::Processing,
                Status::Completed,
            ],
            FeedbackProfile::Partial => &[Status::Received, Status::Completed],
            FeedbackProfile::ArrivedOnly => &[],
        }
    }

    /// Distinct statuses the unit reports, arrival included.
    pub fn distinct_statuses(self) -> usize {
        1 + self.moves().len()
    }
}

/// A pinned pair: exactly `documents` of `sender`'s documents carry `recipient`, and exactly
/// `signed` of those carry the document's own signature.
///
/// A pinned recipient receives only pinned documents: its `received` target must equal the
/// sum of its pins. That is what the 2019 Government Office table needs (the office's receipts
/// are exactly the documents the table counts), and it makes "no other document from this
/// sender goes to that recipient" hold by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub sender: AgencyCode,
    pub recipient: AgencyCode,
    pub documents: u64,
    pub signed: u64,
}

/// How often documents that are not pinned carry their own signature, in thousandths, by the
/// sender's level-1 body (`AgencyCode::root`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signing {
    pub per_mille_default: u16,
    pub per_mille_by_root: BTreeMap<AgencyCode, u16>,
}

impl Default for Signing {
    fn default() -> Self {
        Self {
            per_mille_default: 1000,
            per_mille_by_root: BTreeMap::new(),
        }
    }
}

/// Limits and fixed pairs a plan must respect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraints {
    /// Most recipients on one document; the hub's default limit.
    pub recipients_max: u32,
    pub pins: Vec<Pin>,
    pub signing: Signing,
}

impl Default for Constraints {
    fn default() -> Self {
        Self {
            recipients_max: truc_domain::Limits::default().recipients_max as u32,
            pins: Vec::new(),
            signing: Signing::default(),
        }
    }
}

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The targets cannot be met by any set of documents (or, for `(all units)`, the totals
    /// cannot). `reason` names the inequality and its numbers.
    #[error("infeasible at {unit}: {reason}")]
    Infeasible { unit: String, reason: String },
    #[error("recipients_max {recipients_max}: {reason}")]
    RecipientsMax { recipients_max: u32, reason: String },
    #[error("pin {sender} -> {recipient}: {reason}")]
    Pin {
        sender: String,
        recipient: String,
        reason: String,
    },
    #[error("invalid input: {0}")]
    Input(String),
    #[error("seed table: {0}")]
    Seed(#[from] truc_seeds::SeedError),
    #[error("seed table code: {0}")]
    Code(#[from] truc_domain::AgencyCodeError),
    #[error("seed tables disagree: {0}")]
    Data(String),
    #[error("plan check failed: {0}")]
    Verification(String),
    #[error("internal error, the inputs passed every check: {0}")]
    Internal(String),
}

/// The documents of one replay and what the recipients report about them.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub dataset: String,
    pub seed: u64,
    /// First and last day, inclusive.
    pub period: (DocumentDate, DocumentDate),
    pub units: Vec<Unit>,
    /// In send order.
    pub documents: Vec<PlannedDocument>,
    /// Per unit: which statuses it reports after arrival. Every unit has an entry.
    pub feedback: BTreeMap<AgencyCode, FeedbackProfile>,
}

impl Plan {
    /// The statuses (after arrival) `recipient` reports for one delivery; a unit without an
    /// entry reports everything.
    pub fn moves_for(&self, recipient: &AgencyCode) -> Vec<Status> {
        self.feedback
            .get(recipient)
            .copied()
            .unwrap_or(FeedbackProfile::Full)
            .moves()
            .to_vec()
    }

    /// (documents sent, deliveries received) over the whole plan.
    pub fn totals(&self) -> (u64, u64) {
        let received = self
            .documents
            .iter()
            .map(|document| document.recipients.len() as u64)
            .sum();
        (self.documents.len() as u64, received)
    }

    /// (sent, received) per unit, recomputed from the documents; every unit has an entry.
    pub fn counts(&self) -> BTreeMap<AgencyCode, (u64, u64)> {
        let mut counts: BTreeMap<AgencyCode, (u64, u64)> =
            self.units.iter().map(|unit| (unit.code, (0, 0))).collect();
        for document in &self.documents {
            counts.entry(document.sender).or_default().0 += 1;
            for recipient in &document.recipients {
                counts.entry(*recipient).or_default().1 += 1;
            }
        }
        counts
    }

    /// (sent, received) per unit as the targets say.
    pub fn targets(&self) -> BTreeMap<AgencyCode, (u64, u64)> {
        self.units
            .iter()
            .map(|unit| (unit.code, (unit.sent, unit.received)))
            .collect()
    }

    /// Checks every promise of the plan: counts equal targets; recipients distinct, not the
    /// sender, known, between 1 and `recipients_max`; send order, dates on working days within
    /// the period, office hours; numbers unique per sender and date; a feedback entry per unit.
    pub fn verify(&self, recipients_max: u32) -> Result<(), PlanError> {
        let fail = |detail: String| Err(PlanError::Verification(detail));
        let known: BTreeSet<AgencyCode> = self.units.iter().map(|unit| unit.code).collect();
        if known.len() != self.units.len() {
            return fail("duplicate unit codes".into());
        }
        let mut ids = BTreeSet::new();
        let mut previous_at = i64::MIN;
        for (position, document) in self.documents.iter().enumerate() {
            let label = format!("document {position} from {}", document.sender);
            if document.seq != position as u64 {
                return fail(format!("{label}: seq {}", document.seq));
            }
            if document.at_unix_ms < previous_at {
                return fail(format!("{label}: not in send order"));
            }
            previous_at = document.at_unix_ms;
            if !known.contains(&document.sender) {
                return fail(format!("{label}: unknown sender"));
            }
            let recipients = &document.recipients;
            if recipients.is_empty() || recipients.len() > recipients_max as usize {
                return fail(format!("{label}: {} recipients", recipients.len()));
            }
            let distinct: BTreeSet<&AgencyCode> = recipients.iter().collect();
            if distinct.len() != recipients.len() {
                return fail(format!("{label}: a recipient appears twice"));
            }
            if distinct.contains(&document.sender) {
                return fail(format!("{label}: addressed to its sender"));
            }
            if let Some(stranger) = recipients.iter().find(|code| !known.contains(code)) {
                return fail(format!("{label}: unknown recipient {stranger}"));
            }
            if document.date < self.period.0 || document.date > self.period.1 {
                return fail(format!("{label}: {} outside the period", document.date));
            }
            if document.date.weekday_number() > 5 {
                return fail(format!("{label}: {} is a weekend day", document.date));
            }
            let offset_ms = document.at_unix_ms - document.date.start_unix_ms_vietnam();
            if !calendar::in_office_hours(offset_ms) {
                return fail(format!(
                    "{label}: {offset_ms} ms after midnight is not office time"
                ));
            }
            if !ids.insert((document.sender, document.date, document.number)) {
                return fail(format!("{label}: number {} reused", document.number));
            }
        }
        let counts = self.counts();
        for unit in &self.units {
            let (sent, received) = counts[&unit.code];
            if (sent, received) != (unit.sent, unit.received) {
                return fail(format!(
                    "{} counts {sent} sent / {received} received, targets {} / {}",
                    unit.code, unit.sent, unit.received
                ));
            }
        }
        if let Some(unit) = self
            .units
            .iter()
            .find(|unit| !self.feedback.contains_key(&unit.code))
        {
            return fail(format!("{} has no feedback profile", unit.code));
        }
        Ok(())
    }
}

/// `code (name)`, the way errors name a unit.
fn describe(unit: &Unit) -> String {
    format!("{} ({})", unit.code, unit.name)
}

//! What a crash test sends: the agencies, and the documents drawn from `--seed` with the
//! recipients and status moves each delivery makes.

use truc_domain::{SplitMix64, Status};
use truc_node::{Attachment, Draft};

/// Senders of the load; `G12` also receives, so one node gets both deliveries and notices.
pub(crate) const SENDERS: [&str; 2] = ["000.00.00.G22", "000.00.00.G12"];
/// Each runs a node agent process with its own inbox.
pub(crate) const RECIPIENTS: [&str; 3] = ["000.00.00.H41", "000.00.00.H10", "000.00.00.G12"];
/// What a recipient may report after "arrived", in order; a delivery takes a prefix.
const MOVES: [Status; 3] = [Status::Received, Status::Processing, Status::Completed];
pub(crate) const OPERATOR: &str = "ops";
const NOTATION: &str = "VP-CRASH";

pub(crate) struct PlannedDocument {
    pub sender: &'static str,
    pub number: usize,
    /// Each recipient with the moves it makes after arrival.
    pub recipients: Vec<(&'static str, &'static [Status])>,
}

impl PlannedDocument {
    pub fn draft(&self) -> Draft {
        Draft {
            from: self.sender.into(),
            to: self.recipients.iter().map(|(r, _)| r.to_string()).collect(),
            number: self.number.to_string(),
            notation: NOTATION.into(),
            date: "2024-05-06".into(),
            subject: format!("Văn bản thử tắt máy số {}", self.number),
            sign_document: self.number.is_multiple_of(2),
            ..Draft::default()
        }
    }

    pub fn attachment(&self) -> Attachment {
        // Every seventh is larger than the hub carries in its journal, so that the streamed
        // path (payload log first, synced before the journal record) is cut too.
        let repeat = if self.number.is_multiple_of(7) {
            3_000
        } else {
            8
        };
        let bytes = format!("%PDF-1.4 crash test document {}\n", self.number)
            .repeat(repeat)
            .into_bytes();
        Attachment::bytes("van-ban.pdf", "application/pdf", bytes)
    }
}

/// The documents a run sends, drawn from `--seed` like the kill schedule; by
/// `below_modulo`, as the runs RELIABILITY.md records by seed were drawn.
pub(crate) fn plan(documents: usize, rng: &mut SplitMix64) -> Vec<PlannedDocument> {
    (0..documents)
        .map(|index| {
            let sender = SENDERS[rng.below_modulo(SENDERS.len() as u64) as usize];
            let candidates: Vec<&'static str> =
                RECIPIENTS.into_iter().filter(|r| *r != sender).collect();
            let mut recipients = Vec::new();
            while recipients.is_empty() {
                for candidate in &candidates {
                    if rng.below_modulo(2) == 0 {
                        let moves = rng.below_modulo(MOVES.len() as u64 + 1) as usize;
                        recipients.push((*candidate, &MOVES[..moves]));
                    }
                }
            }
            PlannedDocument {
                sender,
                number: index + 1,
                recipients,
            }
        })
        .collect()
}

/// The deliveries and status moves of a plan.
pub(crate) fn totals(documents: &[PlannedDocument]) -> (usize, usize) {
    let deliveries = documents.iter().map(|d| d.recipients.len()).sum();
    let moves = documents
        .iter()
        .flat_map(|d| &d.recipients)
        .map(|(_, m)| m.len())
        .sum();
    (deliveries, moves)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_is_the_same_for_a_seed_and_every_delivery_is_to_another_agency() {
        let first = plan(300, &mut SplitMix64::new(7));
        let again = plan(300, &mut SplitMix64::new(7));
        let documents = |plan: &[PlannedDocument]| -> Vec<String> {
            plan.iter()
                .map(|d| format!("{} {:?}", d.sender, d.recipients))
                .collect()
        };
        assert_eq!(documents(&first), documents(&again));
        for document in &first {
            assert!(!document.recipients.is_empty());
            for (recipient, moves) in &document.recipients {
                assert_ne!(*recipient, document.sender);
                // Moves are a prefix of the path, so the hub accepts them in order.
                assert_eq!(*moves, &MOVES[..moves.len()]);
            }
        }
        let (deliveries, _) = totals(&first);
        assert!(deliveries >= first.len());
    }
}

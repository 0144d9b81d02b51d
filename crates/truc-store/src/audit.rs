//! The tamper-evident audit log: one entry per accepted send, status move,
//! expiry and operator action, each carrying the SHA-256 of the entry before
//! it. The writer appends entries in the same batch as the action they record,
//! so an entry is durable exactly when the action is acknowledged.
//!
//! The hash covers a fixed byte layout (`AuditEntry::hashed_bytes`), not the
//! stored encoding, so a verifier in any language can recompute it.

use serde::{Deserialize, Serialize};

/// Prefix of the hashed bytes of every entry, so an entry's hash can never be
/// mistaken for the hash of some other structure.
pub const AUDIT_ENTRY_CONTEXT: &[u8] = b"truc.audit.entry.v1\n";

/// The `previous_sha256` of the first entry ever written.
pub const GENESIS_SHA256: [u8; 32] = [0; 32];

/// What an entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuditKind {
    /// A document accepted from its sender; carries the envelope signature.
    Send,
    /// A status recorded on a delivery: an arrival, a recipient's move, or a
    /// recall request recorded for the sender.
    Status,
    /// A delivery no node acknowledged in time, moved to the dead letters by the hub.
    Expired,
    /// An operator queued a dead letter again.
    DeadLetterResend,
    /// An operator closed a dead letter.
    DeadLetterCancel,
}

impl AuditKind {
    pub fn byte(self) -> u8 {
        match self {
            AuditKind::Send => 1,
            AuditKind::Status => 2,
            AuditKind::Expired => 3,
            AuditKind::DeadLetterResend => 4,
            AuditKind::DeadLetterCancel => 5,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AuditKind::Send => "send",
            AuditKind::Status => "status",
            AuditKind::Expired => "expired",
            AuditKind::DeadLetterResend => "dead_letter_resend",
            AuditKind::DeadLetterCancel => "dead_letter_cancel",
        }
    }

    pub fn from_name(name: &str) -> Option<AuditKind> {
        [
            AuditKind::Send,
            AuditKind::Status,
            AuditKind::Expired,
            AuditKind::DeadLetterResend,
            AuditKind::DeadLetterCancel,
        ]
        .into_iter()
        .find(|kind| kind.name() == name)
    }
}

/// What an action adds to the log, before the writer gives it its place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    pub kind: AuditKind,
    pub at_unix_ms: i64,
    /// Who acted: the agency code of the mTLS certificate, `operator:<name>`, or `hub`.
    pub actor: String,
    pub document_id: String,
    /// The delivery's recipient; for a send, the accepted recipients joined by commas.
    pub recipient: String,
    /// The status code recorded (0 for a send).
    pub status: u32,
    pub reason: String,
    /// SHA-256 of the signed bytes (a send: the envelope header bytes).
    pub signed_sha256: Option<[u8; 32]>,
    /// The signature over those bytes, as received.
    pub signature: Vec<u8>,
    /// SHA-256 of the DER certificate whose key made the signature.
    pub certificate_sha256: Option<[u8; 32]>,
}

/// One entry of the chain, as stored and exported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub at_unix_ms: i64,
    pub kind: AuditKind,
    pub actor: String,
    pub document_id: String,
    pub recipient: String,
    pub status: u32,
    pub reason: String,
    pub signed_sha256: Option<[u8; 32]>,
    pub signature: Vec<u8>,
    pub certificate_sha256: Option<[u8; 32]>,
    pub previous_sha256: [u8; 32],
    pub sha256: [u8; 32],
}

impl AuditEntry {
    /// Places `event` after the entry `previous_sha256` at `seq`, and hashes it.
    pub fn chain(event: AuditEvent, seq: u64, previous_sha256: [u8; 32]) -> AuditEntry {
        let mut entry = AuditEntry {
            seq,
            at_unix_ms: event.at_unix_ms,
            kind: event.kind,
            actor: event.actor,
            document_id: event.document_id,
            recipient: event.recipient,
            status: event.status,
            reason: event.reason,
            signed_sha256: event.signed_sha256,
            signature: event.signature,
            certificate_sha256: event.certificate_sha256,
            previous_sha256,
            sha256: [0; 32],
        };
        entry.sha256 = entry.compute_sha256();
        entry
    }

    /// SHA-256 over the entry's hashed bytes, everything but `sha256` itself.
    pub fn compute_sha256(&self) -> [u8; 32] {
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        self.hashed_bytes(|part| context.update(part));
        context
            .finish()
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes")
    }

    /// The canonical layout, fed in parts so the writer allocates nothing:
    /// the context, `seq` (u64 BE), `at_unix_ms` (i64 BE), the kind's byte,
    /// `actor`, `document_id`, `recipient` (each u32 BE length then UTF-8),
    /// `status` (u32 BE), `reason` (length-prefixed), `signed_sha256`
    /// (0, or 1 then 32 bytes), `signature` (length-prefixed),
    /// `certificate_sha256` (like `signed_sha256`), `previous_sha256`.
    pub fn hashed_bytes(&self, mut feed: impl FnMut(&[u8])) {
        fn bytes(feed: &mut impl FnMut(&[u8]), value: &[u8]) {
            feed(&(value.len() as u32).to_be_bytes());
            feed(value);
        }
        fn digest(feed: &mut impl FnMut(&[u8]), value: &Option<[u8; 32]>) {
            match value {
                None => feed(&[0]),
                Some(value) => {
                    feed(&[1]);
                    feed(value);
                }
            }
        }
        feed(AUDIT_ENTRY_CONTEXT);
        feed(&self.seq.to_be_bytes());
        feed(&self.at_unix_ms.to_be_bytes());
        feed(&[self.kind.byte()]);
        bytes(&mut feed, self.actor.as_bytes());
        bytes(&mut feed, self.document_id.as_bytes());
        bytes(&mut feed, self.recipient.as_bytes());
        feed(&self.status.to_be_bytes());
        bytes(&mut feed, self.reason.as_bytes());
        digest(&mut feed, &self.signed_sha256);
        bytes(&mut feed, &self.signature);
        digest(&mut feed, &self.certificate_sha256);
        feed(&self.previous_sha256);
    }
}

/// The last entry written: the next one follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditHead {
    /// The sequence number of the last entry (0: none yet).
    pub seq: u64,
    pub sha256: [u8; 32],
}

impl Default for AuditHead {
    fn default() -> Self {
        AuditHead {
            seq: 0,
            sha256: GENESIS_SHA256,
        }
    }
}

impl AuditHead {
    pub(crate) fn encode(&self) -> [u8; 40] {
        let mut bytes = [0u8; 40];
        bytes[..8].copy_from_slice(&self.seq.to_be_bytes());
        bytes[8..].copy_from_slice(&self.sha256);
        bytes
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<AuditHead> {
        if bytes.len() != 40 {
            return None;
        }
        Some(AuditHead {
            seq: u64::from_be_bytes(bytes[..8].try_into().ok()?),
            sha256: bytes[8..].try_into().ok()?,
        })
    }
}

/// SHA-256 of any bytes, as the log records digests.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(status: u32) -> AuditEvent {
        AuditEvent {
            kind: AuditKind::Status,
            at_unix_ms: 1_700_000_000_000,
            actor: "000.00.00.H41".into(),
            document_id: "000.00.00.G22,2026/11/22,1/VPCP".into(),
            recipient: "000.00.00.H41".into(),
            status,
            reason: String::new(),
            signed_sha256: None,
            signature: Vec::new(),
            certificate_sha256: None,
        }
    }

    /// One change to an entry.
    type Change = Box<dyn Fn(&mut AuditEntry)>;

    #[test]
    fn every_field_changes_the_hash() {
        let entry = AuditEntry::chain(event(3), 7, [9; 32]);
        assert_eq!(entry.sha256, entry.compute_sha256());
        let variants: Vec<Change> = vec![
            Box::new(|e| e.seq += 1),
            Box::new(|e| e.at_unix_ms += 1),
            Box::new(|e| e.kind = AuditKind::Send),
            Box::new(|e| e.actor.push('x')),
            Box::new(|e| e.document_id.push('x')),
            Box::new(|e| e.recipient.push('x')),
            Box::new(|e| e.status = 4),
            Box::new(|e| e.reason.push('x')),
            Box::new(|e| e.signed_sha256 = Some([0; 32])),
            Box::new(|e| e.signature.push(0)),
            Box::new(|e| e.certificate_sha256 = Some([0; 32])),
            Box::new(|e| e.previous_sha256[0] ^= 1),
        ];
        for (index, change) in variants.iter().enumerate() {
            let mut altered = entry.clone();
            change(&mut altered);
            assert_ne!(altered.compute_sha256(), entry.sha256, "field {index}");
        }
    }

    #[test]
    fn length_prefixes_keep_fields_apart() {
        // Moving a byte from one field into the next must not give the same hash.
        let mut a = AuditEntry::chain(event(3), 1, GENESIS_SHA256);
        let mut b = a.clone();
        a.actor = "ab".into();
        a.document_id = "c".into();
        b.actor = "a".into();
        b.document_id = "bc".into();
        assert_ne!(a.compute_sha256(), b.compute_sha256());
    }

    #[test]
    fn head_round_trips() {
        let head = AuditHead {
            seq: 42,
            sha256: [7; 32],
        };
        assert_eq!(AuditHead::decode(&head.encode()), Some(head));
        assert_eq!(AuditHead::decode(&[0; 39]), None);
    }
}

#[cfg(test)]
mod store_tests {
    use super::*;
    use crate::records::{DocumentRecord, DocumentSignatureState, StatusEntry};
    use crate::{Store, StoreOptions};

    fn document(number: u32) -> DocumentRecord {
        let header = format!("header {number}").into_bytes();
        DocumentRecord {
            document_id: format!("000.00.00.G22,2026/11/22,{number}/VPCP"),
            sender: "000.00.00.G22".into(),
            date_key: 20261122,
            subject: "s".into(),
            content_sha256: sha256(&header),
            header_bytes: header,
            signature: vec![number as u8; 64],
            sender_certificate: b"certificate".to_vec(),
            document_signature: None,
            document_signature_state: DocumentSignatureState::Absent,
            accepted_at_unix_ms: 1_000 + i64::from(number),
            recipients: vec!["000.00.00.H41".into()],
            refused: Vec::new(),
            attachments: Vec::new(),
        }
    }

    fn entry(code: u32) -> StatusEntry {
        StatusEntry {
            code,
            at_unix_ms: 5_000,
            actor: "000.00.00.H41".into(),
            reason: String::new(),
        }
    }

    fn chain_of(store: &Store) -> Vec<AuditEntry> {
        store.audit_entries(1).map(Result::unwrap).collect()
    }

    fn assert_chained(entries: &[AuditEntry]) {
        let mut previous = GENESIS_SHA256;
        for (index, entry) in entries.iter().enumerate() {
            assert_eq!(entry.seq, index as u64 + 1);
            assert_eq!(entry.previous_sha256, previous, "entry {}", entry.seq);
            assert_eq!(entry.sha256, entry.compute_sha256(), "entry {}", entry.seq);
            previous = entry.sha256;
        }
    }

    #[tokio::test]
    async fn sends_and_moves_chain_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions::default();
        {
            let store = Store::open(dir.path(), &options).unwrap();
            let first = document(1);
            store.accept(first.clone(), Vec::new()).await.unwrap();
            // A resend of the same document adds nothing.
            store.accept(first.clone(), Vec::new()).await.unwrap();
            store
                .move_status(&first.document_id, "000.00.00.H41", entry(3))
                .await
                .unwrap();
            // Refused (nothing follows "received" back to "arrived"): no entry, no gap.
            assert!(store
                .move_status(&first.document_id, "000.00.00.H41", entry(1))
                .await
                .is_err());
            let entries = chain_of(&store);
            assert_chained(&entries);
            let kinds: Vec<_> = entries.iter().map(|e| (e.kind, e.status)).collect();
            // The move records the arrival it implies, then itself.
            assert_eq!(
                kinds,
                [
                    (AuditKind::Send, 0),
                    (AuditKind::Status, 1),
                    (AuditKind::Status, 3)
                ]
            );
            assert_eq!(entries[0].signed_sha256, Some(first.content_sha256));
            assert_eq!(entries[0].signature, first.signature);
            assert_eq!(entries[0].certificate_sha256, Some(sha256(b"certificate")));
            let head = store.audit_head().unwrap();
            assert_eq!((head.seq, head.sha256), (3, entries[2].sha256));
        }
        // The writer thread lets go of the directory once it sees the store dropped.
        let mut reopened = Store::open(dir.path(), &options);
        for _ in 0..400 {
            if reopened.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            reopened = Store::open(dir.path(), &options);
        }
        let store = reopened.unwrap();
        store.accept(document(2), Vec::new()).await.unwrap();
        let entries = chain_of(&store);
        assert_eq!(entries.len(), 4);
        assert_chained(&entries);
        assert_eq!(store.audit_entries(4).count(), 1);
        // Sends at once share groups, so blocks hold several entries: every
        // starting point still reads exactly the entries from it on.
        let sends: Vec<_> = (3..40)
            .map(|number| store.accept(document(number), Vec::new()))
            .collect();
        for sent in futures_join(sends).await {
            sent.unwrap();
        }
        let entries = chain_of(&store);
        assert_eq!(entries.len(), 41);
        assert_chained(&entries);
        for from in 1..=42 {
            let seqs: Vec<u64> = store
                .audit_entries(from)
                .map(|entry| entry.unwrap().seq)
                .collect();
            assert_eq!(seqs, (from..=41).collect::<Vec<_>>(), "from {from}");
        }
    }

    /// Polls every future together, so that their commands reach the writer at once.
    async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
        let mut set = Vec::new();
        for future in futures {
            set.push(Box::pin(future));
        }
        let mut outputs: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
        std::future::poll_fn(|context| {
            let mut pending = false;
            for (future, output) in set.iter_mut().zip(outputs.iter_mut()) {
                if output.is_none() {
                    match future.as_mut().poll(context) {
                        std::task::Poll::Ready(value) => *output = Some(value),
                        std::task::Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        outputs.into_iter().map(Option::unwrap).collect()
    }
}

//! The key space of the main tree: one prefix byte per kind of record, so
//! that one sled batch can write a document, its deliveries, queue items and
//! counters atomically.

pub(crate) const DOCUMENT: u8 = b'd';
pub(crate) const DELIVERY: u8 = b'r';
pub(crate) const QUEUE: u8 = b'q';
pub(crate) const COUNTER: u8 = b'c';
pub(crate) const BLOB: u8 = b'b';
pub(crate) const LINK: u8 = b'k';
pub(crate) const META_NEXT_SEQ: &[u8] = b"m:next_queue_seq";
pub(crate) const META_SCHEMA: &[u8] = b"m:schema";
/// How many groups were written; the commit marker must not be ahead of it.
pub(crate) const META_COMMIT_SEQ: &[u8] = b"m:commit_seq";
/// The audit chain's head: last sequence number (u64 BE) and its entry's SHA-256.
pub(crate) const META_AUDIT_HEAD: &[u8] = b"m:audit_head";
pub(crate) const AUDIT: u8 = b'a';

/// Agency codes are 13 ASCII bytes (`AAA.BB.CC.Xnn`).
pub(crate) const AGENCY_BYTES: usize = 13;

pub(crate) fn document(document_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + document_id.len());
    key.push(DOCUMENT);
    key.extend_from_slice(document_id.as_bytes());
    key
}

/// Every delivery of one document, in one record: prefix, id.
pub(crate) fn deliveries(document_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + document_id.len());
    key.push(DELIVERY);
    key.extend_from_slice(document_id.as_bytes());
    key
}

pub(crate) fn queue_prefix(agency: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + AGENCY_BYTES + 8);
    key.push(QUEUE);
    key.extend_from_slice(agency.as_bytes());
    key
}

pub(crate) fn queue(agency: &str, seq: u64) -> Vec<u8> {
    let mut key = queue_prefix(agency);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

pub(crate) fn queue_seq_of(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

pub(crate) fn counter(agency: &str, date_key: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + AGENCY_BYTES + 4);
    key.push(COUNTER);
    key.extend_from_slice(agency.as_bytes());
    key.extend_from_slice(&date_key.to_be_bytes());
    key
}

/// Splits a counter key into agency and `yyyymmdd`.
pub(crate) fn parse_counter(key: &[u8]) -> Option<(&str, u32)> {
    if key.len() != 1 + AGENCY_BYTES + 4 {
        return None;
    }
    let agency = std::str::from_utf8(&key[1..1 + AGENCY_BYTES]).ok()?;
    let date: [u8; 4] = key[1 + AGENCY_BYTES..].try_into().ok()?;
    Some((agency, u32::from_be_bytes(date)))
}

pub(crate) const CERTIFICATE: u8 = b'C';

/// Where a sender certificate's bytes are: prefix, its SHA-256.
pub(crate) fn certificate(sha256: &[u8; 32]) -> Vec<u8> {
    let mut key = Vec::with_capacity(33);
    key.push(CERTIFICATE);
    key.extend_from_slice(sha256);
    key
}

pub(crate) fn blob(sha256: &[u8; 32]) -> Vec<u8> {
    let mut key = Vec::with_capacity(33);
    key.push(BLOB);
    key.extend_from_slice(sha256);
    key
}

/// Links of one document sort together: prefix, id, NUL, the other document's id.
pub(crate) fn link_prefix(document_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + 2 * document_id.len());
    key.push(LINK);
    key.extend_from_slice(document_id.as_bytes());
    key.push(0);
    key
}

pub(crate) fn link(document_id: &str, other_id: &str) -> Vec<u8> {
    let mut key = link_prefix(document_id);
    key.extend_from_slice(other_id.as_bytes());
    key
}

pub(crate) const WATCH: u8 = b'w';
pub(crate) const OVERDUE: u8 = b'o';
pub(crate) const DEAD_LETTER: u8 = b'x';

/// Watched deadlines sort by time, so the watcher reads only those due: one
/// block per group and second, under the latest deadline it holds: prefix,
/// deadline (ms, big-endian), the group's commit number, the block's index.
pub(crate) fn watch_block(deadline_unix_ms: i64, commit_seq: u64, index: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(21);
    key.push(WATCH);
    key.extend_from_slice(&(deadline_unix_ms.max(0) as u64).to_be_bytes());
    key.extend_from_slice(&commit_seq.to_be_bytes());
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// Every watch key with a deadline at or before `unix_ms`.
pub(crate) fn watch_until(unix_ms: i64) -> Vec<u8> {
    let mut key = vec![WATCH];
    key.extend_from_slice(&(unix_ms.max(0) as u64).to_be_bytes());
    key.push(u8::MAX);
    key
}

/// Overdue deliveries sort by recipient: prefix, recipient, document id, NUL, kind.
pub(crate) fn overdue_prefix(recipient: &str) -> Vec<u8> {
    let mut key = vec![OVERDUE];
    key.extend_from_slice(recipient.as_bytes());
    key
}

pub(crate) fn overdue(recipient: &str, document_id: &str, kind: u8) -> Vec<u8> {
    let mut key = overdue_prefix(recipient);
    key.extend_from_slice(document_id.as_bytes());
    key.push(0);
    key.push(kind);
    key
}

/// Dead letters: prefix, recipient, document id.
pub(crate) fn dead_letter_prefix(recipient: &str) -> Vec<u8> {
    let mut key = vec![DEAD_LETTER];
    key.extend_from_slice(recipient.as_bytes());
    key
}

pub(crate) fn dead_letter(recipient: &str, document_id: &str) -> Vec<u8> {
    let mut key = dead_letter_prefix(recipient);
    key.extend_from_slice(document_id.as_bytes());
    key
}

/// Audit entries are stored a group at a time, under the sequence number of
/// the block's last entry: prefix, seq (u64 BE). The block holding entry n is
/// the first at or after `audit(n)`.
pub(crate) fn audit(seq: u64) -> [u8; 9] {
    let mut key = [AUDIT; 9];
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The permanent duplicate index as directories before its run files kept
/// it (still read): prefix, the id of a document that left the live store
/// for an archive.
pub(crate) const ARCHIVED: u8 = b'i';
/// A committed run file of the duplicate index (`embedded/ids.rs`):
/// prefix, the file's name.
pub(crate) const ID_RUN: u8 = b'I';
/// Report figures kept for archived documents: prefix, agency, `yyyymmdd`.
pub(crate) const RETAINED: u8 = b'R';
/// Live documents by acceptance time, for retention: prefix, accepted at
/// (ms, big-endian), id; the value is the sequence number of the
/// document's send entry in the audit chain.
pub(crate) const ACCEPTED: u8 = b't';
/// How many documents name an attachment: prefix, its SHA-256.
pub(crate) const BLOB_REFS: u8 = b'B';
/// An archive file's committed state: prefix, the file's name.
pub(crate) const ARCHIVE_FILE: u8 = b'Z';
/// The name of the archive file retention appends to now, if any.
pub(crate) const META_ARCHIVE_OPEN: &[u8] = b"m:archive_open";
/// Set once the retention indexes (`t`, `B`) cover every stored document:
/// a directory written before retention gets them built once, at open.
pub(crate) const META_RETENTION: &[u8] = b"m:retention";

pub(crate) fn archived(document_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + document_id.len());
    key.push(ARCHIVED);
    key.extend_from_slice(document_id.as_bytes());
    key
}

pub(crate) fn retained(agency: &str, date_key: u32) -> Vec<u8> {
    let mut key = counter(agency, date_key);
    key[0] = RETAINED;
    key
}

pub(crate) fn accepted(accepted_at_unix_ms: i64, document_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(9 + document_id.len());
    key.push(ACCEPTED);
    key.extend_from_slice(&(accepted_at_unix_ms.max(0) as u64).to_be_bytes());
    key.extend_from_slice(document_id.as_bytes());
    key
}

/// Splits an acceptance key into its time and document id.
pub(crate) fn parse_accepted(key: &[u8]) -> Option<(i64, &str)> {
    let at: [u8; 8] = key.get(1..9)?.try_into().ok()?;
    let id = std::str::from_utf8(key.get(9..)?).ok()?;
    Some((u64::from_be_bytes(at) as i64, id))
}

pub(crate) fn blob_refs(sha256: &[u8; 32]) -> Vec<u8> {
    let mut key = blob(sha256);
    key[0] = BLOB_REFS;
    key
}

pub(crate) fn archive_file(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + name.len());
    key.push(ARCHIVE_FILE);
    key.extend_from_slice(name.as_bytes());
    key
}

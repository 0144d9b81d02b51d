//! The embedded engine's part of retention: the duplicate index (run files
//! named by `I` keys; `i` keys in directories from before them), the figures kept (`R`), live documents by acceptance time
//! (`t`), attachment reference counts (`B`) and archive files (`Z`); how a
//! group's retirements become removals; and the one-time build of the
//! indexes for a directory written before retention.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use super::{ids, Changes, Inner};
use crate::audit::AuditEntry;
use crate::engine::Rows;
use crate::error::StoreError;
use crate::keys;
use crate::payload;
use crate::records::{
    decode, encode, ArchiveFile, ArchivedDocument, OverdueRecord, RetainedFigures, StoredArchived,
    StoredBlob, StoredDocument,
};
use crate::rules::{ChangeSet, RetiredDocument};

/// The retention indexes' version, in `m:retention`.
const RETENTION_INDEXES: u64 = 1;

impl Inner {
    pub(super) fn blob_refs_of(&self, sha256: &[u8; 32]) -> Result<Option<u64>, StoreError> {
        if self.get(&keys::blob(sha256))?.is_none() {
            return Ok(None);
        }
        Ok(Some(
            self.decoded::<u64>(&keys::blob_refs(sha256))?.unwrap_or(0),
        ))
    }

    pub(super) fn archived_of(
        &self,
        document_id: &str,
    ) -> Result<Option<ArchivedDocument>, StoreError> {
        match self.decoded::<StoredArchived>(&keys::archived(document_id))? {
            Some(stored) => Ok(Some(stored.into_record(document_id.to_owned()))),
            None => self.ids.get(document_id),
        }
    }

    pub(super) fn overdue_of(
        &self,
        recipient: &str,
        document_id: &str,
    ) -> Result<Vec<OverdueRecord>, StoreError> {
        let mut prefix = keys::overdue_prefix(recipient);
        prefix.extend_from_slice(document_id.as_bytes());
        prefix.push(0);
        self.scan_prefix(&prefix)
            .map(|item| {
                let (key, bytes) = item?;
                decode(&key, &bytes)
            })
            .collect()
    }

    /// The oldest live audit entries while recorded before `before_unix_ms`
    /// or numbered at most `through_seq`, at most `limit`.
    pub(super) fn audit_oldest(
        &self,
        before_unix_ms: i64,
        through_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut entries = Vec::new();
        let blocks = self.layers.range(
            &self.main,
            Bound::Included(vec![keys::AUDIT]),
            Bound::Included(keys::audit(u64::MAX).to_vec()),
        );
        for item in blocks {
            let (key, bytes) = item?;
            let block: Vec<AuditEntry> = decode(&key, &bytes)?;
            for entry in block {
                if entries.len() >= limit
                    || (entry.at_unix_ms >= before_unix_ms && entry.seq > through_seq)
                {
                    return Ok(entries);
                }
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    pub(super) fn send_seq_of(
        &self,
        document_id: &str,
        accepted_at_unix_ms: i64,
    ) -> Result<Option<u64>, StoreError> {
        self.decoded(&keys::accepted(accepted_at_unix_ms, document_id))
    }

    pub(super) fn open_archive_file(&self) -> Result<Option<ArchiveFile>, StoreError> {
        let Some(name) = self.get(keys::META_ARCHIVE_OPEN)? else {
            return Ok(None);
        };
        let name = String::from_utf8_lossy(&name).into_owned();
        self.decoded(&keys::archive_file(&name))
    }

    pub(super) fn archived_rows(&self) -> Rows<'_, ArchivedDocument> {
        let in_tree = self.scan_prefix(&[keys::ARCHIVED]).map(|item| {
            let (key, bytes) = item?;
            let stored: StoredArchived = decode(&key, &bytes)?;
            Ok(stored.into_record(String::from_utf8_lossy(&key[1..]).into_owned()))
        });
        Box::new(in_tree.chain(self.ids.walk()))
    }

    pub(super) fn retained_rows(
        &self,
    ) -> Result<BTreeMap<(String, u32), RetainedFigures>, StoreError> {
        let mut rows = BTreeMap::new();
        for item in self.scan_prefix(&[keys::RETAINED]) {
            let (key, bytes) = item?;
            // The same layout as a counter's key.
            let mut as_counter = key.to_vec();
            as_counter[0] = keys::COUNTER;
            if let Some((agency, date)) = keys::parse_counter(&as_counter) {
                rows.insert((agency.to_owned(), date), decode(&key, &bytes)?);
            }
        }
        Ok(rows)
    }

    pub(super) fn candidates(
        &self,
        cutoff_unix_ms: i64,
        after: Option<(i64, String)>,
        limit: usize,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let start = match &after {
            Some((at, id)) => Bound::Excluded(keys::accepted(*at, id)),
            None => Bound::Included(vec![keys::ACCEPTED]),
        };
        let end = Bound::Excluded(keys::accepted(cutoff_unix_ms, ""));
        self.layers
            .range_limited(&self.main, start, end, limit)
            .take(limit)
            .map(|item| {
                let (key, _) = item?;
                keys::parse_accepted(&key)
                    .map(|(at, id)| (at, id.to_owned()))
                    .ok_or_else(|| StoreError::Corrupt {
                        key: String::from_utf8_lossy(&key).into_owned(),
                        reason: "an acceptance key without a time and id".into(),
                    })
            })
            .collect()
    }

    pub(super) fn archive_file_rows(&self) -> Result<Vec<ArchiveFile>, StoreError> {
        self.scan_prefix(&[keys::ARCHIVE_FILE])
            .map(|item| {
                let (key, bytes) = item?;
                decode(&key, &bytes)
            })
            .collect()
    }
}

/// A group's retention, as keys: the acceptance index of the documents it
/// accepted, every key of the documents it retired removed, the duplicate
/// index and the kept figures written, reference counts moved, attachments
/// no document names removed, the archived audit entries removed, and the
/// archive files' states. Returns the payload bytes to give back once the
/// group is durable (never before: until then the documents are live).
pub(super) fn stage(
    inner: &Inner,
    staged: &mut Changes,
    changes: &mut ChangeSet,
    send_seqs: &HashMap<String, u64>,
    commit_seq: u64,
) -> Result<(Vec<payload::Extent>, ids::Pending), sled::Error> {
    let mut released = Vec::new();
    for document in &changes.documents {
        if let Some(seq) = send_seqs.get(&document.document_id) {
            staged.insert(
                keys::accepted(document.accepted_at_unix_ms, &document.document_id),
                Some(encode(seq)),
            );
        }
    }
    for retired in std::mem::take(&mut changes.retired) {
        released.extend(retire(inner, staged, &retired)?);
    }
    let (run_keys, pending) = inner
        .ids
        .stage(std::mem::take(&mut changes.archived), commit_seq)
        .map_err(sled::Error::Io)?;
    staged.extend(run_keys);
    for ((agency, date_key), figures) in std::mem::take(&mut changes.retained) {
        let key = keys::retained(&agency, date_key);
        let mut total: RetainedFigures = read(inner, staged, &key)?.unwrap_or_default();
        total.add(&figures);
        staged.insert(key, Some(encode(&total)));
    }
    for (digest, change) in std::mem::take(&mut changes.blob_refs) {
        let key = keys::blob_refs(&digest);
        let refs: u64 = read(inner, staged, &key)?.unwrap_or(0);
        let refs = (refs as i64).saturating_add(change).max(0) as u64;
        staged.insert(key, Some(encode(&refs)));
    }
    for digest in std::mem::take(&mut changes.blobs_dropped) {
        let key = keys::blob(&digest);
        if let Some(blob) = read::<StoredBlob>(inner, staged, &key)? {
            released.extend(blob.extents);
        }
        staged.insert(key, None);
        staged.insert(keys::blob_refs(&digest), None);
    }
    if let Some(through) = changes.audit_pruned_through.take() {
        prune_audit(inner, staged, through)?;
    }
    for file in std::mem::take(&mut changes.archive_files) {
        staged.insert(keys::archive_file(&file.name), Some(encode(&file)));
    }
    match changes.open_archive.take() {
        Some(Some(name)) => {
            staged.insert(keys::META_ARCHIVE_OPEN.to_vec(), Some(name.into_bytes()));
        }
        Some(None) => {
            staged.insert(keys::META_ARCHIVE_OPEN.to_vec(), None);
        }
        None => {}
    }
    Ok((released, pending))
}

/// The duplicate index's committed runs, as the groups named them.
pub(super) fn id_runs(
    main: &sled::Tree,
    layers: &crate::layers::Layers,
) -> Result<Vec<(String, ids::RunRecord)>, StoreError> {
    layers
        .scan_prefix(main, &[keys::ID_RUN])
        .map(|item| {
            let (key, bytes) = item?;
            Ok((
                String::from_utf8_lossy(&key[1..]).into_owned(),
                decode(&key, &bytes)?,
            ))
        })
        .collect()
}

/// A value as the group leaves it so far, else as stored.
fn read<T: serde::de::DeserializeOwned>(
    inner: &Inner,
    staged: &Changes,
    key: &[u8],
) -> Result<Option<T>, sled::Error> {
    let bytes = match staged.get(key) {
        Some(value) => value.clone().map(sled::IVec::from),
        None => inner.get(key)?,
    };
    Ok(bytes.and_then(|bytes| decode(key, &bytes).ok()))
}

/// Removes every key of one document; returns its envelope's bytes.
fn retire(
    inner: &Inner,
    staged: &mut Changes,
    retired: &RetiredDocument,
) -> Result<Vec<payload::Extent>, sled::Error> {
    let id = &retired.document_id;
    let document_key = keys::document(id);
    let envelope =
        read::<StoredDocument>(inner, staged, &document_key)?.map(|document| document.envelope);
    staged.insert(document_key, None);
    staged.insert(keys::deliveries(id), None);
    staged.insert(keys::accepted(retired.accepted_at_unix_ms, id), None);
    for other in &retired.links {
        staged.insert(keys::link(id, other), None);
    }
    for (recipient, kind) in &retired.overdue {
        staged.insert(keys::overdue(recipient, id, kind.byte()), None);
    }
    for recipient in &retired.dead_letters {
        staged.insert(keys::dead_letter(recipient, id), None);
    }
    Ok(envelope.into_iter().collect())
}

/// Removes the audit entries through `through`: whole blocks, and the
/// older part of a block that straddles it (kept under the same key).
fn prune_audit(inner: &Inner, staged: &mut Changes, through: u64) -> Result<(), sled::Error> {
    let blocks = inner.layers.range(
        &inner.main,
        Bound::Included(vec![keys::AUDIT]),
        Bound::Included(keys::audit(u64::MAX).to_vec()),
    );
    for item in blocks {
        let (key, bytes) = item?;
        let Ok(block) = decode::<Vec<AuditEntry>>(&key, &bytes) else {
            continue;
        };
        let last = block.last().map_or(0, |entry| entry.seq);
        if last <= through {
            staged.insert(key.to_vec(), None);
            continue;
        }
        let kept: Vec<AuditEntry> = block.into_iter().filter(|e| e.seq > through).collect();
        staged.insert(key.to_vec(), Some(encode(&kept)));
        break;
    }
    Ok(())
}

/// Builds the acceptance index and the attachments' reference counts of a
/// directory written before retention, once, at open (the live layers
/// already hold the journal's groups, so every document is seen).
pub(super) fn build_indexes(
    main: &sled::Tree,
    layers: &crate::layers::Layers,
    db: &sled::Db,
) -> Result<(), StoreError> {
    if super::read_u64(main, keys::META_RETENTION)?.is_some() {
        return Ok(());
    }
    let mut sends: HashMap<String, u64> = HashMap::new();
    for item in layers.scan_prefix(main, &[keys::AUDIT]) {
        let (key, bytes) = item?;
        for entry in decode::<Vec<AuditEntry>>(&key, &bytes)? {
            if entry.kind == crate::audit::AuditKind::Send {
                sends.insert(entry.document_id, entry.seq);
            }
        }
    }
    let mut refs: HashMap<[u8; 32], u64> = HashMap::new();
    for item in layers.scan_prefix(main, &[keys::DOCUMENT]) {
        let (key, bytes) = item?;
        let document: StoredDocument = decode(&key, &bytes)?;
        let seq = sends.get(&document.document_id).copied().unwrap_or(0);
        main.insert(
            keys::accepted(document.accepted_at_unix_ms, &document.document_id),
            encode(&seq),
        )?;
        for attachment in &document.attachments {
            *refs.entry(attachment.sha256).or_insert(0) += 1;
        }
    }
    for (digest, count) in refs {
        main.insert(keys::blob_refs(&digest), encode(&count))?;
    }
    db.flush()?;
    // Last, once everything before it is on disk.
    main.insert(keys::META_RETENTION, &RETENTION_INDEXES.to_be_bytes())?;
    db.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AcceptOutcome, AttachmentRef, DocumentSignatureState, PendingBlob, Store};

    fn document(number: u32, attachment: &[u8]) -> crate::DocumentRecord {
        let header_bytes = format!("header {number}").into_bytes();
        crate::DocumentRecord {
            document_id: format!("000.00.00.G22,2026/11/22,{number}/VPCP"),
            sender: "000.00.00.G22".into(),
            date_key: 20261122,
            subject: "Về việc".into(),
            content_sha256: crate::audit::sha256(&header_bytes),
            header_bytes,
            signature: vec![1; 64],
            sender_certificate: b"certificate".to_vec(),
            document_signature: None,
            document_signature_state: DocumentSignatureState::Absent,
            accepted_at_unix_ms: 1_000 + i64::from(number),
            recipients: vec!["000.00.00.H41".into()],
            refused: Vec::new(),
            attachments: vec![AttachmentRef {
                sha256: crate::audit::sha256(attachment),
                size_bytes: attachment.len() as u64,
            }],
        }
    }

    /// A directory written before retention has no acceptance index and no
    /// reference counts: the first open builds both from its documents.
    #[test]
    fn a_directory_from_before_retention_gets_its_indexes_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let shared = b"shared attachment".to_vec();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let store = Store::open(dir.path(), &crate::StoreOptions::default()).unwrap();
            for number in [1, 2] {
                let blob = PendingBlob {
                    sha256: crate::audit::sha256(&shared),
                    size_bytes: shared.len() as u64,
                    extents: Vec::new(),
                    inline: Some(shared.clone()),
                };
                let outcome = store.accept(document(number, &shared), vec![blob]).await;
                assert!(matches!(outcome, Ok(AcceptOutcome::Accepted(_))));
            }
            store.checkpoint().await.unwrap();
        });
        // The store just dropped lets go of its directory once its writer
        // has finished.
        let options = crate::StoreOptions::default();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let db = loop {
            // The store's own sled settings: sled refuses others.
            match sled::Config::new()
                .path(dir.path())
                .cache_capacity(options.cache_bytes)
                .segment_size(super::super::SLED_SEGMENT_BYTES)
                .open()
            {
                Ok(db) => break db,
                Err(error) if std::time::Instant::now() < deadline => {
                    let _ = error;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(error) => panic!("the directory opens again: {error}"),
            }
        };
        // As an earlier hub left it: the indexes and their mark taken out.
        {
            let main = db.open_tree("main").unwrap();
            assert!(main.get(keys::META_RETENTION).unwrap().is_some());
            main.remove(keys::META_RETENTION).unwrap();
            for prefix in [keys::ACCEPTED, keys::BLOB_REFS] {
                for key in main.scan_prefix([prefix]).keys() {
                    main.remove(key.unwrap()).unwrap();
                }
            }
            assert!(main.scan_prefix([keys::ACCEPTED]).next().is_none());
            db.flush().unwrap();
        }
        drop(db);
        let (inner, mut writer) = super::super::open(dir.path(), &options).unwrap();
        assert!(inner.get(keys::META_RETENTION).unwrap().is_some());
        let candidates = inner.candidates(i64::MAX, None, 10).unwrap();
        assert_eq!(
            candidates.iter().map(|(at, _)| *at).collect::<Vec<_>>(),
            vec![1_001, 1_002]
        );
        assert_eq!(
            inner.blob_refs_of(&crate::audit::sha256(&shared)).unwrap(),
            Some(2),
            "both documents name the attachment"
        );
        crate::engine::GroupWriter::close(&mut writer);
    }

    /// What keeps the duplicate check permanent costs little per document:
    /// a 2021-like document (four recipients, as the fan-out of 3.63 rounds
    /// up) takes its id as the key and about 120 bytes of value.
    #[test]
    fn a_duplicate_index_entry_stays_small() {
        let id = "000.00.00.G22,2026/01/05,1234/VPCP";
        let entry = StoredArchived {
            content_sha256: [7; 32],
            accepted_at_unix_ms: 1_767_600_000_000,
            recipients: [
                "000.00.00.H41",
                "000.00.00.H42",
                "000.00.00.H43",
                "000.00.00.H44",
            ]
            .map(String::from)
            .to_vec(),
            refused: Vec::new(),
            document_signature_state: crate::DocumentSignatureState::Absent,
            archive: "2026-01.truca".into(),
            archive_offset: 123_456_789,
            archived_at_unix_ms: 1_770_200_000_000,
        };
        let key = keys::archived(id).len();
        let value = encode(&entry).len();
        assert!(
            (100..=130).contains(&value) && key == 35,
            "key {key} B, value {value} B"
        );
    }
}

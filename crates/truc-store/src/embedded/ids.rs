//! The permanent duplicate index of the embedded engine, kept out of sled:
//! sorted, append-only run files in `ids/`, one or more per month of the
//! document ids' own dates. Kept in sled, the index grew the live store and
//! sled's page table (and so the hub's memory) by every archived document;
//! here it costs only disk, and a resend looks only in its id's month.
//!
//! A retention group writes its archived documents' entries as a new run
//! per month, merged with that month's newest runs while they are no
//! larger (a binary counter: each month keeps a logarithmic number of runs,
//! and each entry is rewritten a logarithmic number of times). The files
//! are synced before the group's journal record, which names the runs the
//! month has from then on (`I` keys); a file no committed group names is a
//! leftover of a crash and is removed at open, as are runs a merge replaced.
//!
//! A run: `TRUCIDS1`, then its entries in id order (id length u16, id,
//! value length u32, value, CRC-32 of id and value; all little-endian), a
//! table of each entry's offset (u64), and a footer (entry count u64,
//! table's offset u64, `TRUCIDS1`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::records::{decode, encode, ArchivedDocument, StoredArchived};

/// The index's directory, under the data directory.
pub(crate) const IDS_DIR: &str = "ids";
const MAGIC: &[u8; 8] = b"TRUCIDS1";
const FOOTER_BYTES: u64 = 24;
/// Most bytes of one entry read at a guess: ids are ~35 bytes and values
/// ~120, so one read usually holds a whole entry.
const ENTRY_GUESS_BYTES: usize = 256;
/// Read size when walking a run from start to end.
const WALK_CHUNK_BYTES: usize = 64 << 10;

/// A committed run, as its group's journal record names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RunRecord {
    /// `yyyymm` of the ids' dates.
    pub month: u32,
    pub entries: u64,
    pub bytes: u64,
}

/// One open run file.
struct Run {
    name: String,
    record: RunRecord,
    table_at: u64,
    file: File,
    /// Until its group is durable: lookups read it (its documents are
    /// still live, so an answer from either place is the same), walks
    /// do not (a walk lists what has left the live store).
    committed: AtomicBool,
}

/// Every run, by month, oldest first.
pub(crate) struct IdIndex {
    dir: PathBuf,
    runs: RwLock<BTreeMap<u32, Vec<Arc<Run>>>>,
}

/// A group's change to the index, settled once the group is durable.
#[derive(Default)]
pub(crate) struct Pending {
    added: Vec<Arc<Run>>,
    replaced: Vec<Arc<Run>>,
}

impl Pending {
    pub(crate) fn is_empty(&self) -> bool {
        self.added.is_empty()
    }
}

/// `yyyymm` of a document id's date (0 for an id without one).
pub(crate) fn month_of(document_id: &str) -> u32 {
    document_id
        .parse::<truc_domain::DocumentId>()
        .map_or(0, |id| id.date().ordinal_key() / 100)
}

fn corrupt(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        key: path.display().to_string(),
        reason: reason.into(),
    }
}

impl IdIndex {
    /// Opens the runs the committed groups name and removes every other
    /// file of the directory (a crash's leftovers, runs merges replaced).
    pub(crate) fn open(
        data_dir: &Path,
        committed: Vec<(String, RunRecord)>,
    ) -> Result<IdIndex, StoreError> {
        let dir = data_dir.join(IDS_DIR);
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir)
                .map_err(|error| StoreError::io("creating", &dir, error))?;
            // Its entry in the data directory must outlive a power cut as
            // surely as the runs in it.
            sync_dir(data_dir)?;
        }
        let mut runs: BTreeMap<u32, Vec<Arc<Run>>> = BTreeMap::new();
        let mut named = std::collections::HashSet::new();
        for (name, record) in committed {
            let run = Run::open(&dir, &name, record)?;
            named.insert(name);
            runs.entry(record.month).or_default().push(Arc::new(run));
        }
        // Oldest first: larger runs were written earlier.
        for month in runs.values_mut() {
            month.sort_by(|a, b| a.name.cmp(&b.name));
        }
        let listing =
            std::fs::read_dir(&dir).map_err(|error| StoreError::io("listing", &dir, error))?;
        let mut removed = false;
        for entry in listing.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !named.contains(&name) {
                let path = entry.path();
                std::fs::remove_file(&path)
                    .map_err(|error| StoreError::io("removing", &path, error))?;
                removed = true;
            }
        }
        if removed {
            sync_dir(&dir)?;
        }
        Ok(IdIndex {
            dir,
            runs: RwLock::new(runs),
        })
    }

    /// The entry of an archived document, if a run holds it.
    pub(crate) fn get(&self, document_id: &str) -> Result<Option<ArchivedDocument>, StoreError> {
        let candidates: Vec<Arc<Run>> = {
            let runs = self.runs.read().unwrap_or_else(|p| p.into_inner());
            match runs.get(&month_of(document_id)) {
                Some(month) => month.clone(),
                None => return Ok(None),
            }
        };
        for run in candidates.iter().rev() {
            if let Some(stored) = run.find(document_id.as_bytes(), &self.dir)? {
                return Ok(Some(stored.into_record(document_id.to_owned())));
            }
        }
        Ok(None)
    }

    /// Every committed entry, month by month (each run in id order).
    pub(crate) fn walk(&self) -> impl Iterator<Item = Result<ArchivedDocument, StoreError>> {
        let runs: Vec<Arc<Run>> = {
            let runs = self.runs.read().unwrap_or_else(|p| p.into_inner());
            runs.values()
                .flatten()
                .filter(|run| run.committed.load(Ordering::Acquire))
                .cloned()
                .collect()
        };
        let dir = self.dir.clone();
        runs.into_iter().flat_map(move |run| {
            let dir = dir.clone();
            let mut cursor = Cursor::new(run);
            std::iter::from_fn(move || {
                cursor.next_entry(&dir).transpose().map(|entry| {
                    let (id, bytes) = entry?;
                    let id = String::from_utf8_lossy(&id).into_owned();
                    let stored: StoredArchived = decode(id.as_bytes(), &bytes)?;
                    Ok(stored.into_record(id))
                })
            })
        })
    }

    /// The bytes the runs hold.
    pub(crate) fn size_bytes(&self) -> u64 {
        let runs = self.runs.read().unwrap_or_else(|p| p.into_inner());
        runs.values().flatten().map(|run| run.record.bytes).sum()
    }

    /// Writes `archived` as runs (merged with the newest runs of their
    /// months as the binary counter says) and syncs them; lookups see them
    /// at once. Returns the `I` keys to write in the group, and what to
    /// settle once it is durable or has failed.
    pub(crate) fn stage(
        &self,
        archived: Vec<ArchivedDocument>,
        commit_seq: u64,
    ) -> std::io::Result<(Vec<KeyChange>, Pending)> {
        let mut by_month: BTreeMap<u32, Vec<Entry>> = BTreeMap::new();
        for document in archived {
            by_month
                .entry(month_of(&document.document_id))
                .or_default()
                .push((
                    document.document_id.as_bytes().to_vec(),
                    encode(&StoredArchived::new(&document)),
                ));
        }
        let mut keys = Vec::new();
        let mut pending = Pending::default();
        for (month, mut entries) in by_month {
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let replaced = self.to_merge(month, entries.len() as u64);
            let name = format!("{month:06}-{commit_seq:020}.ids");
            let run = match self.write_run(&name, month, entries, &replaced) {
                Ok(run) => Arc::new(run),
                Err(error) => {
                    self.abandon(pending);
                    return Err(error);
                }
            };
            keys.push((run_key(&name), Some(encode(&run.record))));
            for old in &replaced {
                keys.push((run_key(&old.name), None));
            }
            self.runs
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .entry(month)
                .or_default()
                .push(run.clone());
            pending.added.push(run);
            pending.replaced.extend(replaced);
        }
        if !pending.is_empty() {
            if let Err(error) = sync_dir(&self.dir) {
                self.abandon(pending);
                return Err(std::io::Error::other(error.to_string()));
            }
        }
        Ok((keys, pending))
    }

    /// The newest runs of `month` a new run of `entries` takes in: each
    /// while it is no larger than what is merged so far.
    fn to_merge(&self, month: u32, entries: u64) -> Vec<Arc<Run>> {
        let runs = self.runs.read().unwrap_or_else(|p| p.into_inner());
        let mut total = entries;
        let mut taken = Vec::new();
        for run in runs.get(&month).into_iter().flatten().rev() {
            if run.record.entries > total {
                break;
            }
            total += run.record.entries;
            taken.push(run.clone());
        }
        taken
    }

    /// The group is durable: its runs are walked from now on, and the runs
    /// they replaced leave (an open lookup keeps its handle).
    pub(crate) fn settle(&self, pending: Pending) {
        {
            let mut runs = self.runs.write().unwrap_or_else(|p| p.into_inner());
            for run in &pending.added {
                run.committed.store(true, Ordering::Release);
            }
            for old in &pending.replaced {
                if let Some(month) = runs.get_mut(&old.record.month) {
                    month.retain(|run| !Arc::ptr_eq(run, old));
                }
            }
        }
        for old in pending.replaced {
            let path = self.dir.join(&old.name);
            // What cannot go now goes at the next open.
            if let Err(error) = std::fs::remove_file(&path) {
                tracing::warn!(%error, path = %path.display(), "cannot remove a replaced id run");
            }
        }
    }

    /// The group failed: its runs leave, the runs they would replace stay.
    pub(crate) fn abandon(&self, pending: Pending) {
        {
            let mut runs = self.runs.write().unwrap_or_else(|p| p.into_inner());
            for added in &pending.added {
                if let Some(month) = runs.get_mut(&added.record.month) {
                    month.retain(|run| !Arc::ptr_eq(run, added));
                }
            }
        }
        for added in pending.added {
            let _ = std::fs::remove_file(self.dir.join(&added.name));
        }
    }

    /// Writes one run from `entries` (sorted) and the entries of `merged`,
    /// synced.
    fn write_run(
        &self,
        name: &str,
        month: u32,
        entries: Vec<Entry>,
        merged: &[Arc<Run>],
    ) -> std::io::Result<Run> {
        let path = self.dir.join(name);
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        let mut out = BufWriter::with_capacity(WALK_CHUNK_BYTES, &file);
        out.write_all(MAGIC)?;
        let mut at = MAGIC.len() as u64;
        let mut table: Vec<u64> = Vec::new();
        // The newest entries first: they win a tie.
        let mut sources: Vec<Box<dyn Iterator<Item = RawEntry>>> =
            vec![Box::new(entries.into_iter().map(Ok))];
        for run in merged {
            let mut cursor = Cursor::new(run.clone());
            let dir = self.dir.clone();
            sources.push(Box::new(std::iter::from_fn(move || {
                cursor.next_entry(&dir).transpose()
            })));
        }
        let failed = |error: StoreError| std::io::Error::other(error.to_string());
        let mut heads: Vec<Option<Entry>> = Vec::with_capacity(sources.len());
        for source in &mut sources {
            heads.push(source.next().transpose().map_err(failed)?);
        }
        while let Some(index) = smallest(&heads) {
            let (id, value) = heads[index].take().expect("the smallest head is some");
            table.push(at);
            at += write_entry(&mut out, &id, &value)?;
            for (head, source) in heads.iter_mut().zip(&mut sources) {
                let same = matches!(head, Some((other, _)) if *other == id);
                if head.is_none() || same {
                    *head = source.next().transpose().map_err(failed)?;
                }
            }
        }
        let table_at = at;
        for offset in &table {
            out.write_all(&offset.to_le_bytes())?;
        }
        out.write_all(&(table.len() as u64).to_le_bytes())?;
        out.write_all(&table_at.to_le_bytes())?;
        out.write_all(MAGIC)?;
        out.flush()?;
        drop(out);
        file.sync_data()?;
        let bytes = table_at + 8 * table.len() as u64 + FOOTER_BYTES;
        Ok(Run {
            name: name.to_owned(),
            record: RunRecord {
                month,
                entries: table.len() as u64,
                bytes,
            },
            table_at,
            file,
            committed: AtomicBool::new(false),
        })
    }
}

/// Which head holds the smallest id (the first of equals).
fn smallest(heads: &[Option<Entry>]) -> Option<usize> {
    let mut best: Option<(usize, &[u8])> = None;
    for (index, head) in heads.iter().enumerate() {
        if let Some((id, _)) = head {
            if best.is_none_or(|(_, smallest)| id.as_slice() < smallest) {
                best = Some((index, id));
            }
        }
    }
    best.map(|(index, _)| index)
}

/// An entry's id and value.
type Entry = (Vec<u8>, Vec<u8>);
/// An entry, or why it could not be read.
type RawEntry = Result<Entry, StoreError>;
/// A key of the group and its new value (`None`: removed).
type KeyChange = (Vec<u8>, Option<Vec<u8>>);

/// The key naming a committed run.
pub(crate) fn run_key(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + name.len());
    key.push(crate::keys::ID_RUN);
    key.extend_from_slice(name.as_bytes());
    key
}

fn write_entry(out: &mut impl Write, id: &[u8], value: &[u8]) -> std::io::Result<u64> {
    let id_len = u16::try_from(id.len()).map_err(std::io::Error::other)?;
    let value_len = u32::try_from(value.len()).map_err(std::io::Error::other)?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(id);
    crc.update(value);
    out.write_all(&id_len.to_le_bytes())?;
    out.write_all(id)?;
    out.write_all(&value_len.to_le_bytes())?;
    out.write_all(value)?;
    out.write_all(&crc.finalize().to_le_bytes())?;
    Ok(2 + id.len() as u64 + 4 + value.len() as u64 + 4)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(|error| StoreError::io("syncing", dir, error))
}

impl Run {
    fn open(dir: &Path, name: &str, record: RunRecord) -> Result<Run, StoreError> {
        let path = dir.join(name);
        let file = File::open(&path).map_err(|error| {
            StoreError::io(
                "opening the duplicate index's run (a committed group names it)",
                &path,
                error,
            )
        })?;
        let length = file
            .metadata()
            .map_err(|error| StoreError::io("reading the length of", &path, error))?
            .len();
        if length != record.bytes || length < MAGIC.len() as u64 + FOOTER_BYTES {
            return Err(corrupt(
                &path,
                format!("{length} bytes, its group wrote {}", record.bytes),
            ));
        }
        let mut footer = [0u8; FOOTER_BYTES as usize];
        file.read_exact_at(&mut footer, length - FOOTER_BYTES)
            .map_err(|error| StoreError::io("reading", &path, error))?;
        let entries = u64::from_le_bytes(footer[..8].try_into().expect("8 bytes"));
        let table_at = u64::from_le_bytes(footer[8..16].try_into().expect("8 bytes"));
        if &footer[16..] != MAGIC
            || entries != record.entries
            || table_at.checked_add(entries * 8 + FOOTER_BYTES) != Some(length)
        {
            return Err(corrupt(
                &path,
                "its footer does not match its group's record",
            ));
        }
        Ok(Run {
            name: name.to_owned(),
            record,
            table_at,
            file,
            committed: AtomicBool::new(true),
        })
    }

    fn path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.name)
    }

    /// Binary search over the offsets table.
    fn find(&self, id: &[u8], dir: &Path) -> Result<Option<StoredArchived>, StoreError> {
        let (mut low, mut high) = (0u64, self.record.entries);
        while low < high {
            let middle = low + (high - low) / 2;
            let mut offset = [0u8; 8];
            self.file
                .read_exact_at(&mut offset, self.table_at + middle * 8)
                .map_err(|error| StoreError::io("reading", &self.path(dir), error))?;
            let (found, value) = self.entry_at(u64::from_le_bytes(offset), dir)?;
            match found.as_slice().cmp(id) {
                std::cmp::Ordering::Less => low = middle + 1,
                std::cmp::Ordering::Greater => high = middle,
                std::cmp::Ordering::Equal => return decode(id, &value).map(Some),
            }
        }
        Ok(None)
    }

    /// The entry starting at `at`, its CRC checked.
    fn entry_at(&self, at: u64, dir: &Path) -> Result<Entry, StoreError> {
        let room = self.table_at.saturating_sub(at);
        let read = |length: u64| -> Result<Vec<u8>, StoreError> {
            let mut bytes = vec![0u8; length as usize];
            self.file
                .read_exact_at(&mut bytes, at)
                .map_err(|error| StoreError::io("reading", &self.path(dir), error))?;
            Ok(bytes)
        };
        let past = || {
            corrupt(
                &self.path(dir),
                format!("the entry at {at} runs past the entries"),
            )
        };
        let mut bytes = read(room.min(ENTRY_GUESS_BYTES as u64))?;
        if entry_length(&bytes).is_none() {
            // Longer than the guess: its lengths say how long.
            let id_len = match bytes.get(..2) {
                Some(length) => u64::from(u16::from_le_bytes([length[0], length[1]])),
                None => return Err(past()),
            };
            let head = 2 + id_len + 4;
            if head > room {
                return Err(past());
            }
            if (bytes.len() as u64) < head {
                bytes = read(head)?;
            }
            let value_len = u32::from_le_bytes(
                bytes[head as usize - 4..head as usize]
                    .try_into()
                    .expect("4 bytes"),
            );
            let total = head + u64::from(value_len) + 4;
            if total > room {
                return Err(past());
            }
            bytes = read(total)?;
        }
        split_entry(&bytes).ok_or_else(|| {
            corrupt(
                &self.path(dir),
                format!("the entry at {at} fails its CRC-32"),
            )
        })
    }
}

/// The whole length of the entry `bytes` starts with, if `bytes` holds it.
fn entry_length(bytes: &[u8]) -> Option<usize> {
    let id_len = u16::from_le_bytes(bytes.get(..2)?.try_into().ok()?) as usize;
    let value_at = 2 + id_len;
    let value_len =
        u32::from_le_bytes(bytes.get(value_at..value_at + 4)?.try_into().ok()?) as usize;
    let total = value_at + 4 + value_len + 4;
    (bytes.len() >= total).then_some(total)
}

/// The id and value of the entry `bytes` starts with, its CRC checked.
fn split_entry(bytes: &[u8]) -> Option<Entry> {
    let total = entry_length(bytes)?;
    let id_len = u16::from_le_bytes(bytes[..2].try_into().ok()?) as usize;
    let id = &bytes[2..2 + id_len];
    let value = &bytes[2 + id_len + 4..total - 4];
    let crc = u32::from_le_bytes(bytes[total - 4..total].try_into().ok()?);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(id);
    hasher.update(value);
    (hasher.finalize() == crc).then(|| (id.to_vec(), value.to_vec()))
}

/// Reads a run's entries in order, a chunk at a time.
struct Cursor {
    run: Arc<Run>,
    /// The next entry's offset.
    at: u64,
    chunk: Vec<u8>,
    chunk_at: u64,
}

impl Cursor {
    fn new(run: Arc<Run>) -> Cursor {
        Cursor {
            run,
            at: MAGIC.len() as u64,
            chunk: Vec::new(),
            chunk_at: 0,
        }
    }

    fn next_entry(&mut self, dir: &Path) -> Result<Option<Entry>, StoreError> {
        let limit = self.run.table_at;
        if self.at >= limit {
            return Ok(None);
        }
        // The chunk always starts at or before the next entry.
        let start = (self.at - self.chunk_at) as usize;
        let total = match self.chunk.get(start..).and_then(entry_length) {
            Some(total) => total,
            None => {
                let length = (limit - self.at).min(WALK_CHUNK_BYTES as u64) as usize;
                self.chunk.resize(length, 0);
                self.run
                    .file
                    .read_exact_at(&mut self.chunk, self.at)
                    .map_err(|error| StoreError::io("reading", &self.run.path(dir), error))?;
                self.chunk_at = self.at;
                match entry_length(&self.chunk) {
                    Some(total) => total,
                    // An entry longer than a chunk.
                    None => {
                        let (id, value) = self.run.entry_at(self.at, dir)?;
                        self.at += 2 + id.len() as u64 + 4 + value.len() as u64 + 4;
                        self.chunk.clear();
                        return Ok(Some((id, value)));
                    }
                }
            }
        };
        let start = (self.at - self.chunk_at) as usize;
        let entry = split_entry(&self.chunk[start..start + total]).ok_or_else(|| {
            corrupt(
                &self.run.path(dir),
                format!("the entry at {} fails its CRC-32", self.at),
            )
        })?;
        self.at += total as u64;
        Ok(Some(entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archived(month: u32, number: u32) -> ArchivedDocument {
        ArchivedDocument {
            document_id: format!(
                "000.00.00.G22,{}/{:02}/05,{number}/VPCP",
                month / 100,
                month % 100
            ),
            content_sha256: [number as u8; 32],
            accepted_at_unix_ms: i64::from(number),
            recipients: vec!["000.00.00.H41".into(), "000.00.00.H42".into()],
            refused: Vec::new(),
            document_signature_state: crate::DocumentSignatureState::Absent,
            archive: format!("{month}.truca"),
            archive_offset: u64::from(number) * 1000,
            archived_at_unix_ms: 7,
        }
    }

    /// Groups of 100 documents over two months, each group committed.
    fn filled(dir: &Path, groups: u32) -> (IdIndex, Vec<(String, RunRecord)>) {
        let index = IdIndex::open(dir, Vec::new()).unwrap();
        let mut committed: BTreeMap<String, RunRecord> = BTreeMap::new();
        for group in 0..groups {
            let documents = (0..100)
                .map(|n| archived(202601 + (n % 2), group * 100 + n))
                .collect();
            let (keys, pending) = index.stage(documents, u64::from(group) + 1).unwrap();
            for (key, value) in keys {
                let name = String::from_utf8(key[1..].to_vec()).unwrap();
                match value {
                    Some(bytes) => committed.insert(name, decode(&key, &bytes).unwrap()),
                    None => committed.remove(&name),
                };
            }
            index.settle(pending);
        }
        (index, committed.into_iter().collect())
    }

    #[test]
    fn every_id_is_found_once_in_few_runs_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let (index, committed) = filled(dir.path(), 13);
        // 13 groups of 50 per month: runs of 8, 4 and 1 groups' entries.
        assert_eq!(
            committed
                .iter()
                .filter(|(_, run)| run.month == 202601)
                .map(|(_, run)| run.entries)
                .collect::<Vec<_>>(),
            vec![400, 200, 50]
        );
        let files = std::fs::read_dir(dir.path().join(IDS_DIR)).unwrap().count();
        assert_eq!(files, committed.len(), "replaced runs are removed");
        for number in [0, 1, 77, 650, 1299] {
            let expected = archived(202601 + number % 2, number);
            let found = index.get(&expected.document_id).unwrap();
            assert_eq!(found, Some(expected));
        }
        assert_eq!(
            index.get(&archived(202601, 1300).document_id).unwrap(),
            None
        );
        assert_eq!(index.get(&archived(202603, 1).document_id).unwrap(), None);
        let mut walked: Vec<String> = index.walk().map(|d| d.unwrap().document_id).collect();
        assert_eq!(walked.len(), 1300);
        walked.sort();
        walked.dedup();
        assert_eq!(walked.len(), 1300, "each entry once");
        // Opened again from what the groups committed: the same answers.
        drop(index);
        let index = IdIndex::open(dir.path(), committed).unwrap();
        assert_eq!(
            index.get(&archived(202602, 1299).document_id).unwrap(),
            Some(archived(202602, 1299))
        );
        assert_eq!(index.walk().count(), 1300);
    }

    /// A group that wrote its runs and was never committed (a crash before
    /// its journal record) leaves nothing behind at the next open.
    #[test]
    fn runs_no_committed_group_names_leave_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let (index, committed) = filled(dir.path(), 3);
        let (_, pending) = index.stage(vec![archived(202601, 5000)], 99).unwrap();
        assert!(index
            .get(&archived(202601, 5000).document_id)
            .unwrap()
            .is_some());
        assert_eq!(
            index.walk().count(),
            300,
            "a walk lists only committed runs"
        );
        drop((pending, index));
        let index = IdIndex::open(dir.path(), committed.clone()).unwrap();
        assert_eq!(
            index.get(&archived(202601, 5000).document_id).unwrap(),
            None
        );
        let files = std::fs::read_dir(dir.path().join(IDS_DIR)).unwrap().count();
        assert_eq!(files, committed.len());
    }

    /// Entries longer than one read's guess, and than a walk's chunk, are
    /// read whole.
    #[test]
    fn long_entries_are_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let index = IdIndex::open(dir.path(), Vec::new()).unwrap();
        let mut long = archived(202601, 1);
        long.document_id = format!("000.00.00.G22,2026/01/05,1/{}", "V".repeat(600));
        long.recipients = (0..6_000).map(|n| format!("000.00.{n:02}.H41")).collect();
        let documents = vec![archived(202601, 2), long.clone(), archived(202601, 3)];
        let (_, pending) = index.stage(documents, 1).unwrap();
        index.settle(pending);
        assert_eq!(index.get(&long.document_id).unwrap(), Some(long.clone()));
        let walked: Vec<ArchivedDocument> = index.walk().map(Result::unwrap).collect();
        assert_eq!(walked.len(), 3);
        assert!(walked.contains(&long));
        assert!(walked.contains(&archived(202601, 3)));
    }

    #[test]
    fn a_cut_run_is_refused_and_a_flipped_byte_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let (index, committed) = filled(dir.path(), 1);
        drop(index);
        let name = committed[0].0.clone();
        let path = dir.path().join(IDS_DIR).join(&name);
        let bytes = std::fs::read(&path).unwrap();
        let mut flipped = bytes.clone();
        flipped[100] ^= 0x20;
        std::fs::write(&path, &flipped).unwrap();
        let index = IdIndex::open(dir.path(), committed.clone()).unwrap();
        let errors = (0..100)
            .filter(|n| n % 2 == 0)
            .filter(|n| index.get(&archived(202601, *n).document_id).is_err())
            .count();
        assert!(errors >= 1, "some lookup meets the flipped byte");
        assert!(index.walk().any(|entry| entry.is_err()));
        drop(index);
        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        let error = IdIndex::open(dir.path(), committed).err().unwrap();
        assert!(error.to_string().contains(name.as_str()), "{error}");
    }
}

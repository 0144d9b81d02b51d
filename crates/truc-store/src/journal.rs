//! The journal: each group's changes, appended to a segment file and made
//! durable with one `fdatasync` before anyone is answered. The tree is
//! brought up to date from memory in the background (`checkpoint.rs`), and
//! at open the groups the tree does not hold yet are read back from here.
//!
//! An acknowledgement thus costs one sequential write and one sync, instead
//! of sled's page rewrites and log flush; a key changed many times between
//! two checkpoints (a queue item added and removed, a delivery moved four
//! times) reaches the tree once, or not at all.
//!
//! A group also carries the small payload bytes it appended (documents'
//! signed envelopes, small attachments), so that one sync makes them durable
//! too; the payload log itself is synced by the checkpoint, and at open the
//! groups read back write their bytes into it again.
//!
//! A record is `length (u32 LE) | crc32 (u32 LE) | seq (u64 LE) | body`,
//! the CRC over seq and body; the body is the count of changes and each
//! change as `tag (1 put, 0 remove) | key length (u32) | key | value length
//! (u32) | value`, then the count of payload pieces and each as `segment
//! (u32) | offset (u64) | length (u32) | bytes`. Segments are named by the
//! first group they hold, and a segment is removed once a checkpoint covers
//! all of its groups.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::StoreError;
use crate::payload::Extent;

/// The journal's folder in the data directory.
pub const JOURNAL_DIR: &str = "journal";

/// A segment is closed once it holds this much; the next group starts another.
const SEGMENT_BYTES_MAX: u64 = 16 << 20;

const HEADER_BYTES: usize = 16;

/// One change: the key and its new value, `None` for a removal.
pub(crate) type Change = (Vec<u8>, Option<Vec<u8>>);

/// A group read back at open: its sequence number, its changes in order and
/// the payload bytes it carried.
pub(crate) struct Group {
    pub seq: u64,
    pub changes: Vec<Change>,
    pub payload: Vec<(Extent, Vec<u8>)>,
}

pub(crate) struct Journal {
    dir: PathBuf,
    file: File,
    segment_bytes: u64,
    /// Every segment on disk, oldest first: (first seq, path).
    segments: VecDeque<(u64, PathBuf)>,
    buffer: Vec<u8>,
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.log"))
}

fn io_error(path: &Path, what: &str, error: std::io::Error) -> StoreError {
    StoreError::Storage(sled::Error::Io(std::io::Error::new(
        error.kind(),
        format!("{what} {}: {error}", path.display()),
    )))
}

fn damaged(dir: &Path, reason: String) -> StoreError {
    StoreError::DataLost {
        dir: dir.parent().unwrap_or(dir).display().to_string(),
        reason: format!(
            "the journal {} is damaged: {reason}. Restore the directory from a backup",
            dir.display()
        ),
    }
}

/// Makes a new or removed directory entry durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What `Journal::open` read, before anything on disk is changed.
pub(crate) struct Recovered {
    dir: PathBuf,
    found: Vec<(u64, PathBuf)>,
    /// Every group after the checkpoint, in order.
    pub groups: Vec<Group>,
    /// A torn record at the end of the last segment: where to cut it.
    torn: Option<(PathBuf, u64)>,
    last_seq: u64,
}

impl Recovered {
    /// Cuts a torn record off the end (once the caller has found nothing
    /// missing), then starts a fresh segment for the groups to come; one left
    /// empty by a crash is reused.
    pub(crate) fn start(self) -> Result<Journal, StoreError> {
        if let Some((path, at)) = &self.torn {
            // A write torn by a crash: its group was never acknowledged.
            tracing::warn!(segment = %path.display(), at, "cutting a torn record off the journal's end");
            let file = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| io_error(path, "cannot open", e))?;
            file.set_len(*at)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_error(path, "cannot truncate", e))?;
        }
        let first = self.last_seq + 1;
        let path = segment_path(&self.dir, first);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| io_error(&path, "cannot create", e))?;
        sync_dir(&self.dir).map_err(|e| io_error(&self.dir, "cannot sync", e))?;
        let mut segments: VecDeque<(u64, PathBuf)> = self
            .found
            .into_iter()
            .filter(|(seq, _)| *seq != first)
            .collect();
        segments.push_back((first, path));
        Ok(Journal {
            dir: self.dir,
            file,
            segment_bytes: 0,
            segments,
            buffer: Vec::new(),
        })
    }
}

impl Journal {
    /// Reads the journal in `data_dir`, creating the folder if missing, and
    /// returns every group after `after_seq` in order, changing nothing on
    /// disk. A torn record at the end of the last segment (a crash during
    /// its write, so never acknowledged) is noted for `Recovered::start` to
    /// cut; a damaged record with any intact later one after it, damage in
    /// an earlier segment, or a missing group refuses the store.
    pub(crate) fn open(data_dir: &Path, after_seq: u64) -> Result<Recovered, StoreError> {
        let dir = data_dir.join(JOURNAL_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, "cannot create", e))?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| io_error(&dir, "cannot list", e))? {
            let entry = entry.map_err(|e| io_error(&dir, "cannot list", e))?;
            let name = entry.file_name();
            let Some(first) = name
                .to_str()
                .and_then(|name| name.strip_suffix(".log"))
                .and_then(|stem| stem.parse::<u64>().ok())
            else {
                continue;
            };
            found.push((first, entry.path()));
        }
        found.sort();
        let mut groups = Vec::new();
        let mut torn = None;
        let mut last_seq = after_seq;
        let count = found.len();
        for (index, (first, path)) in found.iter().enumerate() {
            let bytes = std::fs::read(path).map_err(|e| io_error(path, "cannot read", e))?;
            let is_last = index + 1 == count;
            let (records, valid_bytes) = parse_records(&bytes);
            if valid_bytes < bytes.len() {
                let before = records.last().map_or(last_seq, |record| record.seq);
                if !is_last {
                    return Err(damaged(
                        &dir,
                        format!(
                            "{} has an unreadable record at byte {valid_bytes} and later segments follow",
                            path.display()
                        ),
                    ));
                }
                if let Some(at) = intact_record_after(&bytes, valid_bytes, before) {
                    return Err(damaged(
                        &dir,
                        format!(
                            "{} has an unreadable record at byte {valid_bytes} and an intact one \
                             at byte {at} after it",
                            path.display()
                        ),
                    ));
                }
                torn = Some((path.clone(), valid_bytes as u64));
            }
            if let Some(record) = records.first() {
                if record.seq != *first {
                    return Err(damaged(
                        &dir,
                        format!(
                            "{} is named for group {first} but begins with group {}",
                            path.display(),
                            record.seq
                        ),
                    ));
                }
            }
            for record in records {
                if record.seq <= after_seq {
                    continue;
                }
                if record.seq != last_seq + 1 {
                    return Err(damaged(
                        &dir,
                        format!(
                            "group {} follows group {last_seq}: the groups between are missing",
                            record.seq
                        ),
                    ));
                }
                last_seq = record.seq;
                let (changes, payload) = decode_body(record.body).ok_or_else(|| {
                    damaged(
                        &dir,
                        format!("group {} passes its check but does not decode", record.seq),
                    )
                })?;
                groups.push(Group {
                    seq: record.seq,
                    changes,
                    payload,
                });
            }
        }
        Ok(Recovered {
            dir,
            found,
            groups,
            torn,
            last_seq,
        })
    }

    /// Appends group `seq` and returns once it is on the device.
    pub(crate) fn append<'a>(
        &mut self,
        seq: u64,
        changes: impl ExactSizeIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
        payload: &[(Extent, Vec<u8>)],
    ) -> std::io::Result<()> {
        if self.segment_bytes >= SEGMENT_BYTES_MAX {
            self.rotate(seq)?;
        }
        self.buffer.clear();
        self.buffer.extend_from_slice(&[0; HEADER_BYTES]);
        self.buffer
            .extend_from_slice(&(changes.len() as u32).to_le_bytes());
        for (key, value) in changes {
            self.buffer.push(u8::from(value.is_some()));
            self.buffer
                .extend_from_slice(&(key.len() as u32).to_le_bytes());
            self.buffer.extend_from_slice(key);
            if let Some(value) = value {
                self.buffer
                    .extend_from_slice(&(value.len() as u32).to_le_bytes());
                self.buffer.extend_from_slice(value);
            }
        }
        self.buffer
            .extend_from_slice(&(payload.len() as u32).to_le_bytes());
        for (extent, bytes) in payload {
            self.buffer.extend_from_slice(&extent.segment.to_le_bytes());
            self.buffer.extend_from_slice(&extent.offset.to_le_bytes());
            self.buffer.extend_from_slice(&extent.len.to_le_bytes());
            self.buffer.extend_from_slice(bytes);
        }
        self.buffer[8..16].copy_from_slice(&seq.to_le_bytes());
        let length = u32::try_from(self.buffer.len() - 8).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "group over 4 GiB")
        })?;
        let crc = crc32fast::hash(&self.buffer[8..]);
        self.buffer[..4].copy_from_slice(&length.to_le_bytes());
        self.buffer[4..8].copy_from_slice(&crc.to_le_bytes());
        if let Err(error) = self.file.write_all(&self.buffer) {
            // Whatever part was written is a torn record: cut it off, so the
            // segment stays readable (the store refuses writes from now on).
            let _ = self.file.set_len(self.segment_bytes);
            return Err(error);
        }
        self.file.sync_data()?;
        self.segment_bytes += self.buffer.len() as u64;
        Ok(())
    }

    /// Starts a new segment for group `first_seq` on (nothing is written to
    /// the current one after this).
    pub(crate) fn rotate(&mut self, first_seq: u64) -> std::io::Result<()> {
        if self
            .segments
            .back()
            .is_some_and(|(first, _)| *first == first_seq)
        {
            return Ok(());
        }
        let path = segment_path(&self.dir, first_seq);
        // Switched to only once the new segment's name is durable.
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)?;
        sync_dir(&self.dir)?;
        self.file = file;
        self.segments.push_back((first_seq, path));
        self.segment_bytes = 0;
        Ok(())
    }

    /// Removes the segments whose groups are all at or before `seq` (the
    /// tree holds them); the segment being written is always kept.
    pub(crate) fn discard_through(&mut self, seq: u64) {
        while self.segments.len() > 1 && self.segments[1].0 <= seq + 1 {
            let (_, path) = self.segments.pop_front().expect("two segments at least");
            if let Err(error) = std::fs::remove_file(&path) {
                tracing::warn!(segment = %path.display(), %error, "cannot remove a journal segment");
            }
        }
    }
}

struct Record<'a> {
    seq: u64,
    body: &'a [u8],
}

/// Where the first intact record numbered after `after_seq` starts, looking
/// from just past `from` (where a record failed its check).
fn intact_record_after(bytes: &[u8], from: usize, after_seq: u64) -> Option<usize> {
    let mut at = from + 1;
    while bytes.len().saturating_sub(at) >= HEADER_BYTES {
        let length = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let seq = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().expect("8 bytes"));
        // Cheap tests first: a plausible length and a number after the last good one.
        if length >= 8
            && bytes.len() - at - 8 >= length
            && seq > after_seq
            && seq - after_seq < 1 << 32
        {
            let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
            if crc32fast::hash(&bytes[at + 8..at + 8 + length]) == crc {
                return Some(at);
            }
        }
        at += 1;
    }
    None
}

/// The whole records at the start of `bytes`, and how many bytes they take.
fn parse_records(bytes: &[u8]) -> (Vec<Record<'_>>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= HEADER_BYTES {
        let length = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        if length < 8 || bytes.len() - at - 8 < length {
            break;
        }
        let checked = &bytes[at + 8..at + 8 + length];
        if crc32fast::hash(checked) != crc {
            break;
        }
        records.push(Record {
            seq: u64::from_le_bytes(checked[..8].try_into().expect("8 bytes")),
            body: &checked[8..],
        });
        at += 8 + length;
    }
    (records, at)
}

type Body = (Vec<Change>, Vec<(Extent, Vec<u8>)>);

fn decode_body(body: &[u8]) -> Option<Body> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let slice = body.get(at..at.checked_add(n)?)?;
        at += n;
        Some(slice)
    };
    let count = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
    let mut changes = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let tag = take(1)?[0];
        let key_len = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        let key = take(key_len)?.to_vec();
        let value = match tag {
            0 => None,
            1 => {
                let value_len = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
                Some(take(value_len)?.to_vec())
            }
            _ => return None,
        };
        changes.push((key, value));
    }
    let count = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
    let mut payload = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let segment = u32::from_le_bytes(take(4)?.try_into().ok()?);
        let offset = u64::from_le_bytes(take(8)?.try_into().ok()?);
        let len = u32::from_le_bytes(take(4)?.try_into().ok()?);
        let bytes = take(len as usize)?.to_vec();
        payload.push((
            Extent {
                segment,
                offset,
                len,
            },
            bytes,
        ));
    }
    (at == body.len()).then_some((changes, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(n: u8) -> Vec<Change> {
        vec![
            (vec![b'k', n], Some(vec![n; usize::from(n) * 10])),
            (vec![b'r', n], None),
        ]
    }

    fn payload(n: u8) -> Vec<(Extent, Vec<u8>)> {
        vec![(
            Extent {
                segment: 1,
                offset: u64::from(n) * 100,
                len: 3,
            },
            vec![n; 3],
        )]
    }

    fn append(journal: &mut Journal, seq: u64, group: &[Change]) {
        journal
            .append(
                seq,
                group
                    .iter()
                    .map(|(key, value)| (key.as_slice(), value.as_deref())),
                &payload(seq as u8),
            )
            .unwrap();
    }

    #[test]
    fn groups_come_back_in_order_after_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let recovered = Journal::open(dir.path(), 0).unwrap();
        assert!(recovered.groups.is_empty());
        let mut journal = recovered.start().unwrap();
        for seq in 1..=5 {
            append(&mut journal, seq, &changes(seq as u8));
        }
        drop(journal);
        let groups = Journal::open(dir.path(), 2).unwrap().groups;
        assert_eq!(groups.iter().map(|g| g.seq).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(groups[0].changes, changes(3));
        assert_eq!(groups[0].payload, payload(3));
        // Reopened twice: the second open made a new (empty) segment at 6.
        let recovered = Journal::open(dir.path(), 0).unwrap();
        assert_eq!(recovered.groups.len(), 5);
        let mut journal = recovered.start().unwrap();
        append(&mut journal, 6, &changes(6));
        drop(journal);
        let groups = Journal::open(dir.path(), 5).unwrap().groups;
        assert_eq!(groups.iter().map(|g| g.seq).collect::<Vec<_>>(), [6]);
    }

    #[test]
    fn a_torn_tail_is_cut_and_older_damage_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path(), 0).unwrap().start().unwrap();
        for seq in 1..=3 {
            append(&mut journal, seq, &changes(seq as u8));
        }
        drop(journal);
        let segment = segment_path(&dir.path().join(JOURNAL_DIR), 1);
        let bytes = std::fs::read(&segment).unwrap();
        // A flipped byte in the first record, intact ones after it: damage,
        // refused, and nothing cut.
        let mut flipped = bytes.clone();
        flipped[20] ^= 0xff;
        std::fs::write(&segment, &flipped).unwrap();
        let error = Journal::open(dir.path(), 0).err().expect("refused");
        assert!(matches!(error, StoreError::DataLost { .. }), "{error}");
        assert_eq!(std::fs::read(&segment).unwrap(), flipped);
        // The last record half written: torn, cut once the journal starts.
        std::fs::write(&segment, &bytes[..bytes.len() - 5]).unwrap();
        let recovered = Journal::open(dir.path(), 0).unwrap();
        assert_eq!(recovered.groups.len(), 2);
        assert_eq!(std::fs::read(&segment).unwrap().len(), bytes.len() - 5);
        drop(recovered.start().unwrap());
        assert!(std::fs::read(&segment).unwrap().len() < bytes.len() - 5);
        // A flipped byte in the first record, with a later segment after it.
        let mut bytes = std::fs::read(&segment).unwrap();
        bytes[20] ^= 0xff;
        std::fs::write(&segment, &bytes).unwrap();
        let error = Journal::open(dir.path(), 0).err().expect("refused");
        assert!(matches!(error, StoreError::DataLost { .. }), "{error}");
    }

    #[test]
    fn segments_covered_by_a_checkpoint_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::open(dir.path(), 0).unwrap().start().unwrap();
        append(&mut journal, 1, &changes(1));
        journal.rotate(2).unwrap();
        append(&mut journal, 2, &changes(2));
        journal.rotate(3).unwrap();
        append(&mut journal, 3, &changes(3));
        journal.discard_through(1);
        assert_eq!(journal.segments.len(), 2);
        journal.discard_through(3);
        assert_eq!(journal.segments.len(), 1, "the current segment stays");
        drop(journal);
        // A checkpoint at 1 with segment 2 gone: group 2 is missing.
        let groups = Journal::open(dir.path(), 2).unwrap().groups;
        assert_eq!(groups.iter().map(|g| g.seq).collect::<Vec<_>>(), [3]);
        let error = Journal::open(dir.path(), 1).err().expect("refused");
        assert!(error.to_string().contains("missing"), "{error}");
    }
}

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
//! A segment begins with `SEGMENT_MAGIC`, then records `length (u32 LE) |
//! crc32 (u32 LE) | seq (u64 LE) | body`, the CRC over the length, seq and
//! body, so that a damaged length is told from a torn write (a segment
//! written before the magic, `legacy`, has no magic and its CRC leaves the
//! length out). The body is the count of changes and each
//! change as `tag (1 put, 0 remove) | key length (u32) | key | value length
//! (u32) | value`, then the count of payload pieces and each as `segment
//! (u32) | offset (u64) | length (u32) | bytes`. Segments are named by the
//! first group they hold, and a segment is removed once a checkpoint covers
//! all of its groups.
//!
//! A group whose `fdatasync` failed was answered with an error, yet its
//! bytes may be on the device: it is cut off the segment and the cut synced,
//! or, if even that fails, a `<seq>.void` file says so and the next open
//! cuts it, so that a group refused to its callers never appears later.

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

/// The first bytes of a segment whose records' CRC covers their length.
const SEGMENT_MAGIC: &[u8; 8] = b"trucJL02";

/// The suffix of the file that voids a group whose sync failed.
const VOID_SUFFIX: &str = ".void";

/// How a segment's records are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// Before `SEGMENT_MAGIC`: the CRC covers seq and body only.
    Legacy,
    /// The CRC covers length, seq and body.
    Checked,
}

/// The format of a segment's bytes and where its records begin.
fn segment_format(bytes: &[u8]) -> (Format, usize) {
    if bytes.len() >= SEGMENT_MAGIC.len() && bytes[..SEGMENT_MAGIC.len()] == SEGMENT_MAGIC[..] {
        (Format::Checked, SEGMENT_MAGIC.len())
    } else if SEGMENT_MAGIC.starts_with(bytes) {
        // Created, its magic not (all) written: it holds no record.
        (Format::Checked, bytes.len())
    } else {
        (Format::Legacy, 0)
    }
}

/// A record's CRC: `length` and the checked bytes (seq and body).
fn record_crc(format: Format, length: u32, checked: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    if format == Format::Checked {
        hasher.update(&length.to_le_bytes());
    }
    hasher.update(checked);
    hasher.finalize()
}

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
    /// The last group appended (or read back at open); the next is one more.
    last_seq: u64,
    /// Every segment on disk, oldest first: (first seq, path).
    segments: VecDeque<(u64, PathBuf)>,
    buffer: Vec<u8>,
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.log"))
}

fn io_error(path: &Path, what: &str, error: std::io::Error) -> StoreError {
    StoreError::io(what, path, error)
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

/// Creates (or empties) a segment file with its magic, durable with its name.
fn create_segment(dir: &Path, path: &Path) -> std::io::Result<File> {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)?;
    file.write_all(SEGMENT_MAGIC)?;
    file.sync_data()?;
    sync_dir(dir)?;
    Ok(file)
}

fn void_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}{VOID_SUFFIX}"))
}

/// What `Journal::open` read, before anything on disk is changed.
pub(crate) struct Recovered {
    dir: PathBuf,
    found: Vec<(u64, PathBuf)>,
    /// Every group after the checkpoint, in order.
    pub groups: Vec<Group>,
    /// A torn record at the end of the last segment: where to cut it.
    torn: Option<(PathBuf, u64)>,
    /// Void files of groups whose sync failed, removed once they are cut.
    voids: Vec<PathBuf>,
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
        // Only once the cut is durable may the note that asked for it go.
        for void in &self.voids {
            std::fs::remove_file(void).map_err(|e| io_error(void, "cannot remove", e))?;
        }
        let first = self.last_seq + 1;
        let path = segment_path(&self.dir, first);
        let file =
            create_segment(&self.dir, &path).map_err(|e| io_error(&path, "cannot create", e))?;
        let mut segments: VecDeque<(u64, PathBuf)> = self
            .found
            .into_iter()
            .filter(|(seq, _)| *seq != first)
            .collect();
        segments.push_back((first, path));
        Ok(Journal {
            dir: self.dir,
            file,
            segment_bytes: SEGMENT_MAGIC.len() as u64,
            last_seq: self.last_seq,
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
        if !dir.is_dir() {
            // The folder's own name must be durable before any group in it
            // is acknowledged; no other part of the store is relied on to
            // sync the data directory later.
            std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, "cannot create", e))?;
            sync_dir(data_dir).map_err(|e| io_error(data_dir, "cannot sync", e))?;
        }
        let Listing {
            found,
            voids,
            void_from,
        } = list_journal(&dir)?;
        check_first_segment(&dir, &found, after_seq)?;
        let mut groups = Vec::new();
        let mut torn = None;
        let mut last_seq = after_seq;
        let count = found.len();
        for (index, (first, path)) in found.iter().enumerate() {
            let bytes = std::fs::read(path).map_err(|e| io_error(path, "cannot read", e))?;
            let is_last = index + 1 == count;
            let (records, cut) = segment_records(&dir, path, &bytes, is_last, void_from, last_seq)?;
            if cut.is_some() {
                torn = cut;
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
            voids,
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
        // Recovery reads groups back in order and refuses a gap: one here
        // would be the writer's bug, and is stopped before it is written.
        assert_eq!(
            seq,
            self.last_seq + 1,
            "journal groups must be numbered consecutively"
        );
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
        let crc = record_crc(Format::Checked, length, &self.buffer[8..]);
        self.buffer[..4].copy_from_slice(&length.to_le_bytes());
        self.buffer[4..8].copy_from_slice(&crc.to_le_bytes());
        if let Err(error) = self.file.write_all(&self.buffer) {
            // Whatever part was written is a torn record: cut it off, so the
            // segment stays readable (the store refuses writes from now on).
            let _ = self.file.set_len(self.segment_bytes);
            return Err(error);
        }
        if let Err(error) = self.file.sync_data() {
            self.void(seq);
            return Err(error);
        }
        self.segment_bytes += self.buffer.len() as u64;
        self.last_seq = seq;
        Ok(())
    }

    /// Undoes group `seq`, whose sync failed: its callers are told it
    /// failed, so it must never appear, though its bytes may be on the
    /// device (or reach it later). The record is cut off and the cut synced;
    /// failing that, a void file asks the next open to cut it.
    fn void(&mut self, seq: u64) {
        let cut = self
            .file
            .set_len(self.segment_bytes)
            .and_then(|()| self.file.sync_data());
        let Err(cut_error) = cut else {
            return;
        };
        let path = void_path(&self.dir, seq);
        let noted = File::create(&path)
            .and_then(|mut file| {
                file.write_all(seq.to_string().as_bytes())?;
                file.sync_all()
            })
            .and_then(|()| sync_dir(&self.dir));
        if let Err(note_error) = noted {
            tracing::error!(
                group = seq,
                %cut_error,
                %note_error,
                "a group whose sync failed could be neither cut nor voided: it may appear at the \
                 next open although its callers were told it failed"
            );
        }
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
        let file = create_segment(&self.dir, &path)?;
        self.file = file;
        self.segments.push_back((first_seq, path));
        self.segment_bytes = SEGMENT_MAGIC.len() as u64;
        Ok(())
    }

    /// Removes the segments whose groups are all at or before `seq` (the
    /// tree holds them); the segment being written is always kept.
    pub(crate) fn discard_through(&mut self, seq: u64) {
        // A checkpoint covers only groups the journal made durable first;
        // past them, the segments removed could hold groups the tree lacks.
        assert!(
            seq <= self.last_seq,
            "a checkpoint through group {seq} passes the journal's last group {}",
            self.last_seq
        );
        while self.segments.len() > 1 && self.segments[1].0 <= seq + 1 {
            let (_, path) = self.segments.pop_front().expect("two segments at least");
            if let Err(error) = std::fs::remove_file(&path) {
                tracing::warn!(segment = %path.display(), %error, "cannot remove a journal segment");
            }
        }
    }
}
/// What the journal's folder holds: its segments by first group, in
/// order, and the void files with the first group they void.
struct Listing {
    found: Vec<(u64, PathBuf)>,
    voids: Vec<PathBuf>,
    /// The lowest group a void file names; `u64::MAX` if none.
    void_from: u64,
}

/// Lists the segments and void files in the journal's folder.
fn list_journal(dir: &Path) -> Result<Listing, StoreError> {
    let mut found = Vec::new();
    let mut voids = Vec::new();
    let mut void_from = u64::MAX;
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, "cannot list", e))? {
        let entry = entry.map_err(|e| io_error(dir, "cannot list", e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if let Some(seq) = name
            .strip_suffix(VOID_SUFFIX)
            .and_then(|stem| stem.parse::<u64>().ok())
        {
            void_from = void_from.min(seq);
            voids.push(entry.path());
        } else if let Some(first) = name
            .strip_suffix(".log")
            .and_then(|stem| stem.parse::<u64>().ok())
        {
            found.push((first, entry.path()));
        }
    }
    found.sort();
    Ok(Listing {
        found,
        voids,
        void_from,
    })
}

/// Refuses a journal whose first segment starts after the group following
/// `after_seq`: the groups between were let go but the tree lacks them.
fn check_first_segment(
    dir: &Path,
    found: &[(u64, PathBuf)],
    after_seq: u64,
) -> Result<(), StoreError> {
    // Segments go only once the tree holds their groups: the first one
    // left names the groups the tree must hold. Even an empty segment
    // says so, where no record could show a gap.
    if let Some((first, path)) = found.first() {
        if *first > after_seq + 1 {
            return Err(damaged(
                dir,
                format!(
                    "{} shows that groups up to {} were checkpointed and let go, but the \
                     tree holds only {after_seq}: groups {} to {} are missing",
                    path.display(),
                    first - 1,
                    after_seq + 1,
                    first - 1
                ),
            ));
        }
    }
    Ok(())
}

/// Where a segment is cut: its path and the length it keeps.
type Cut = (PathBuf, u64);

/// A segment's intact records, and where to cut it if its end is torn or
/// holds a voided group; refuses damage that a crash cannot explain.
fn segment_records<'a>(
    dir: &Path,
    path: &Path,
    bytes: &'a [u8],
    is_last: bool,
    void_from: u64,
    last_seq: u64,
) -> Result<(Vec<Record<'a>>, Option<Cut>), StoreError> {
    let mut torn = None;
    let (format, start) = segment_format(bytes);
    let (mut records, mut valid_bytes) = parse_records(bytes, format, start);
    let voided = records.iter().position(|record| record.seq >= void_from);
    if let Some(void) = voided {
        // Its sync failed, so it was refused to its callers: cut like
        // a torn record. Writes stop after such a failure, so it can
        // only be the journal's last.
        if !is_last || valid_bytes < bytes.len() {
            return Err(damaged(
                dir,
                format!(
                    "group {void_from} was voided after a failed sync, yet more follows it in {}",
                    path.display()
                ),
            ));
        }
        valid_bytes = records[void].at;
        records.truncate(void);
        tracing::warn!(segment = %path.display(), group = void_from, "cutting a group whose sync failed");
        torn = Some((path.to_path_buf(), valid_bytes as u64));
    } else if valid_bytes < bytes.len() {
        let before = records.last().map_or(last_seq, |record| record.seq);
        if !is_last {
            return Err(damaged(
                dir,
                format!(
                    "{} has an unreadable record at byte {valid_bytes} and later segments follow",
                    path.display()
                ),
            ));
        }
        if let Some(at) = intact_record_after(bytes, format, valid_bytes, before) {
            return Err(damaged(
                dir,
                format!(
                    "{} has an unreadable record at byte {valid_bytes} and an intact one \
                     at byte {at} after it",
                    path.display()
                ),
            ));
        }
        if let Some((stated, actual)) = damaged_length(bytes, format, valid_bytes) {
            return Err(damaged(
                dir,
                format!(
                    "{} has a record at byte {valid_bytes} whose length field says \
                     {stated} bytes, but the record is whole and intact with {actual}: \
                     the length was damaged, the record was not torn",
                    path.display()
                ),
            ));
        }
        torn = Some((path.to_path_buf(), valid_bytes as u64));
    }
    Ok((records, torn))
}

struct Record<'a> {
    /// Where the record starts in its segment.
    at: usize,
    seq: u64,
    body: &'a [u8],
}

/// Where the first intact record numbered after `after_seq` starts, looking
/// from just past `from` (where a record failed its check).
fn intact_record_after(bytes: &[u8], format: Format, from: usize, after_seq: u64) -> Option<usize> {
    let mut at = from + 1;
    while bytes.len().saturating_sub(at) >= HEADER_BYTES {
        let length = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let seq = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().expect("8 bytes"));
        // Cheap tests first: a plausible length and a number after the last good one.
        if length >= 8
            && bytes.len() - at - 8 >= length as usize
            && seq > after_seq
            && seq - after_seq < 1 << 32
        {
            let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
            if record_crc(format, length, &bytes[at + 8..at + 8 + length as usize]) == crc {
                return Some(at);
            }
        }
        at += 1;
    }
    None
}

/// Whether the record at `at`, which failed its check, is whole and intact
/// but for its length field: the segment's end, or the stated length with
/// one bit flipped, makes its CRC match. Such a record was written whole (a
/// torn write never leaves one), so it is damage, not a tear. Returns the
/// stated and the actual length. Only a segment whose CRC covers the length
/// can tell.
fn damaged_length(bytes: &[u8], format: Format, at: usize) -> Option<(u32, u32)> {
    if format != Format::Checked || bytes.len().saturating_sub(at) < HEADER_BYTES {
        return None;
    }
    let stated = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
    let to_end = u32::try_from(bytes.len() - at - 8).ok()?;
    std::iter::once(to_end)
        .chain((0..32).map(|bit| stated ^ (1 << bit)))
        .filter(|length| *length != stated && *length >= 8)
        .filter(|length| bytes.len() - at - 8 >= *length as usize)
        .find(|length| {
            record_crc(format, *length, &bytes[at + 8..at + 8 + *length as usize]) == crc
        })
        .map(|actual| (stated, actual))
}

/// The whole records from `start`, and where the first one that is not
/// whole begins (the length of `bytes` if all are).
fn parse_records(bytes: &[u8], format: Format, start: usize) -> (Vec<Record<'_>>, usize) {
    let mut records = Vec::new();
    let mut at = start;
    while bytes.len() - at >= HEADER_BYTES {
        let length = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        if length < 8 || bytes.len() - at - 8 < length as usize {
            break;
        }
        let checked = &bytes[at + 8..at + 8 + length as usize];
        if record_crc(format, length, checked) != crc {
            break;
        }
        records.push(Record {
            at,
            seq: u64::from_le_bytes(checked[..8].try_into().expect("8 bytes")),
            body: &checked[8..],
        });
        at += 8 + length as usize;
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

    /// A new journal in `data_dir` holding groups 1 to `last`, still open.
    fn journal_with_groups(data_dir: &Path, last: u64) -> Journal {
        let mut journal = Journal::open(data_dir, 0).unwrap().start().unwrap();
        for seq in 1..=last {
            append(&mut journal, seq, &changes(seq as u8));
        }
        journal
    }

    /// The groups' numbers, in order.
    fn seqs(groups: &[Group]) -> Vec<u64> {
        groups.iter().map(|group| group.seq).collect()
    }

    /// Groups 1 to 3 written and the journal closed: the one segment's path
    /// and bytes, for a test to damage.
    fn three_groups_written(data_dir: &Path) -> (PathBuf, Vec<u8>) {
        drop(journal_with_groups(data_dir, 3));
        let segment = segment_path(&data_dir.join(JOURNAL_DIR), 1);
        let bytes = std::fs::read(&segment).unwrap();
        (segment, bytes)
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
        assert_eq!(seqs(&groups), [3, 4, 5]);
        assert_eq!(groups[0].changes, changes(3));
        assert_eq!(groups[0].payload, payload(3));
        // Reopened twice: the second open made a new (empty) segment at 6.
        let recovered = Journal::open(dir.path(), 0).unwrap();
        assert_eq!(recovered.groups.len(), 5);
        let mut journal = recovered.start().unwrap();
        append(&mut journal, 6, &changes(6));
        drop(journal);
        let groups = Journal::open(dir.path(), 5).unwrap().groups;
        assert_eq!(seqs(&groups), [6]);
    }

    #[test]
    fn a_torn_tail_is_cut_and_older_damage_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (segment, bytes) = three_groups_written(dir.path());
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
        let mut journal = journal_with_groups(dir.path(), 1);
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
        assert_eq!(seqs(&groups), [3]);
        let error = Journal::open(dir.path(), 1).err().expect("refused");
        assert!(error.to_string().contains("missing"), "{error}");
    }

    #[test]
    fn a_damaged_length_in_the_last_record_is_refused_not_cut_as_torn() {
        let dir = tempfile::tempdir().unwrap();
        let (segment, bytes) = three_groups_written(dir.path());
        let (_, start) = segment_format(&bytes);
        let (records, _) = parse_records(&bytes, Format::Checked, start);
        let last = records.last().unwrap().at;
        // Any one bit of the length: smaller (the record seems to end early),
        // larger (it seems to run past the end, as a torn write would).
        for bit in [0, 3, 9, 17, 31] {
            let mut flipped = bytes.clone();
            flipped[last + bit / 8] ^= 1 << (bit % 8);
            std::fs::write(&segment, &flipped).unwrap();
            let error = Journal::open(dir.path(), 0).err().expect("refused");
            assert!(
                error.to_string().contains("length field"),
                "bit {bit}: {error}"
            );
            assert_eq!(std::fs::read(&segment).unwrap(), flipped, "nothing cut");
        }
        // A real tear of the same record is still cut.
        std::fs::write(&segment, &bytes[..bytes.len() - 3]).unwrap();
        assert_eq!(Journal::open(dir.path(), 0).unwrap().groups.len(), 2);
    }

    #[test]
    fn segments_written_before_the_magic_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let journal_dir = dir.path().join(JOURNAL_DIR);
        std::fs::create_dir_all(&journal_dir).unwrap();
        // The earlier format: no magic, the CRC over seq and body only.
        let mut bytes = Vec::new();
        for seq in 1..=2u64 {
            let mut checked = seq.to_le_bytes().to_vec();
            checked.extend_from_slice(&0u32.to_le_bytes());
            checked.extend_from_slice(&0u32.to_le_bytes());
            bytes.extend_from_slice(&(checked.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&crc32fast::hash(&checked).to_le_bytes());
            bytes.extend_from_slice(&checked);
        }
        std::fs::write(segment_path(&journal_dir, 1), &bytes).unwrap();
        let recovered = Journal::open(dir.path(), 0).unwrap();
        assert_eq!(recovered.groups.len(), 2);
        let mut journal = recovered.start().unwrap();
        append(&mut journal, 3, &changes(3));
        drop(journal);
        let groups = Journal::open(dir.path(), 0).unwrap().groups;
        assert_eq!(seqs(&groups), [1, 2, 3]);
    }

    #[test]
    #[should_panic(expected = "numbered consecutively")]
    fn a_gap_in_group_numbers_is_stopped_before_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = journal_with_groups(dir.path(), 1);
        append(&mut journal, 3, &changes(3));
    }

    #[test]
    #[should_panic(expected = "passes the journal")]
    fn a_checkpoint_past_the_journal_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = journal_with_groups(dir.path(), 1);
        journal.discard_through(2);
    }

    /// The data directory on a power-cut file system, made durable.
    fn faulty_data_dir(
        mount: &tempfile::TempDir,
        test: &str,
    ) -> Option<(truc_faultfs::FaultFs, PathBuf)> {
        let disk = truc_faultfs::mount_or_skip(mount.path(), test)?;
        let data = disk.mountpoint().join("data");
        std::fs::create_dir(&data).unwrap();
        sync_dir(disk.mountpoint()).unwrap();
        Some((disk, data))
    }

    #[test]
    fn the_journal_folder_survives_a_power_cut_on_its_own_sync() {
        let mount = tempfile::tempdir().unwrap();
        let Some((mut disk, data)) = faulty_data_dir(&mount, "the_journal_folder_survives") else {
            return;
        };
        drop(journal_with_groups(&data, 1));
        disk.cut(truc_faultfs::CutMode::LoseAll).unwrap();
        let groups = Journal::open(&data, 0).unwrap().groups;
        assert_eq!(seqs(&groups), [1]);
    }

    #[test]
    fn a_group_whose_sync_failed_never_appears() {
        let mount = tempfile::tempdir().unwrap();
        let Some((mut disk, data)) = faulty_data_dir(&mount, "a_group_whose_sync_failed") else {
            return;
        };
        let mut journal = journal_with_groups(&data, 1);
        disk.fail_next_sync("/journal/");
        let group = changes(2);
        let failed = journal.append(
            2,
            group.iter().map(|(k, v)| (k.as_slice(), v.as_deref())),
            &[],
        );
        assert!(failed.is_err());
        drop(journal);
        // Its bytes reached the page cache and may reach the disk: without a
        // power cut they are all there, and still it must not come back.
        let recovered = Journal::open(&data, 0).unwrap();
        assert_eq!(seqs(&recovered.groups), [1]);
        let mut journal = recovered.start().unwrap();
        append(&mut journal, 2, &changes(22));
        drop(journal);
        disk.cut(truc_faultfs::CutMode::LoseAll).unwrap();
        let groups = Journal::open(&data, 0).unwrap().groups;
        assert_eq!(seqs(&groups), [1, 2]);
        assert_eq!(groups[1].changes, changes(22));
    }

    #[test]
    fn a_group_that_cannot_be_cut_after_a_failed_sync_is_voided_for_the_next_open() {
        let mount = tempfile::tempdir().unwrap();
        let Some((disk, data)) = faulty_data_dir(&mount, "a_group_that_cannot_be_cut") else {
            return;
        };
        let mut journal = journal_with_groups(&data, 1);
        // The group's sync fails, and so does the sync of the cut.
        disk.fail_next_sync("/journal/0");
        disk.fail_next_sync("/journal/0");
        let group = changes(2);
        assert!(journal
            .append(
                2,
                group.iter().map(|(k, v)| (k.as_slice(), v.as_deref())),
                &[]
            )
            .is_err());
        drop(journal);
        let voids: Vec<_> = std::fs::read_dir(data.join(JOURNAL_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(VOID_SUFFIX))
            .collect();
        assert_eq!(voids, [format!("{:020}{VOID_SUFFIX}", 2)]);
        let recovered = Journal::open(&data, 0).unwrap();
        assert_eq!(seqs(&recovered.groups), [1]);
        let mut journal = recovered.start().unwrap();
        append(&mut journal, 2, &changes(22));
        drop(journal);
        let groups = Journal::open(&data, 0).unwrap().groups;
        assert_eq!(seqs(&groups), [1, 2]);
        assert_eq!(groups[1].changes, changes(22), "the void went with its cut");
    }

    #[test]
    fn a_tree_behind_the_segments_the_journal_let_go_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = journal_with_groups(dir.path(), 3);
        // A checkpoint through 3: a new (empty) segment, the old one removed.
        journal.rotate(4).unwrap();
        journal.discard_through(3);
        drop(journal);
        assert!(Journal::open(dir.path(), 3).unwrap().groups.is_empty());
        // A tree that lost that checkpoint: no record shows a gap, the name does.
        let error = Journal::open(dir.path(), 1).err().expect("refused");
        assert!(error.to_string().contains("tree holds only 1"), "{error}");
    }
}

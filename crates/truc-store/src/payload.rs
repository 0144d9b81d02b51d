//! Documents' signed envelopes, certificates and attachment bytes, appended
//! once to segment files and never rewritten; the tree keeps only where they
//! are (`Extent`s).
//!
//! Two ways in. Large attachments are appended by their sends as the chunks
//! arrive, from any task, and the writer syncs them (`sync`) before the
//! journal records the document that names them. Small pieces (envelopes,
//! certificates, attachments that fit in memory) are appended by the writer
//! and carried in the journal record as well (`append_carried`), so one
//! sync covers them; the payload log itself is synced before a checkpoint
//! lets that journal record go (`sync_carried`), and at open the journal's
//! groups write their pieces again (`restore`). Bytes of a send that was
//! refused or crashed are never named by anything and stay as unused space.
//!
//! A segment begins with `SEGMENT_MAGIC`, and each piece in it is followed
//! by the CRC-32 of its bytes, checked on every read: damaged bytes are
//! refused by the hub instead of served (the recipient's digest check was
//! the only one before). Segments written before the magic are read
//! unchecked, and the log moves on to a new segment rather than append to one.

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};

use crate::journal::sync_dir;

/// The payload's folder in the data directory.
pub const PAYLOAD_DIR: &str = "payload";

/// A segment takes no more appends once it holds this much.
const SEGMENT_BYTES_MAX: u64 = 256 << 20;

/// The first bytes of a segment whose pieces carry a CRC.
const SEGMENT_MAGIC: &[u8; 8] = b"trucPL02";

/// The CRC-32 after each piece of a checked segment.
const CRC_BYTES: u64 = 4;

/// Where some bytes are: segment number, offset and length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extent {
    pub segment: u32,
    pub offset: u64,
    pub len: u32,
}

struct Appender {
    segment: u32,
    file: Arc<File>,
    len: u64,
    /// Segments with appends the next `sync` must cover.
    dirty: BTreeSet<u32>,
    /// Segments with carried appends the next checkpoint must sync.
    carried: BTreeSet<u32>,
}

/// An open segment and whether its pieces carry a CRC.
#[derive(Clone)]
struct Segment {
    file: Arc<File>,
    checked: bool,
}

pub(crate) struct PayloadLog {
    dir: PathBuf,
    appender: Mutex<Appender>,
    files: RwLock<HashMap<u32, Segment>>,
}

/// Whether a segment's pieces carry a CRC: it begins with the magic.
fn is_checked(file: &File) -> std::io::Result<bool> {
    let mut magic = [0u8; 8];
    match file.read_exact_at(&mut magic, 0) {
        Ok(()) => Ok(&magic == SEGMENT_MAGIC),
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(error) => Err(error),
    }
}

/// Creates a checked segment, its magic and name durable.
fn create_segment(dir: &Path, segment: u32) -> std::io::Result<File> {
    let file = open_segment(dir, segment)?;
    file.set_len(0)?;
    file.write_all_at(SEGMENT_MAGIC, 0)?;
    file.sync_data()?;
    sync_dir(dir)?;
    Ok(file)
}

fn damaged_piece(segment: u32, extent: &Extent) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!(
            "payload segment {segment}, {} bytes at offset {}: the bytes do not match their \
             CRC (damaged on disk)",
            extent.len, extent.offset
        ),
    )
}

fn segment_path(dir: &Path, segment: u32) -> PathBuf {
    dir.join(format!("{segment:010}.dat"))
}

fn open_segment(dir: &Path, segment: u32) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .open(segment_path(dir, segment))
}

impl PayloadLog {
    pub(crate) fn open(data_dir: &Path) -> std::io::Result<PayloadLog> {
        let dir = data_dir.join(PAYLOAD_DIR);
        std::fs::create_dir_all(&dir)?;
        sync_dir(data_dir)?;
        let mut last = None;
        for entry in std::fs::read_dir(&dir)? {
            let name = entry?.file_name();
            if let Some(segment) = name
                .to_str()
                .and_then(|name| name.strip_suffix(".dat"))
                .and_then(|stem| stem.parse::<u32>().ok())
            {
                last = Some(last.map_or(segment, |last: u32| last.max(segment)));
            }
        }
        let (last, file) = match last {
            None => (1, create_segment(&dir, 1)?),
            Some(last) => {
                let file = open_segment(&dir, last)?;
                if is_checked(&file)? {
                    (last, file)
                } else if file.metadata()?.len() <= SEGMENT_MAGIC.len() as u64 {
                    // Empty, or its magic torn by a crash: nothing is in it.
                    (last, create_segment(&dir, last)?)
                } else {
                    // Written before pieces carried a CRC: read it, append elsewhere.
                    (last + 1, create_segment(&dir, last + 1)?)
                }
            }
        };
        let file = Arc::new(file);
        let len = file.metadata()?.len();
        let files = RwLock::new(HashMap::from([(
            last,
            Segment {
                file: file.clone(),
                checked: true,
            },
        )]));
        Ok(PayloadLog {
            dir,
            appender: Mutex::new(Appender {
                segment: last,
                file,
                len,
                dirty: BTreeSet::new(),
                carried: BTreeSet::new(),
            }),
            files,
        })
    }

    fn appender(&self) -> std::sync::MutexGuard<'_, Appender> {
        self.appender.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `bytes` at the end of the current segment, for the next
    /// `sync` to make durable.
    pub(crate) fn append(&self, bytes: &[u8]) -> std::io::Result<Extent> {
        let extent = self.write_new(bytes)?;
        // Marked only once written: a sync that starts later covers it.
        self.appender().dirty.insert(extent.segment);
        Ok(extent)
    }

    /// Writes `bytes` at the end of the current segment; the caller's
    /// journal record carries them until a checkpoint syncs the segment.
    pub(crate) fn append_carried(&self, bytes: &[u8]) -> std::io::Result<Extent> {
        let extent = self.write_new(bytes)?;
        self.appender().carried.insert(extent.segment);
        Ok(extent)
    }

    fn write_new(&self, bytes: &[u8]) -> std::io::Result<Extent> {
        let len = u32::try_from(bytes.len()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "one append over 4 GiB")
        })?;
        let (file, extent) = {
            let mut appender = self.appender();
            let magic = SEGMENT_MAGIC.len() as u64;
            if appender.len > magic && appender.len + u64::from(len) + CRC_BYTES > SEGMENT_BYTES_MAX
            {
                let segment = appender.segment + 1;
                let file = Arc::new(create_segment(&self.dir, segment)?);
                self.files
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(
                        segment,
                        Segment {
                            file: file.clone(),
                            checked: true,
                        },
                    );
                appender.segment = segment;
                appender.file = file;
                appender.len = magic;
            }
            let extent = Extent {
                segment: appender.segment,
                offset: appender.len,
                len,
            };
            appender.len += u64::from(len) + CRC_BYTES;
            (appender.file.clone(), extent)
        };
        write_piece(&file, &extent, bytes)?;
        Ok(extent)
    }

    /// Makes every `append` that returned before this call durable.
    pub(crate) fn sync(&self) -> std::io::Result<()> {
        let dirty = std::mem::take(&mut self.appender().dirty);
        self.sync_segments(dirty, |appender| &mut appender.dirty)
    }

    /// Makes every `append_carried` (and `restore`) that returned before
    /// this call durable.
    pub(crate) fn sync_carried(&self) -> std::io::Result<()> {
        let carried = std::mem::take(&mut self.appender().carried);
        self.sync_segments(carried, |appender| &mut appender.carried)
    }

    fn sync_segments(
        &self,
        segments: BTreeSet<u32>,
        pending: impl Fn(&mut Appender) -> &mut BTreeSet<u32>,
    ) -> std::io::Result<()> {
        for segment in segments {
            if let Err(error) = self.file(segment).and_then(|file| file.sync_data()) {
                // Still to be synced by the next call.
                pending(&mut self.appender()).insert(segment);
                return Err(error);
            }
        }
        Ok(())
    }

    /// Writes bytes a journal record carried back where they were (at open:
    /// the segment may have lost them with the page cache).
    pub(crate) fn restore(&self, extent: &Extent, bytes: &[u8]) -> std::io::Result<()> {
        let mut appender = self.appender();
        let segment = if extent.segment == appender.segment {
            Segment {
                file: appender.file.clone(),
                checked: true,
            }
        } else {
            let file = open_segment(&self.dir, extent.segment)?;
            let checked =
                if file.metadata()?.len() == 0 && extent.offset >= SEGMENT_MAGIC.len() as u64 {
                    // Lost whole with the page cache: every piece a journal
                    // record carries is written again, with its CRC.
                    file.write_all_at(SEGMENT_MAGIC, 0)?;
                    true
                } else {
                    is_checked(&file)?
                };
            sync_dir(&self.dir)?;
            let segment = Segment {
                file: Arc::new(file),
                checked,
            };
            self.files
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(extent.segment, segment.clone());
            segment
        };
        let file = segment.file.clone();
        if segment.checked {
            write_piece(&file, extent, bytes)?;
        } else {
            file.write_all_at(bytes, extent.offset)?;
        }
        let end =
            extent.offset + u64::from(extent.len) + if segment.checked { CRC_BYTES } else { 0 };
        if extent.segment > appender.segment {
            appender.segment = extent.segment;
            appender.file = file;
            appender.len = end;
        } else if extent.segment == appender.segment {
            appender.len = appender.len.max(end);
        }
        appender.carried.insert(extent.segment);
        Ok(())
    }

    fn segment(&self, segment: u32) -> std::io::Result<Segment> {
        if let Some(open) = self
            .files
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&segment)
        {
            return Ok(open.clone());
        }
        let path = segment_path(&self.dir, segment);
        let file = OpenOptions::new().read(true).open(&path)?;
        let open = Segment {
            checked: is_checked(&file)?,
            file: Arc::new(file),
        };
        self.files
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(segment, open.clone());
        Ok(open)
    }

    fn file(&self, segment: u32) -> std::io::Result<Arc<File>> {
        Ok(self.segment(segment)?.file)
    }

    /// Gives the disk space of bytes nothing names back to the file system
    /// (a refused or failed send's, a retired document's). Pieces that touch
    /// on disk, each with the CRC after it, are punched as one range: a file
    /// system frees only the whole blocks inside one punch, and pieces smaller
    /// than a block share theirs with a neighbour. Best effort: a file system
    /// without hole punching keeps them as unused space.
    pub(crate) fn release(&self, extents: &[Extent]) {
        use rustix::fs::{fallocate, FallocateFlags};
        for (segment, offset, len) in self.physical_ranges(extents) {
            let punched = self.segment(segment).and_then(|segment| {
                fallocate(
                    &*segment.file,
                    FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
                    offset,
                    len,
                )
                .map_err(std::io::Error::from)
            });
            if let Err(error) = punched {
                tracing::debug!(%error, "cannot release unused payload bytes");
            }
        }
    }

    /// `(segment, offset, length)` of the bytes `extents` hold on disk, CRCs
    /// included, joined where they touch.
    fn physical_ranges(&self, extents: &[Extent]) -> Vec<(u32, u64, u64)> {
        let mut ranges: Vec<(u32, u64, u64)> = extents
            .iter()
            .filter_map(|extent| {
                let checked = self.segment(extent.segment).ok()?.checked;
                let crc = if checked { CRC_BYTES } else { 0 };
                Some((extent.segment, extent.offset, u64::from(extent.len) + crc))
            })
            .collect();
        ranges.sort_unstable();
        let mut joined: Vec<(u32, u64, u64)> = Vec::with_capacity(ranges.len());
        for (segment, offset, len) in ranges {
            match joined.last_mut() {
                Some(last) if last.0 == segment && last.1 + last.2 >= offset => {
                    last.2 = last.2.max(offset + len - last.1);
                }
                _ => joined.push((segment, offset, len)),
            }
        }
        joined
    }

    /// The bytes of a piece, checked against their CRC where the segment
    /// carries one (`InvalidData` if they do not match).
    pub(crate) fn read(&self, extent: &Extent) -> std::io::Result<Vec<u8>> {
        let segment = self.segment(extent.segment)?;
        let crc = if segment.checked {
            CRC_BYTES as usize
        } else {
            0
        };
        let mut bytes = vec![0; extent.len as usize + crc];
        segment.file.read_exact_at(&mut bytes, extent.offset)?;
        if segment.checked {
            let stored = bytes.split_off(extent.len as usize);
            if crc32fast::hash(&bytes).to_le_bytes()[..] != stored[..] {
                return Err(damaged_piece(extent.segment, extent));
            }
        }
        Ok(bytes)
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Writes a piece and its CRC where `extent` says.
fn write_piece(file: &File, extent: &Extent, bytes: &[u8]) -> std::io::Result<()> {
    file.write_all_at(bytes, extent.offset)?;
    file.write_all_at(
        &crc32fast::hash(bytes).to_le_bytes(),
        extent.offset + u64::from(extent.len),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes the file system holds for the log's first segment.
    fn allocated_bytes(log: &PayloadLog) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(segment_path(log.dir(), 1))
            .unwrap()
            .blocks()
            * 512
    }

    #[test]
    fn released_bytes_give_their_space_back_and_leave_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let log = PayloadLog::open(dir.path()).unwrap();
        let kept = log.append(&[1; 8192]).unwrap();
        let refused = log.append(&[2; 1 << 20]).unwrap();
        let after = log.append(&[3; 8192]).unwrap();
        log.sync().unwrap();
        let blocks = || allocated_bytes(&log);
        let before = blocks();
        log.release(&[refused]);
        assert!(
            blocks() + (1 << 19) < before,
            "{} then {}",
            before,
            blocks()
        );
        assert_eq!(log.read(&kept).unwrap(), vec![1; 8192]);
        assert_eq!(log.read(&after).unwrap(), vec![3; 8192]);
    }

    /// Attachments smaller than a block share blocks with their neighbours
    /// (and each is followed by its CRC): released together, the blocks
    /// they fill go back to the file system.
    #[test]
    fn small_neighbours_released_together_give_their_blocks_back() {
        let dir = tempfile::tempdir().unwrap();
        let log = PayloadLog::open(dir.path()).unwrap();
        let kept = log.append(&[1; 100]).unwrap();
        let small: Vec<Extent> = (0..512)
            .map(|number| log.append(&[number as u8; 2048]).unwrap())
            .collect();
        let after = log.append(&[3; 100]).unwrap();
        log.sync().unwrap();
        let blocks = || allocated_bytes(&log);
        let before = blocks();
        // In another order than written, as a group may retire them.
        let mut released = small.clone();
        released.reverse();
        log.release(&released);
        // 512 pieces of 2,052 bytes are a megabyte: all of it but the two
        // blocks shared with the pieces kept goes back.
        assert!(
            blocks() + 1_000_000 < before,
            "{before} bytes then {}",
            blocks()
        );
        assert_eq!(log.read(&kept).unwrap(), vec![1; 100]);
        assert_eq!(log.read(&after).unwrap(), vec![3; 100]);
    }

    #[test]
    fn appended_bytes_read_back_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = PayloadLog::open(dir.path()).unwrap();
        let first = log.append(b"first").unwrap();
        let second = log.append(&[7; 1000]).unwrap();
        log.sync().unwrap();
        assert_eq!(log.read(&first).unwrap(), b"first");
        assert_eq!(first.offset, 8, "after the magic");
        assert_eq!(
            second.offset,
            8 + 5 + 4,
            "after the first piece and its CRC"
        );
        drop(log);
        let log = PayloadLog::open(dir.path()).unwrap();
        assert_eq!(log.read(&second).unwrap(), vec![7; 1000]);
        let third = log.append(b"third").unwrap();
        assert_eq!((third.segment, third.offset), (1, 8 + 9 + 1004));
    }

    #[test]
    fn a_damaged_piece_is_refused_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let log = PayloadLog::open(dir.path()).unwrap();
        let before = log.append(b"envelope").unwrap();
        let damaged = log.append(&[5; 3000]).unwrap();
        log.sync().unwrap();
        let path = segment_path(log.dir(), damaged.segment);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&[6], damaged.offset + 1234).unwrap();
        let error = log.read(&damaged).expect_err("the flipped byte is caught");
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData, "{error}");
        assert!(error.to_string().contains("CRC"), "{error}");
        assert_eq!(log.read(&before).unwrap(), b"envelope");
        // A damaged CRC is caught as well.
        file.write_all_at(&[0xff], before.offset + 8).unwrap();
        assert!(log.read(&before).is_err());
    }

    #[test]
    fn segments_written_before_the_magic_are_read_and_not_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let payload = dir.path().join(PAYLOAD_DIR);
        std::fs::create_dir_all(&payload).unwrap();
        std::fs::write(segment_path(&payload, 1), b"old envelope bytes").unwrap();
        let log = PayloadLog::open(dir.path()).unwrap();
        let old = Extent {
            segment: 1,
            offset: 4,
            len: 8,
        };
        assert_eq!(log.read(&old).unwrap(), b"envelope");
        let new = log.append(b"new").unwrap();
        assert_eq!((new.segment, new.offset), (2, 8));
        assert_eq!(log.read(&new).unwrap(), b"new");
    }
}

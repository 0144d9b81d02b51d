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

pub(crate) struct PayloadLog {
    dir: PathBuf,
    appender: Mutex<Appender>,
    files: RwLock<HashMap<u32, Arc<File>>>,
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
        let mut last = 1;
        for entry in std::fs::read_dir(&dir)? {
            let name = entry?.file_name();
            if let Some(segment) = name
                .to_str()
                .and_then(|name| name.strip_suffix(".dat"))
                .and_then(|stem| stem.parse::<u32>().ok())
            {
                last = last.max(segment);
            }
        }
        let file = Arc::new(open_segment(&dir, last)?);
        sync_dir(&dir)?;
        sync_dir(data_dir)?;
        let len = file.metadata()?.len();
        let files = RwLock::new(HashMap::from([(last, file.clone())]));
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
            if appender.len > 0 && appender.len + u64::from(len) > SEGMENT_BYTES_MAX {
                let segment = appender.segment + 1;
                let file = Arc::new(open_segment(&self.dir, segment)?);
                sync_dir(&self.dir)?;
                self.files
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(segment, file.clone());
                appender.segment = segment;
                appender.file = file;
                appender.len = 0;
            }
            let extent = Extent {
                segment: appender.segment,
                offset: appender.len,
                len,
            };
            appender.len += u64::from(len);
            (appender.file.clone(), extent)
        };
        file.write_all_at(bytes, extent.offset)?;
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
        let file = if extent.segment == appender.segment {
            appender.file.clone()
        } else {
            let file = Arc::new(open_segment(&self.dir, extent.segment)?);
            sync_dir(&self.dir)?;
            self.files
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(extent.segment, file.clone());
            file
        };
        file.write_all_at(bytes, extent.offset)?;
        let end = extent.offset + u64::from(extent.len);
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

    fn file(&self, segment: u32) -> std::io::Result<Arc<File>> {
        if let Some(file) = self
            .files
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&segment)
        {
            return Ok(file.clone());
        }
        let path = segment_path(&self.dir, segment);
        let file = Arc::new(OpenOptions::new().read(true).open(&path)?);
        self.files
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(segment, file.clone());
        Ok(file)
    }

    /// Gives the disk space of bytes nothing names back to the file system
    /// (a refused or failed send's). Best effort: a file system without
    /// hole punching keeps them as unused space.
    pub(crate) fn release(&self, extents: &[Extent]) {
        use rustix::fs::{fallocate, FallocateFlags};
        for extent in extents {
            let punched = self.file(extent.segment).and_then(|file| {
                fallocate(
                    &*file,
                    FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
                    extent.offset,
                    u64::from(extent.len),
                )
                .map_err(std::io::Error::from)
            });
            if let Err(error) = punched {
                tracing::debug!(%error, "cannot release unused payload bytes");
            }
        }
    }

    pub(crate) fn read(&self, extent: &Extent) -> std::io::Result<Vec<u8>> {
        let mut bytes = vec![0; extent.len as usize];
        self.file(extent.segment)?
            .read_exact_at(&mut bytes, extent.offset)?;
        Ok(bytes)
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_bytes_give_their_space_back_and_leave_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let log = PayloadLog::open(dir.path()).unwrap();
        let kept = log.append(&[1; 8192]).unwrap();
        let refused = log.append(&[2; 1 << 20]).unwrap();
        let after = log.append(&[3; 8192]).unwrap();
        log.sync().unwrap();
        let blocks = || {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(segment_path(log.dir(), 1))
                .unwrap()
                .blocks()
                * 512
        };
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

    #[test]
    fn appended_bytes_read_back_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = PayloadLog::open(dir.path()).unwrap();
        let first = log.append(b"first").unwrap();
        let second = log.append(&[7; 1000]).unwrap();
        log.sync().unwrap();
        assert_eq!(log.read(&first).unwrap(), b"first");
        assert_eq!(second.offset, 5);
        drop(log);
        let log = PayloadLog::open(dir.path()).unwrap();
        assert_eq!(log.read(&second).unwrap(), vec![7; 1000]);
        let third = log.append(b"third").unwrap();
        assert_eq!((third.segment, third.offset), (1, 1005));
    }
}

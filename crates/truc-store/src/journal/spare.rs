//! The next journal segment, made ready beside the writer: its magic, then
//! zeros to the segment's full size, synced, under a name no segment has.
//! Groups written into it overwrite blocks the file already has, so the
//! `fdatasync` that acknowledges each of them carries no change of the
//! file's size or block map, and with it no commit of the file system's own
//! journal: one flush fewer per acknowledgement. (Reserving the blocks
//! without writing them, `fallocate`, would not do: the first write to
//! each still changes the block map.)
//!
//! The spare is started once the current segment is half full, so a store
//! that writes little never makes one. A spare left by an earlier run is
//! kept if whole (it is renamed into place only after its sync), and a half
//! made one is removed.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use super::{sync_dir, SEGMENT_BYTES_MAX, SEGMENT_MAGIC};

/// The spare, whole and synced.
const READY_NAME: &str = "spare.segment";
/// The spare while it is written.
const MAKING_NAME: &str = "spare.segment.part";

const ZEROS_BYTES: usize = 1 << 20;

pub(super) struct Spare {
    dir: PathBuf,
    making: Option<JoinHandle<std::io::Result<()>>>,
    ready: bool,
}

impl Spare {
    /// Keeps a whole spare an earlier run left in `dir`, removes a part made.
    pub(super) fn new(dir: &Path) -> Spare {
        let _ = std::fs::remove_file(dir.join(MAKING_NAME));
        let ready_path = dir.join(READY_NAME);
        let ready = match std::fs::metadata(&ready_path) {
            Ok(meta) if meta.len() == SEGMENT_BYTES_MAX && starts_with_magic(&ready_path) => true,
            Ok(_) => {
                let _ = std::fs::remove_file(&ready_path);
                false
            }
            Err(_) => false,
        };
        Spare {
            dir: dir.to_owned(),
            making: None,
            ready,
        }
    }

    /// Starts making a spare, unless one is ready or being made.
    pub(super) fn make(&mut self) {
        if self.ready || self.making.is_some() {
            return;
        }
        let dir = self.dir.clone();
        let spawned = std::thread::Builder::new()
            .name("truc-journal-spare".into())
            .spawn(move || make_spare(&dir));
        match spawned {
            Ok(handle) => self.making = Some(handle),
            Err(error) => tracing::warn!(%error, "cannot start making a journal segment ahead"),
        }
    }

    /// The spare renamed to `path` (the new name durable) and positioned
    /// after its magic, if one is ready; `None` otherwise, and the caller
    /// makes a segment the plain way.
    pub(super) fn take(&mut self, path: &Path) -> Option<File> {
        if self.making.as_ref().is_some_and(JoinHandle::is_finished) {
            let made = self.making.take().expect("checked above").join();
            match made {
                Ok(Ok(())) => self.ready = true,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "cannot make a journal segment ahead; writing the next one plainly");
                }
                Err(_) => tracing::warn!("the thread making a journal segment ahead panicked"),
            }
        }
        if !self.ready {
            return None;
        }
        self.ready = false;
        let placed = (|| {
            std::fs::rename(self.dir.join(READY_NAME), path)?;
            sync_dir(&self.dir)?;
            let mut file = OpenOptions::new().write(true).open(path)?;
            file.seek(SeekFrom::Start(SEGMENT_MAGIC.len() as u64))?;
            Ok::<_, std::io::Error>(file)
        })();
        match placed {
            Ok(file) => Some(file),
            Err(error) => {
                tracing::warn!(segment = %path.display(), %error, "cannot take the journal segment made ahead");
                None
            }
        }
    }
}

#[cfg(test)]
impl Spare {
    /// Waits for the spare being made.
    pub(super) fn wait(&mut self) {
        if let Some(making) = self.making.take() {
            making.join().expect("not panicked").expect("spare made");
            self.ready = true;
        }
    }
}

impl Drop for Spare {
    fn drop(&mut self) {
        // A spare still being written finishes before the store lets go of
        // its directory (a store opened again there removes or keeps it).
        if let Some(making) = self.making.take() {
            let _ = making.join();
        }
    }
}

fn starts_with_magic(path: &Path) -> bool {
    let mut head = [0u8; SEGMENT_MAGIC.len()];
    File::open(path)
        .and_then(|file| std::os::unix::fs::FileExt::read_exact_at(&file, &mut head, 0))
        .is_ok()
        && head == *SEGMENT_MAGIC
}

/// Writes the magic and zeros to the segment's full size, syncs, and only
/// then gives the file its ready name.
fn make_spare(dir: &Path) -> std::io::Result<()> {
    let making = dir.join(MAKING_NAME);
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&making)?;
    file.write_all(SEGMENT_MAGIC)?;
    let zeros = vec![0u8; ZEROS_BYTES];
    let mut left = SEGMENT_BYTES_MAX - SEGMENT_MAGIC.len() as u64;
    while left > 0 {
        let now = left.min(ZEROS_BYTES as u64) as usize;
        file.write_all(&zeros[..now])?;
        left -= now as u64;
    }
    file.sync_all()?;
    std::fs::rename(&making, dir.join(READY_NAME))
}

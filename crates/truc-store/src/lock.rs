//! The data directory's lock: one store at a time on a directory, and the
//! process that holds it named, so that a second hub is told who has it
//! instead of reading the lock as damage.

use std::io::{Read, Seek, Write};
use std::path::Path;

use fs2::FileExt;

use crate::error::StoreError;

/// The lock file in the data directory; it holds the holder's PID.
pub const LOCK_FILE: &str = "hub.lock";

/// Held while the store is open; the lock goes with the process, so a
/// killed hub leaves a file that the next one takes at once.
pub(crate) struct DirectoryLock {
    _file: std::fs::File,
}

impl DirectoryLock {
    pub(crate) fn take(dir: &Path) -> Result<DirectoryLock, StoreError> {
        // A new data directory is made here, as sled would make it.
        std::fs::create_dir_all(dir).map_err(|error| StoreError::io("create", dir, error))?;
        let path = dir.join(LOCK_FILE);
        let io = |op: &'static str| {
            let path = path.clone();
            move |error| StoreError::io(op, &path, error)
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io("open"))?;
        if let Err(error) = file.try_lock_exclusive() {
            let contended = error.kind() == std::io::ErrorKind::WouldBlock
                || error.raw_os_error() == fs2::lock_contended_error().raw_os_error();
            if !contended {
                return Err(io("lock")(error));
            }
            let mut text = String::new();
            let pid = file
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse::<u32>().ok());
            return Err(StoreError::Locked {
                dir: dir.display().to_string(),
                pid,
            });
        }
        file.set_len(0).map_err(io("truncate"))?;
        file.rewind().map_err(io("rewind"))?;
        writeln!(file, "{}", std::process::id()).map_err(io("write"))?;
        Ok(DirectoryLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder_and_the_lock_goes_with_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = DirectoryLock::take(dir.path()).unwrap();
        match DirectoryLock::take(dir.path()) {
            Err(StoreError::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            Err(other) => panic!("a held directory is refused as locked, not {other}"),
            Ok(_) => panic!("a held directory is refused as locked"),
        }
        drop(held);
        DirectoryLock::take(dir.path()).expect("free again once its holder lets go");
    }
}

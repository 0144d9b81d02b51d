//! Making what sled wrote durable. sled 0.34's `flush` ends, on Linux, with
//! `sync_file_range`, which neither commits the file's size and allocation
//! nor flushes the device's cache; it never syncs the blob files it writes
//! for large values, nor the names of the files it creates. Its own flusher
//! thread calls `fsync` on its log every half second. A checkpoint lets the
//! journal's segments go as soon as sled holds their groups, so sled's files
//! must be on the device first: the store syncs them itself after each
//! flush (an `fsync` through any descriptor of a file covers its inode).

use std::fs::File;
use std::path::Path;

use crate::journal::sync_dir;

/// sled's log and its configuration (written once, never synced by sled:
/// an empty one after a power cut stops sled from opening), in its directory.
const SLED_FILES: [&str; 2] = ["db", "conf"];
/// sled's folder of values too large for its pages.
const SLED_BLOBS_DIR: &str = "blobs";

/// Syncs sled's log, its configuration, its blob files and the names in
/// its directory.
pub(crate) fn sync_tree_files(dir: &Path) -> std::io::Result<()> {
    for name in SLED_FILES {
        File::open(dir.join(name))?.sync_all()?;
    }
    let blobs = dir.join(SLED_BLOBS_DIR);
    if blobs.is_dir() {
        // Each blob is written once and never changed: syncing one that is
        // already durable costs little.
        for entry in std::fs::read_dir(&blobs)? {
            let path = entry?.path();
            match File::open(&path) {
                Ok(file) => file.sync_all()?,
                // Removed by sled since it was listed: nothing to keep.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        sync_dir(&blobs)?;
    }
    // Its configuration, snapshots and blob folder are named here.
    sync_dir(dir)
}

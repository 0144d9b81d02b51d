//! The file system's contents in memory, each file and directory twice: as
//! programs see it now, and as a disk would hold it after losing power (what
//! the last `fsync`/`fdatasync` of that file, or `fsync` of that directory,
//! made durable). In between, every write, truncation and directory entry
//! change is remembered in order, so that a power cut can keep none of them,
//! or a prefix with its last write torn at a sector or page boundary.
//!
//! This is the worst case POSIX allows and what a journaling file system
//! can show after a crash: a file's data is durable only after its own
//! sync, and a name (created, renamed or removed) only after a sync of its
//! directory. A rename within one directory is one change (it is atomic on
//! every journaling file system); nothing here reorders writes within a
//! file, so a torn write loses a suffix of its sectors.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::time::SystemTime;

use truc_domain::SplitMix64;

/// Inode number of the root directory.
pub const ROOT_INODE: u64 = 1;

/// A change to a file since its last sync.
#[derive(Clone, Debug)]
pub(crate) enum FileChange {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
    Zero { offset: u64, len: u64 },
}

/// A change to a directory's entries since its last sync.
#[derive(Clone, Debug)]
pub(crate) enum DirChange {
    Insert(OsString, u64),
    Remove(OsString),
    /// Within the directory, at once: `from` disappears, `to` names its inode.
    Rename {
        from: OsString,
        to: OsString,
    },
}

#[derive(Clone, Debug)]
pub(crate) enum Content {
    File {
        current: Vec<u8>,
        durable: Vec<u8>,
        pending: Vec<FileChange>,
    },
    Dir {
        current: BTreeMap<OsString, u64>,
        durable: BTreeMap<OsString, u64>,
        pending: Vec<DirChange>,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct Inode {
    pub content: Content,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    /// The directory and name it was last given, for paths in reports and triggers.
    pub parent: u64,
    pub name: OsString,
}

impl Inode {
    pub fn is_dir(&self) -> bool {
        matches!(self.content, Content::Dir { .. })
    }

    pub fn size(&self) -> u64 {
        match &self.content {
            Content::File { current, .. } => current.len() as u64,
            Content::Dir { current, .. } => current.len() as u64,
        }
    }
}

/// Why an operation failed, as an errno the FUSE layer returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelError {
    NotFound,
    Exists,
    NotDir,
    IsDir,
    NotEmpty,
}

/// How a power cut treats what was not synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutMode {
    /// Every change since the last sync is lost.
    LoseAll,
    /// Each file and directory keeps a random prefix of its changes; a file's
    /// last kept write may be torn at a 512-byte or 4 KiB boundary.
    Torn { seed: u64 },
    /// Files lose every change since their last sync, directories keep all
    /// of theirs: the file system's own journal wrote the names out, the
    /// data never reached the disk.
    KeepNames,
}

/// What a power cut did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CutReport {
    /// Files with changes since their last sync.
    pub files_unsynced: usize,
    /// Changes to file contents that were lost whole.
    pub writes_lost: usize,
    /// Writes of which only a prefix of sectors reached the disk.
    pub writes_torn: usize,
    /// Changes to file contents that were kept although never synced.
    pub writes_kept: usize,
    /// Directory entry changes lost (a created, renamed or removed name).
    pub entries_lost: usize,
    /// Directory entry changes kept although their directory was never synced.
    pub entries_kept: usize,
    /// Paths of the files that lost or tore a write, at most `REPORT_PATHS_MAX`.
    pub paths: Vec<String>,
}

/// Paths named in one cut's report.
const REPORT_PATHS_MAX: usize = 32;

pub(crate) struct Model {
    pub inodes: HashMap<u64, Inode>,
    next_inode: u64,
}

fn apply_file_change(bytes: &mut Vec<u8>, change: &FileChange) {
    match change {
        FileChange::Write {
            offset,
            bytes: data,
        } => {
            let offset = *offset as usize;
            let end = offset + data.len();
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            bytes[offset..end].copy_from_slice(data);
        }
        FileChange::SetLen(len) => bytes.resize(*len as usize, 0),
        FileChange::Zero { offset, len } => {
            let start = (*offset as usize).min(bytes.len());
            let end = ((*offset + *len) as usize).min(bytes.len());
            bytes[start..end].fill(0);
        }
    }
}

fn apply_dir_change(entries: &mut BTreeMap<OsString, u64>, change: &DirChange) {
    match change {
        DirChange::Insert(name, inode) => {
            entries.insert(name.clone(), *inode);
        }
        DirChange::Remove(name) => {
            entries.remove(name);
        }
        DirChange::Rename { from, to } => {
            if let Some(inode) = entries.remove(from) {
                entries.insert(to.clone(), inode);
            }
        }
    }
}

impl Model {
    pub fn new() -> Model {
        let now = SystemTime::now();
        let root = Inode {
            content: Content::Dir {
                current: BTreeMap::new(),
                durable: BTreeMap::new(),
                pending: Vec::new(),
            },
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: now,
            ctime: now,
            parent: ROOT_INODE,
            name: OsString::new(),
        };
        Model {
            inodes: HashMap::from([(ROOT_INODE, root)]),
            next_inode: ROOT_INODE + 1,
        }
    }

    pub fn get(&self, inode: u64) -> Result<&Inode, ModelError> {
        self.inodes.get(&inode).ok_or(ModelError::NotFound)
    }

    fn get_mut(&mut self, inode: u64) -> Result<&mut Inode, ModelError> {
        self.inodes.get_mut(&inode).ok_or(ModelError::NotFound)
    }

    /// The path of an inode from the mount's root, as last named.
    pub fn path(&self, mut inode: u64) -> String {
        let mut parts = Vec::new();
        while inode != ROOT_INODE {
            let Some(node) = self.inodes.get(&inode) else {
                break;
            };
            parts.push(node.name.to_string_lossy().into_owned());
            inode = node.parent;
        }
        parts.reverse();
        format!("/{}", parts.join("/"))
    }

    fn entries(&self, dir: u64) -> Result<&BTreeMap<OsString, u64>, ModelError> {
        match &self.get(dir)?.content {
            Content::Dir { current, .. } => Ok(current),
            Content::File { .. } => Err(ModelError::NotDir),
        }
    }

    pub fn lookup(&self, dir: u64, name: &OsStr) -> Result<u64, ModelError> {
        self.entries(dir)?
            .get(name)
            .copied()
            .ok_or(ModelError::NotFound)
    }

    pub fn list(&self, dir: u64) -> Result<Vec<(OsString, u64)>, ModelError> {
        Ok(self
            .entries(dir)?
            .iter()
            .map(|(name, inode)| (name.clone(), *inode))
            .collect())
    }

    fn change_dir(&mut self, dir: u64, change: DirChange) -> Result<(), ModelError> {
        let node = self.get_mut(dir)?;
        node.mtime = SystemTime::now();
        match &mut node.content {
            Content::Dir {
                current, pending, ..
            } => {
                apply_dir_change(current, &change);
                pending.push(change);
                Ok(())
            }
            Content::File { .. } => Err(ModelError::NotDir),
        }
    }

    /// Creates a file or directory named `name` in `dir`.
    pub fn create(
        &mut self,
        dir: u64,
        name: &OsStr,
        directory: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<u64, ModelError> {
        if self.entries(dir)?.contains_key(name) {
            return Err(ModelError::Exists);
        }
        let inode = self.next_inode;
        self.next_inode += 1;
        let now = SystemTime::now();
        let content = if directory {
            Content::Dir {
                current: BTreeMap::new(),
                durable: BTreeMap::new(),
                pending: Vec::new(),
            }
        } else {
            Content::File {
                current: Vec::new(),
                durable: Vec::new(),
                pending: Vec::new(),
            }
        };
        self.inodes.insert(
            inode,
            Inode {
                content,
                mode: mode & 0o7777,
                uid,
                gid,
                mtime: now,
                ctime: now,
                parent: dir,
                name: name.to_owned(),
            },
        );
        self.change_dir(dir, DirChange::Insert(name.to_owned(), inode))?;
        Ok(inode)
    }

    /// Removes a name; a directory must be empty (`directory` says which is expected).
    pub fn remove(&mut self, dir: u64, name: &OsStr, directory: bool) -> Result<(), ModelError> {
        let inode = self.lookup(dir, name)?;
        let node = self.get(inode)?;
        match (&node.content, directory) {
            (Content::Dir { current, .. }, true) if !current.is_empty() => {
                return Err(ModelError::NotEmpty)
            }
            (Content::Dir { .. }, false) => return Err(ModelError::IsDir),
            (Content::File { .. }, true) => return Err(ModelError::NotDir),
            _ => {}
        }
        self.change_dir(dir, DirChange::Remove(name.to_owned()))
    }

    pub fn rename(
        &mut self,
        from_dir: u64,
        from: &OsStr,
        to_dir: u64,
        to: &OsStr,
        no_replace: bool,
    ) -> Result<(), ModelError> {
        let inode = self.lookup(from_dir, from)?;
        if let Ok(existing) = self.lookup(to_dir, to) {
            if no_replace {
                return Err(ModelError::Exists);
            }
            if existing == inode {
                return Ok(());
            }
            let moving_dir = self.get(inode)?.is_dir();
            match &self.get(existing)?.content {
                Content::Dir { current, .. } if !moving_dir || !current.is_empty() => {
                    return Err(if moving_dir {
                        ModelError::NotEmpty
                    } else {
                        ModelError::IsDir
                    })
                }
                Content::File { .. } if moving_dir => return Err(ModelError::NotDir),
                _ => {}
            }
        }
        if from_dir == to_dir {
            self.change_dir(
                from_dir,
                DirChange::Rename {
                    from: from.to_owned(),
                    to: to.to_owned(),
                },
            )?;
        } else {
            self.change_dir(to_dir, DirChange::Insert(to.to_owned(), inode))?;
            self.change_dir(from_dir, DirChange::Remove(from.to_owned()))?;
        }
        let node = self.get_mut(inode)?;
        node.parent = to_dir;
        node.name = to.to_owned();
        node.ctime = SystemTime::now();
        Ok(())
    }

    fn change_file(&mut self, inode: u64, change: FileChange) -> Result<(), ModelError> {
        let node = self.get_mut(inode)?;
        node.mtime = SystemTime::now();
        match &mut node.content {
            Content::File {
                current, pending, ..
            } => {
                apply_file_change(current, &change);
                pending.push(change);
                Ok(())
            }
            Content::Dir { .. } => Err(ModelError::IsDir),
        }
    }

    pub fn write(&mut self, inode: u64, offset: u64, bytes: &[u8]) -> Result<(), ModelError> {
        self.change_file(
            inode,
            FileChange::Write {
                offset,
                bytes: bytes.to_vec(),
            },
        )
    }

    pub fn set_len(&mut self, inode: u64, len: u64) -> Result<(), ModelError> {
        self.change_file(inode, FileChange::SetLen(len))
    }

    pub fn zero(&mut self, inode: u64, offset: u64, len: u64) -> Result<(), ModelError> {
        self.change_file(inode, FileChange::Zero { offset, len })
    }

    pub fn read(&self, inode: u64, offset: u64, size: u32) -> Result<&[u8], ModelError> {
        match &self.get(inode)?.content {
            Content::File { current, .. } => {
                let start = (offset as usize).min(current.len());
                let end = start.saturating_add(size as usize).min(current.len());
                Ok(&current[start..end])
            }
            Content::Dir { .. } => Err(ModelError::IsDir),
        }
    }

    /// `fsync`/`fdatasync` of a file, or `fsync` of a directory: what it
    /// holds now survives a power cut.
    pub fn sync(&mut self, inode: u64) -> Result<(), ModelError> {
        match &mut self.get_mut(inode)?.content {
            Content::File {
                durable, pending, ..
            } => {
                for change in pending.drain(..) {
                    apply_file_change(durable, &change);
                }
            }
            Content::Dir {
                durable, pending, ..
            } => {
                for change in pending.drain(..) {
                    apply_dir_change(durable, &change);
                }
            }
        }
        Ok(())
    }

    /// Changes not durable yet, in files and directories whose path
    /// contains `path_part` (all of them for "").
    pub fn unsynced(&self, path_part: &str) -> usize {
        self.inodes
            .iter()
            .map(|(inode, node)| {
                let pending = match &node.content {
                    Content::File { pending, .. } => pending.len(),
                    Content::Dir { pending, .. } => pending.len(),
                };
                if pending > 0 && !path_part.is_empty() && !self.path(*inode).contains(path_part) {
                    0
                } else {
                    pending
                }
            })
            .sum()
    }

    /// Loses power: each inode keeps what was durable (and, torn, some of
    /// what was not), and only what durable names still reach from the root
    /// survives.
    pub fn cut(&mut self, mode: CutMode) -> CutReport {
        let mut report = CutReport::default();
        // The cut's choices follow from its seed; by remainder, as the power
        // cuts RELIABILITY.md records were drawn (no bound here is 0).
        let mut rng = SplitMix64::new(match mode {
            CutMode::LoseAll | CutMode::KeepNames => 0,
            CutMode::Torn { seed } => seed,
        });
        let torn = matches!(mode, CutMode::Torn { .. });
        let mut inodes: Vec<u64> = self.inodes.keys().copied().collect();
        // Sorted, so that a seed gives the same cut of the same contents.
        inodes.sort_unstable();
        let mut paths = Vec::new();
        for inode in &inodes {
            let path = self.path(*inode);
            let node = self.inodes.get_mut(inode).expect("listed");
            match &mut node.content {
                Content::File {
                    current,
                    durable,
                    pending,
                } => {
                    if pending.is_empty() {
                        continue;
                    }
                    report.files_unsynced += 1;
                    let changes = std::mem::take(pending);
                    // Half the files lose everything; the others keep a prefix.
                    let kept = if torn && rng.below_modulo(2) == 1 {
                        rng.below_modulo(changes.len() as u64 + 1) as usize
                    } else {
                        0
                    };
                    for change in &changes[..kept] {
                        apply_file_change(durable, change);
                    }
                    report.writes_kept += kept;
                    let mut lost = changes.len() - kept;
                    let mut torn_here = false;
                    if let Some(FileChange::Write { offset, bytes }) = changes.get(kept) {
                        if torn {
                            let sector = if rng.below_modulo(2) == 0 { 512 } else { 4096 };
                            let end = offset + bytes.len() as u64;
                            // The boundaries inside this write.
                            let first = (offset / sector + 1) * sector;
                            let boundaries: Vec<u64> =
                                (first..end).step_by(sector as usize).collect();
                            // A write that spans a boundary is always torn at one:
                            // the cut that would lose it whole is `LoseAll`.
                            if !boundaries.is_empty() {
                                let cut_at =
                                    boundaries[rng.below_modulo(boundaries.len() as u64) as usize];
                                let kept_bytes = (cut_at - offset) as usize;
                                apply_file_change(
                                    durable,
                                    &FileChange::Write {
                                        offset: *offset,
                                        bytes: bytes[..kept_bytes].to_vec(),
                                    },
                                );
                                report.writes_torn += 1;
                                torn_here = true;
                                lost -= 1;
                            }
                        }
                    }
                    report.writes_lost += lost;
                    if lost > 0 || torn_here {
                        paths.push(path);
                    }
                    *current = durable.clone();
                }
                Content::Dir {
                    current,
                    durable,
                    pending,
                } => {
                    if pending.is_empty() {
                        continue;
                    }
                    let changes = std::mem::take(pending);
                    let kept = if mode == CutMode::KeepNames {
                        changes.len()
                    } else if torn && rng.below_modulo(2) == 1 {
                        rng.below_modulo(changes.len() as u64 + 1) as usize
                    } else {
                        0
                    };
                    for change in &changes[..kept] {
                        apply_dir_change(durable, change);
                    }
                    report.entries_kept += kept;
                    report.entries_lost += changes.len() - kept;
                    *current = durable.clone();
                }
            }
        }
        // Only what the root still reaches by durable names survives.
        let mut reached = HashSet::from([ROOT_INODE]);
        let mut stack = vec![ROOT_INODE];
        while let Some(dir) = stack.pop() {
            let children: Vec<(OsString, u64)> = match self.inodes.get(&dir).map(|n| &n.content) {
                Some(Content::Dir { current, .. }) => current
                    .iter()
                    .map(|(name, inode)| (name.clone(), *inode))
                    .collect(),
                _ => continue,
            };
            for (name, child) in children {
                if let Some(node) = self.inodes.get_mut(&child) {
                    node.parent = dir;
                    node.name = name;
                    if reached.insert(child) {
                        stack.push(child);
                    }
                }
            }
        }
        self.inodes.retain(|inode, _| reached.contains(inode));
        // A name whose inode did not survive (it was never reachable before) goes too.
        let alive: HashSet<u64> = self.inodes.keys().copied().collect();
        for node in self.inodes.values_mut() {
            if let Content::Dir {
                current, durable, ..
            } = &mut node.content
            {
                current.retain(|_, inode| alive.contains(inode));
                durable.retain(|_, inode| alive.contains(inode));
            }
        }
        paths.sort();
        paths.dedup();
        paths.truncate(REPORT_PATHS_MAX);
        report.paths = paths;
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> &OsStr {
        OsStr::new(text)
    }

    fn file(model: &mut Model, dir: u64, text: &str) -> u64 {
        model.create(dir, name(text), false, 0o644, 0, 0).unwrap()
    }

    #[test]
    fn a_cut_keeps_what_was_synced_and_nothing_else() {
        let mut model = Model::new();
        let kept = file(&mut model, ROOT_INODE, "kept");
        model.write(kept, 0, b"durable").unwrap();
        model.sync(kept).unwrap();
        model.sync(ROOT_INODE).unwrap();
        model.write(kept, 7, b" and volatile").unwrap();
        let unnamed = file(&mut model, ROOT_INODE, "unnamed");
        model
            .write(unnamed, 0, b"synced data, unsynced name")
            .unwrap();
        model.sync(unnamed).unwrap();
        let report = model.cut(CutMode::LoseAll);
        assert_eq!(model.read(kept, 0, 100).unwrap(), b"durable");
        assert_eq!(
            model.lookup(ROOT_INODE, name("unnamed")),
            Err(ModelError::NotFound)
        );
        assert!(!model.inodes.contains_key(&unnamed));
        assert_eq!(report.writes_lost, 1);
        assert_eq!(report.entries_lost, 1);
    }

    #[test]
    fn a_rename_is_durable_only_with_its_directory() {
        let mut model = Model::new();
        let dir = model
            .create(ROOT_INODE, name("d"), true, 0o755, 0, 0)
            .unwrap();
        model.sync(ROOT_INODE).unwrap();
        let staged = file(&mut model, dir, ".staged");
        model.write(staged, 0, b"x").unwrap();
        model.sync(staged).unwrap();
        model.sync(dir).unwrap();
        model
            .rename(dir, name(".staged"), dir, name("final"), false)
            .unwrap();
        let mut before = model.inodes.clone();
        let mut lost = Model {
            inodes: std::mem::take(&mut before),
            next_inode: 100,
        };
        lost.cut(CutMode::LoseAll);
        assert!(lost.lookup(dir, name(".staged")).is_ok());
        assert!(lost.lookup(dir, name("final")).is_err());
        model.sync(dir).unwrap();
        model.cut(CutMode::LoseAll);
        assert!(model.lookup(dir, name(".staged")).is_err());
        assert_eq!(
            model
                .read(model.lookup(dir, name("final")).unwrap(), 0, 9)
                .unwrap(),
            b"x"
        );
    }

    #[test]
    fn torn_writes_end_on_a_sector_boundary() {
        let mut torn_seen = 0;
        for seed in 0..200 {
            let mut model = Model::new();
            let inode = file(&mut model, ROOT_INODE, "f");
            model.sync(ROOT_INODE).unwrap();
            model.write(inode, 100, &[7u8; 10_000]).unwrap();
            let report = model.cut(CutMode::Torn { seed });
            let bytes = model.read(inode, 0, u32::MAX).unwrap();
            if report.writes_torn == 1 {
                torn_seen += 1;
                assert_eq!(bytes.len() % 512, 0, "seed {seed}: {} bytes", bytes.len());
                assert!(bytes.len() > 100 && bytes.len() < 10_100);
                assert!(bytes[100..].iter().all(|b| *b == 7));
            } else {
                assert!(bytes.is_empty() || bytes.len() == 10_100, "seed {seed}");
            }
        }
        assert!(torn_seen > 20, "{torn_seen} torn writes in 200 cuts");
    }
}

//! The FUSE side: each request the kernel sends becomes an operation on the
//! in-memory model (`model.rs`), after the power gate (`Shared::gate`) says
//! the power is on and no trigger fell on it.
//!
//! Files are opened with direct I/O, so that every read and write reaches
//! the model and the kernel's page cache holds nothing that could outlive a
//! power cut; `flock` is left to the kernel (sled locks its file).

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};

use crate::model::{Inode, ModelError};
use crate::{Operation, Shared};

/// How long the kernel may keep names and attributes: each mount lives
/// until the next power cut, and every change goes through the kernel.
const TTL: Duration = Duration::from_secs(1);

/// Free space reported by `statfs`: enough that the hub never refuses a send.
const STATFS_BLOCKS: u64 = 1 << 28;

const FALLOC_FL_KEEP_SIZE: i32 = 0x01;
const FALLOC_FL_PUNCH_HOLE: i32 = 0x02;

pub(crate) struct FaultyDisk {
    pub shared: Arc<Shared>,
    /// The mount this handler serves; requests of an earlier mount (before
    /// a cut) get EIO and change nothing.
    pub epoch: u64,
}

fn errno(error: ModelError) -> Errno {
    match error {
        ModelError::NotFound => Errno::ENOENT,
        ModelError::Exists => Errno::EEXIST,
        ModelError::NotDir => Errno::ENOTDIR,
        ModelError::IsDir => Errno::EISDIR,
        ModelError::NotEmpty => Errno::ENOTEMPTY,
    }
}

fn attr(inode: u64, node: &Inode) -> FileAttr {
    let size = node.size();
    FileAttr {
        ino: INodeNo(inode),
        size,
        blocks: size.div_ceil(512),
        atime: node.mtime,
        mtime: node.mtime,
        ctime: node.ctime,
        crtime: node.ctime,
        kind: if node.is_dir() {
            FileType::Directory
        } else {
            FileType::RegularFile
        },
        perm: (node.mode & 0o7777) as u16,
        nlink: if node.is_dir() { 2 } else { 1 },
        uid: node.uid,
        gid: node.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl FaultyDisk {
    /// Runs `operation` on the model if the power is on; `kind` and the path
    /// of `inode` (with `name` under it) are what triggers look at.
    fn change<T>(
        &self,
        kind: Operation,
        inode: u64,
        name: Option<&OsStr>,
        operation: impl FnOnce(&mut crate::State) -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        self.shared.gate(self.epoch, kind, inode, name, operation)
    }

    fn entry_reply(&self, inode: Result<u64, Errno>, reply: ReplyEntry) {
        let state = self.shared.lock();
        match inode.and_then(|inode| {
            state
                .model
                .get(inode)
                .map(|node| attr(inode, node))
                .map_err(errno)
        }) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(error) => reply.error(error),
        }
    }
}

impl Filesystem for FaultyDisk {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let inode = self.change(Operation::Read, parent.0, None, |state| {
            state.model.lookup(parent.0, name).map_err(errno)
        });
        self.entry_reply(inode, reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let result = self.change(Operation::Read, ino.0, None, |state| {
            state
                .model
                .get(ino.0)
                .map(|node| attr(ino.0, node))
                .map_err(errno)
        });
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(error) => reply.error(error),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let _ = req;
        let kind = if size.is_some() {
            Operation::Write
        } else {
            Operation::Read
        };
        let result = self.change(kind, ino.0, None, |state| {
            if let Some(size) = size {
                state.model.set_len(ino.0, size).map_err(errno)?;
            }
            let node = state.model.inodes.get_mut(&ino.0).ok_or(Errno::ENOENT)?;
            if let Some(mode) = mode {
                node.mode = mode & 0o7777;
            }
            if let Some(uid) = uid {
                node.uid = uid;
            }
            if let Some(gid) = gid {
                node.gid = gid;
            }
            if let Some(mtime) = mtime {
                node.mtime = match mtime {
                    TimeOrNow::SpecificTime(time) => time,
                    TimeOrNow::Now => SystemTime::now(),
                };
            }
            Ok(attr(ino.0, node))
        });
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(error) => reply.error(error),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        // Regular files only: nothing the hub writes is a device or a pipe.
        if mode & 0o170000 != 0o100000 {
            reply.error(Errno::EPERM);
            return;
        }
        let inode = self.change(Operation::Create, parent.0, Some(name), |state| {
            state
                .model
                .create(parent.0, name, false, mode & !umask, req.uid(), req.gid())
                .map_err(errno)
        });
        self.entry_reply(inode, reply);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let inode = self.change(Operation::Create, parent.0, Some(name), |state| {
            state
                .model
                .create(parent.0, name, true, mode & !umask, req.uid(), req.gid())
                .map_err(errno)
        });
        self.entry_reply(inode, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.change(Operation::Remove, parent.0, Some(name), |state| {
            state.model.remove(parent.0, name, false).map_err(errno)
        }) {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(error),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.change(Operation::Remove, parent.0, Some(name), |state| {
            state.model.remove(parent.0, name, true).map_err(errno)
        }) {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(error),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            reply.error(Errno::EINVAL);
            return;
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        match self.change(Operation::Rename, newparent.0, Some(newname), |state| {
            state
                .model
                .rename(parent.0, name, newparent.0, newname, no_replace)
                .map_err(errno)
        }) {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(error),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.change(Operation::Read, ino.0, None, |state| {
            state.model.get(ino.0).map(|_| ()).map_err(errno)
        }) {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO),
            Err(error) => reply.error(error),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.change(Operation::Read, ino.0, None, |state| {
            state
                .model
                .read(ino.0, offset, size)
                .map(<[u8]>::to_vec)
                .map_err(errno)
        }) {
            Ok(bytes) => reply.data(&bytes),
            Err(error) => reply.error(error),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.change(Operation::Write, ino.0, None, |state| {
            state.model.write(ino.0, offset, data).map_err(errno)
        }) {
            Ok(()) => reply.written(data.len() as u32),
            Err(error) => reply.error(error),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) makes nothing durable.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.change(Operation::Sync, ino.0, None, |state| state.sync(ino.0)) {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(error),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let listed = self.change(Operation::Read, ino.0, None, |state| {
            let node = state.model.get(ino.0).map_err(errno)?;
            let parent = node.parent;
            let mut entries = vec![
                (ino.0, FileType::Directory, OsStr::new(".").to_owned()),
                (parent, FileType::Directory, OsStr::new("..").to_owned()),
            ];
            for (name, child) in state.model.list(ino.0).map_err(errno)? {
                let kind = match state.model.get(child) {
                    Ok(node) if node.is_dir() => FileType::Directory,
                    _ => FileType::RegularFile,
                };
                entries.push((child, kind, name));
            }
            Ok(entries)
        });
        match listed {
            Ok(entries) => {
                for (index, (child, kind, name)) in
                    entries.into_iter().enumerate().skip(offset as usize)
                {
                    if reply.add(INodeNo(child), index as u64 + 1, kind, &name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(error) => reply.error(error),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.change(Operation::Sync, ino.0, None, |state| state.sync(ino.0)) {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(error),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(
            STATFS_BLOCKS,
            STATFS_BLOCKS,
            STATFS_BLOCKS,
            1 << 20,
            1 << 20,
            4096,
            255,
            4096,
        );
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        // No extended attributes: the kernel stops asking (each write asks
        // for `security.capability` until told).
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let created = self.change(Operation::Create, parent.0, Some(name), |state| {
            let inode = state
                .model
                .create(parent.0, name, false, mode & !umask, req.uid(), req.gid())
                .map_err(errno)?;
            state
                .model
                .get(inode)
                .map(|node| attr(inode, node))
                .map_err(errno)
        });
        match created {
            Ok(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(error) => reply.error(error),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let result = self.change(Operation::Write, ino.0, None, |state| {
            if mode & FALLOC_FL_PUNCH_HOLE != 0 {
                return state.model.zero(ino.0, offset, length).map_err(errno);
            }
            if mode & !FALLOC_FL_KEEP_SIZE != 0 {
                return Err(Errno::EOPNOTSUPP);
            }
            let size = state.model.get(ino.0).map_err(errno)?.size();
            if mode & FALLOC_FL_KEEP_SIZE == 0 && offset + length > size {
                state.model.set_len(ino.0, offset + length).map_err(errno)?;
            }
            Ok(())
        });
        match result {
            Ok(()) => reply.ok(),
            Err(error) => reply.error(error),
        }
    }
}

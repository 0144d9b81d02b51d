//! A test file system that loses what was not synced: a FUSE mount whose
//! files live in memory twice, as programs see them and as a disk would hold
//! them after losing power (`model.rs`). On command it "cuts the power":
//! every write since a file's last `fsync`/`fdatasync`, and every directory
//! entry created, renamed or removed since its directory's last `fsync`, is
//! thrown away, or a random prefix of them kept with the last write torn at a
//! 512-byte or 4 KiB boundary. Programs then start again on what remains.
//!
//! A cut can fall at a chosen moment: a [`Trigger`] names an operation and a
//! part of a path, and the first matching request stops the power there
//! (every request from then on waits, as on a machine that lost power),
//! until the controller kills the processes and calls [`FaultFs::cut`].
//!
//! Mounting needs `/dev/fuse` and the right to mount (root, or `fusermount3`
//! from Debian's `fuse3`); [`FaultFsError::Unavailable`] says when either is
//! missing, so that a test can say it was skipped.

mod fs;
mod model;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use model::{CutMode, CutReport};

/// How long a request waits while the power is stopped before it fails on
/// its own (the controller normally ends the wait much sooner).
const FROZEN_WAIT_MAX: Duration = Duration::from_secs(120);

/// Why the file system cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FaultFsError {
    /// This machine cannot mount FUSE file systems (no `/dev/fuse`, or no
    /// right to mount): tests that need one are skipped, saying so.
    #[error("FUSE is unavailable here: {reason}")]
    Unavailable { reason: String },
    #[error("mount {path}: {source}")]
    Mount {
        path: String,
        source: std::io::Error,
    },
    #[error("unmount {path}: {source}")]
    Unmount {
        path: String,
        source: std::io::Error,
    },
}

/// The kind of request a trigger waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Operation {
    /// Lookups, attributes, reads and listings (never a trigger's aim).
    Read,
    /// A write, a truncation or a hole punched into a file.
    Write,
    /// `fsync`/`fdatasync` of a file or `fsync` of a directory.
    Sync,
    Create,
    Remove,
    Rename,
}

/// Stops the power at the `skip + 1`-th request of `operation` whose path
/// contains `path_contains`.
#[derive(Clone, Debug)]
pub struct Trigger {
    pub operation: Operation,
    pub path_contains: String,
    pub skip: u64,
    /// Whether the request itself takes effect (a write reaches the page
    /// cache, a sync completes) before the power stops; its caller never
    /// hears back either way.
    pub apply_first: bool,
}

/// Where the power stopped.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Hit {
    pub operation: Operation,
    pub path: String,
    pub applied: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Power {
    On,
    /// Every request waits; none changes anything.
    Stopped,
    /// Every request fails with EIO and changes nothing.
    Off,
}

pub(crate) struct State {
    pub model: model::Model,
    power: Power,
    /// The mount now served; requests of earlier mounts fail.
    epoch: u64,
    trigger: Option<Trigger>,
    hit: Option<Hit>,
    /// Path parts whose next sync fails with EIO, leaving the data unsynced.
    failing_syncs: Vec<String>,
    /// Requests that changed something, since the mount.
    changes: u64,
}

impl State {
    /// A sync that may be made to fail (see [`FaultFs::fail_next_sync`]).
    pub(crate) fn sync(&mut self, inode: u64) -> Result<(), fuser::Errno> {
        if !self.failing_syncs.is_empty() {
            let path = self.model.path(inode);
            if let Some(index) = self
                .failing_syncs
                .iter()
                .position(|part| path.contains(part.as_str()))
            {
                self.failing_syncs.remove(index);
                return Err(fuser::Errno::EIO);
            }
        }
        self.model.sync(inode).map_err(|_| fuser::Errno::ENOENT)
    }
}

pub(crate) struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `operation` if the power is on and this request is not the
    /// one a trigger waits for; otherwise waits for the power cut and fails.
    pub(crate) fn gate<T>(
        &self,
        epoch: u64,
        kind: Operation,
        inode: u64,
        name: Option<&OsStr>,
        operation: impl FnOnce(&mut State) -> Result<T, fuser::Errno>,
    ) -> Result<T, fuser::Errno> {
        let mut state = self.lock();
        if state.epoch != epoch {
            return Err(fuser::Errno::EIO);
        }
        match state.power {
            Power::On => {}
            Power::Off => return Err(fuser::Errno::EIO),
            Power::Stopped => return Err(self.wait_stopped(state)),
        }
        if kind != Operation::Read {
            state.changes += 1;
        }
        let aimed = state.trigger.as_ref().is_some_and(|t| t.operation == kind);
        if aimed {
            let mut path = state.model.path(inode);
            if let Some(name) = name {
                if !path.ends_with('/') {
                    path.push('/');
                }
                path.push_str(&name.to_string_lossy());
            }
            let trigger = state.trigger.as_mut().expect("aimed");
            if path.contains(trigger.path_contains.as_str()) {
                if trigger.skip > 0 {
                    trigger.skip -= 1;
                } else {
                    let trigger = state.trigger.take().expect("aimed");
                    if trigger.apply_first {
                        let _ = operation(&mut state);
                    }
                    state.power = Power::Stopped;
                    state.hit = Some(Hit {
                        operation: kind,
                        path,
                        applied: trigger.apply_first,
                    });
                    self.changed.notify_all();
                    return Err(self.wait_stopped(state));
                }
            }
        }
        operation(&mut state)
    }

    /// Waits while the power is stopped: the caller's process is about to
    /// be killed, and must not learn whether its request took effect.
    fn wait_stopped(&self, mut state: MutexGuard<'_, State>) -> fuser::Errno {
        let deadline = Instant::now() + FROZEN_WAIT_MAX;
        while state.power == Power::Stopped {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        fuser::Errno::EIO
    }
}

/// The power of a [`FaultFs`]: triggers, stops and failures, from any thread.
#[derive(Clone)]
pub struct PowerSwitch {
    shared: Arc<Shared>,
}

impl PowerSwitch {
    /// Stops the power at the request `trigger` describes (replacing any
    /// trigger not yet hit).
    pub fn arm(&self, trigger: Trigger) {
        let mut state = self.shared.lock();
        state.hit = None;
        state.trigger = Some(trigger);
    }

    /// Removes the trigger; whether it had been hit.
    pub fn disarm(&self) -> Option<Hit> {
        let mut state = self.shared.lock();
        state.trigger = None;
        state.hit.take()
    }

    /// Waits up to `timeout` for the armed trigger to stop the power.
    pub fn wait_hit(&self, timeout: Duration) -> Option<Hit> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if let Some(hit) = &state.hit {
                return Some(hit.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Stops the power now, wherever the programs are.
    pub fn stop_power(&self) {
        let mut state = self.shared.lock();
        state.trigger = None;
        if state.power == Power::On {
            state.power = Power::Stopped;
        }
    }

    /// Makes the next sync of a file or directory whose path contains
    /// `path_contains` fail with EIO; its data stays unsynced (a later sync
    /// may still make it durable, as after a real failed `fsync`).
    pub fn fail_next_sync(&self, path_contains: &str) {
        self.shared
            .lock()
            .failing_syncs
            .push(path_contains.to_owned());
    }

    /// Changes (writes, syncs, names) requests made since the last cut.
    pub fn changes(&self) -> u64 {
        self.shared.lock().changes
    }

    /// Changes not yet durable in files and directories whose path (from
    /// the mount's root, e.g. `/data/commit-marker`) contains `path_part`.
    pub fn unsynced(&self, path_part: &str) -> usize {
        self.shared.lock().model.unsynced(path_part)
    }

    /// Makes every waiting and later request fail without effect: called
    /// once the processes using the mount have been sent SIGKILL, so that
    /// their requests end and they die.
    pub fn power_off(&self) {
        let mut state = self.shared.lock();
        state.power = Power::Off;
        state.trigger = None;
        self.shared.changed.notify_all();
    }
}

impl std::ops::Deref for FaultFs {
    type Target = PowerSwitch;

    fn deref(&self) -> &PowerSwitch {
        &self.switch
    }
}

/// A mounted fault-injecting file system. Dropping it unmounts it.
pub struct FaultFs {
    shared: Arc<Shared>,
    switch: PowerSwitch,
    mountpoint: PathBuf,
    session: Option<fuser::BackgroundSession>,
    /// The kernel's number for the current mount's connection, by which
    /// `fusectl` can abort it.
    connection: Option<u64>,
}

/// Where the kernel lists FUSE connections (the `fusectl` file system).
const FUSECTL_DIR: &str = "/sys/fs/fuse/connections";

/// The kernel's `dev_t` of the file system holding `path`, as `fusectl`
/// names its connection.
fn connection_of(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).ok()?.dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
    Some((major << 20) | minor)
}

/// Aborts a FUSE connection: every request still waiting on it fails at
/// once. A process whose thread waits on a request its own (ended) server
/// thread read could otherwise never exit.
fn abort_connection(connection: u64) {
    let control = Path::new(FUSECTL_DIR);
    if !control.join(connection.to_string()).exists() {
        // Mounted once per boot; failing that, nothing is aborted.
        let _ = rustix::mount::mount(
            "fusectl",
            control,
            "fusectl",
            rustix::mount::MountFlags::empty(),
            None,
        );
    }
    let _ = std::fs::write(control.join(connection.to_string()).join("abort"), b"1");
}

fn mount_config() -> fuser::Config {
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("truc-faultfs".into()),
        fuser::MountOption::NoAtime,
    ];
    config
}

impl FaultFs {
    /// Mounts an empty file system on `mountpoint` (an empty directory).
    pub fn mount(mountpoint: &Path) -> Result<FaultFs, FaultFsError> {
        if let Err(error) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
        {
            return Err(FaultFsError::Unavailable {
                reason: format!("cannot open /dev/fuse: {error}"),
            });
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                model: model::Model::new(),
                power: Power::On,
                epoch: 0,
                trigger: None,
                hit: None,
                failing_syncs: Vec::new(),
                changes: 0,
            }),
            changed: Condvar::new(),
        });
        let mut faultfs = FaultFs {
            switch: PowerSwitch {
                shared: shared.clone(),
            },
            shared,
            mountpoint: mountpoint.to_owned(),
            session: None,
            connection: None,
        };
        faultfs
            .start_session()
            .map_err(|error| FaultFsError::Unavailable {
                reason: format!("cannot mount {}: {error}", mountpoint.display()),
            })?;
        Ok(faultfs)
    }

    fn start_session(&mut self) -> std::io::Result<()> {
        let epoch = self.shared.lock().epoch;
        let disk = fs::FaultyDisk {
            shared: self.shared.clone(),
            epoch,
        };
        self.session = Some(fuser::spawn_mount(disk, &self.mountpoint, &mount_config())?);
        self.connection = connection_of(&self.mountpoint);
        Ok(())
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// A handle on the power that other threads may hold while this one cuts.
    pub fn switch(&self) -> PowerSwitch {
        self.switch.clone()
    }

    /// Cuts the power: what was not synced is lost (or torn, by `mode`), the
    /// mount is replaced by a fresh one over what remains, and the kernel
    /// keeps nothing of the old one. Processes still using the old mount
    /// only get errors. Returns what was lost.
    pub fn cut(&mut self, mode: CutMode) -> Result<CutReport, FaultFsError> {
        self.power_off();
        self.detach()?;
        let report = {
            let mut state = self.shared.lock();
            let report = state.model.cut(mode);
            state.epoch += 1;
            state.power = Power::On;
            state.hit = None;
            state.changes = 0;
            report
        };
        self.start_session().map_err(|source| FaultFsError::Mount {
            path: self.mountpoint.display().to_string(),
            source,
        })?;
        Ok(report)
    }

    /// Detaches the mount at once, even with files still open on it; the
    /// old session ends by itself when the kernel lets go of it.
    fn detach(&mut self) -> Result<(), FaultFsError> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        // Aborted while still mounted: once unmounted, its number may at once
        // name another mount (another test's, in parallel).
        if let Some(connection) = self.connection.take() {
            abort_connection(connection);
        }
        let detached =
            rustix::mount::unmount(&self.mountpoint, rustix::mount::UnmountFlags::DETACH);
        // Its own unmount on drop would find the next mount at the same path.
        std::mem::forget(session);
        detached.map_err(|error| FaultFsError::Unmount {
            path: self.mountpoint.display().to_string(),
            source: error.into(),
        })
    }
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        self.power_off();
        let _ = self.detach();
    }
}

/// Set (to anything) where FUSE must be there: a test that cannot mount
/// then fails instead of saying it was skipped. `.ci/run` sets it.
pub const REQUIRE_ENV: &str = "TRUC_REQUIRE_FUSE";

/// Mounts for a test, or says loudly on stderr that `test` is skipped
/// because FUSE is unavailable (and panics if [`REQUIRE_ENV`] is set).
pub fn mount_or_skip(mountpoint: &Path, test: &str) -> Option<FaultFs> {
    match FaultFs::mount(mountpoint) {
        Ok(faultfs) => Some(faultfs),
        Err(FaultFsError::Unavailable { reason }) => {
            if std::env::var_os(REQUIRE_ENV).is_some() {
                panic!("{test}: {REQUIRE_ENV} is set but {reason}");
            }
            eprintln!("SKIPPED {test}: {reason} (set {REQUIRE_ENV} to make this a failure)");
            None
        }
        Err(error) => panic!("{test}: {error}"),
    }
}

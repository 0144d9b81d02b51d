//! Processes, users, ports and files: what starting and killing servers needs from the operating system.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{Pid, User};
use ring::rand::SecureRandom;

use crate::error::{io_error, ClusterError, Result};

/// The OS user PostgreSQL and Patroni run as when this process is root:
/// PostgreSQL refuses to run as root, and Debian's package creates this user.
pub(crate) const SERVICE_USER_NAME: &str = "postgres";

/// Where Debian installs each PostgreSQL major version's programs.
const POSTGRES_VERSIONS_DIR: &str = "/usr/lib/postgresql";

/// Lines of each log file shown when a server fails or a wait times out.
pub(crate) const LOG_TAIL_LINES: usize = 40;
/// Bytes read from the end of a log file to find those lines.
const LOG_TAIL_BYTES_MAX: u64 = 64 * 1024;

/// Random bytes in a generated password (hex-encoded, so twice as many
/// characters, and never in need of quoting in SQL, a URL or YAML).
const PASSWORD_BYTES: usize = 18;

/// How often a wait looks again.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How long a killed process may take to disappear from the process table.
const PROCESS_EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The environment's `PATH` for servers: Debian's programs, nothing of the caller's.
const SERVICE_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Who the servers run as: the `postgres` user when this process is root,
/// else this process's own user (a developer's account).
#[derive(Clone, Debug)]
pub(crate) struct ServiceUser {
    /// `None` when the servers run as this process's own user.
    switch_to: Option<(u32, u32)>,
}

impl ServiceUser {
    pub(crate) fn for_this_process() -> Result<Self> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(ServiceUser { switch_to: None });
        }
        let user = User::from_name(SERVICE_USER_NAME)
            .map_err(|errno| ClusterError::ServiceUser {
                user: SERVICE_USER_NAME,
                reason: format!("could not be looked up: {errno}"),
            })?
            .ok_or_else(|| ClusterError::ServiceUser {
                user: SERVICE_USER_NAME,
                reason: "does not exist; the postgresql package creates it (tests/cluster/install-packages.sh)".to_owned(),
            })?;
        Ok(ServiceUser {
            switch_to: Some((user.uid.as_raw(), user.gid.as_raw())),
        })
    }

    /// Hands `path` to the service user, so that servers may write there.
    pub(crate) fn own(&self, path: &Path) -> Result<()> {
        if let Some((uid, gid)) = self.switch_to {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(io_error("change the owner of", path))?;
        }
        Ok(())
    }

    /// Creates `path` (mode 0700, as PostgreSQL wants its data directory)
    /// owned by the service user.
    pub(crate) fn create_private_dir(&self, path: &Path) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(path)
            .map_err(io_error("create directory", path))?;
        self.own(path)
    }

    /// Writes a file only the service user may read.
    pub(crate) fn write_private_file(&self, path: &Path, contents: &str) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(io_error("create", path))?;
        file.write_all(contents.as_bytes())
            .map_err(io_error("write", path))?;
        self.own(path)
    }

    /// A command that runs as the service user in `working_dir`, with a
    /// clean environment whose `HOME` is `working_dir`.
    pub(crate) fn command(&self, program: &Path, working_dir: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .env_clear()
            .env("PATH", SERVICE_PATH)
            .env("HOME", working_dir)
            .env("LANG", "C.UTF-8")
            .current_dir(working_dir);
        if let Some((uid, gid)) = self.switch_to {
            // std drops root's supplementary groups when it sets the uid.
            command.uid(uid).gid(gid);
        }
        command
    }
}

/// Starts `command` in a process group of its own, its output appended to
/// `log_path`, so that it can be killed with everything it forks.
pub(crate) fn spawn_logged(mut command: Command, log_path: &Path, what: &str) -> Result<Child> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(io_error("open log", log_path))?;
    let log_for_stderr = log.try_clone().map_err(io_error("open log", log_path))?;
    command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_for_stderr)
        .process_group(0);
    command.spawn().map_err(|source| ClusterError::Spawn {
        what: what.to_owned(),
        source,
    })
}

/// Runs `command` to its end; a failure carries its output.
pub(crate) fn run_to_end(mut command: Command, what: &str) -> Result<()> {
    let output = command.output().map_err(|source| ClusterError::Spawn {
        what: what.to_owned(),
        source,
    })?;
    if output.status.success() {
        return Ok(());
    }
    let mut logs = String::from_utf8_lossy(&output.stdout).into_owned();
    logs.push_str(&String::from_utf8_lossy(&output.stderr));
    Err(ClusterError::ExitedEarly {
        what: what.to_owned(),
        status: output.status.to_string(),
        logs,
    })
}

/// SIGKILLs a child's whole process group and reaps the child.
pub(crate) fn kill_group_and_reap(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let pid = Pid::from_raw(child.id() as i32);
    // The group may already be gone; nothing is left to do then.
    let _ = killpg(pid, Signal::SIGKILL);
    let _ = child.wait();
}

/// The postmasters (PostgreSQL's main processes) started on `data_dir`,
/// found by their command line: `postmaster.pid` outlives a SIGKILL and
/// is written only once the server is up, so it can name a dead process or
/// none at all.
pub(crate) fn postmasters_of(data_dir: &Path) -> Vec<i32> {
    let Ok(processes) = procfs::process::all_processes() else {
        return Vec::new();
    };
    let data_dir_text = data_dir.to_string_lossy();
    processes
        .filter_map(|process| process.ok())
        .filter(|process| {
            process.cmdline().is_ok_and(|command_line| {
                command_line
                    .first()
                    .is_some_and(|program| program.ends_with("/postgres"))
                    && command_line
                        .iter()
                        .any(|argument| argument.contains(data_dir_text.as_ref()))
            })
        })
        .map(|process| process.pid)
        .filter(|&pid| !is_gone_or_zombie(pid))
        .collect()
}

/// The pids whose parent is `parent_pid`.
pub(crate) fn children_of(parent_pid: i32) -> Vec<i32> {
    let Ok(processes) = procfs::process::all_processes() else {
        return Vec::new();
    };
    processes
        .filter_map(|process| process.ok())
        .filter_map(|process| process.stat().ok())
        .filter(|stat| stat.ppid == parent_pid)
        .map(|stat| stat.pid)
        .collect()
}

/// True once `pid` has left the process table or only its exit status is left.
pub(crate) fn is_gone_or_zombie(pid: i32) -> bool {
    match procfs::process::Process::new(pid).and_then(|process| process.stat()) {
        Ok(stat) => stat.state == 'Z' || stat.state == 'X',
        Err(_) => true,
    }
}

/// SIGKILLs a process and everything it forked, the way a machine that
/// loses power would stop them, and returns every pid killed once all are
/// gone. Process groups are not enough: PostgreSQL puts each backend in a
/// group of its own, and Patroni starts the postmaster in a session of its
/// own. So each process is stopped (SIGSTOP) before its children are
/// listed, which keeps it from forking one more in between, and only then
/// are they all killed.
pub(crate) fn kill_process_tree(root_pid: i32, what: &str) -> Result<Vec<i32>> {
    match kill(Pid::from_raw(root_pid), Signal::SIGSTOP) {
        Ok(()) => {}
        Err(nix::errno::Errno::ESRCH) => return Ok(Vec::new()),
        Err(source) => {
            return Err(ClusterError::Signal {
                signal: "SIGSTOP",
                what: what.to_owned(),
                pid: root_pid,
                source,
            })
        }
    }
    let mut stopped = vec![root_pid];
    let mut next = 0;
    while next < stopped.len() {
        for child in children_of(stopped[next]) {
            if !stopped.contains(&child) && kill(Pid::from_raw(child), Signal::SIGSTOP).is_ok() {
                stopped.push(child);
            }
        }
        next += 1;
    }
    for &pid in &stopped {
        // A process that died meanwhile is as good as killed.
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    wait_until_gone(&stopped, what)?;
    Ok(stopped)
}

/// Waits until every pid is gone (or a zombie awaiting its parent).
pub(crate) fn wait_until_gone(pids: &[i32], what: &str) -> Result<()> {
    let started = Instant::now();
    while pids.iter().any(|&pid| !is_gone_or_zombie(pid)) {
        if started.elapsed() > PROCESS_EXIT_TIMEOUT {
            return Err(ClusterError::Timeout {
                what: format!("the killed processes of {what} ({pids:?}) to exit"),
                waited: started.elapsed(),
                logs: String::new(),
            });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    Ok(())
}

/// `count` distinct free TCP ports on 127.0.0.1. All are held at once while
/// they are chosen so that none repeats; a server started later binds its
/// own, so another process could in principle take one in between.
pub(crate) fn free_loopback_ports(count: usize) -> Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| {
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .map_err(io_error("bind a free port on", "127.0.0.1:0"))
        })
        .collect::<Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|listener| {
            listener
                .local_addr()
                .map(|address| address.port())
                .map_err(io_error("read the port of", "127.0.0.1:0"))
        })
        .collect()
}

/// A random password in hex.
pub(crate) fn random_password() -> Result<String> {
    let mut bytes = [0u8; PASSWORD_BYTES];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ClusterError::Random)?;
    Ok(hex::encode(bytes))
}

/// The newest PostgreSQL major version's `bin` directory under
/// `/usr/lib/postgresql`, the one that holds `postgres` and `initdb`.
pub fn postgres_bin_dir() -> Result<PathBuf> {
    let missing = || ClusterError::MissingProgram {
        program: "postgres",
        looked_in: format!("{POSTGRES_VERSIONS_DIR}/*/bin"),
    };
    let entries = fs::read_dir(POSTGRES_VERSIONS_DIR).map_err(|_| missing())?;
    entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin_dir = entry.path().join("bin");
            (bin_dir.join("postgres").is_file() && bin_dir.join("initdb").is_file())
                .then_some((version, bin_dir))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin_dir)| bin_dir)
        .ok_or_else(missing)
}

/// A program on the service `PATH`.
pub(crate) fn find_program(program: &'static str) -> Result<PathBuf> {
    SERVICE_PATH
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.is_file())
        .ok_or(ClusterError::MissingProgram {
            program,
            looked_in: SERVICE_PATH.to_owned(),
        })
}

/// The last [`LOG_TAIL_LINES`] lines of each file, each under its name.
pub(crate) fn log_tails(paths: &[PathBuf]) -> String {
    let mut text = String::new();
    for path in paths {
        text.push_str(&format!("--- last lines of {} ---\n", path.display()));
        match tail_of_file(path) {
            Ok(tail) => text.push_str(&tail),
            Err(error) => text.push_str(&format!("(unreadable: {error})\n")),
        }
    }
    text
}

fn tail_of_file(path: &Path) -> std::io::Result<String> {
    let mut file = fs::File::open(path)?;
    let length = file.metadata()?.len();
    file.seek(SeekFrom::Start(length.saturating_sub(LOG_TAIL_BYTES_MAX)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(LOG_TAIL_LINES);
    let mut tail = lines[start..].join("\n");
    tail.push('\n');
    Ok(tail)
}

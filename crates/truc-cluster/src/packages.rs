//! Installs PostgreSQL, Patroni and etcd from Debian's packages by running the project's own script.

use std::io::Write;
use std::process::Command;
use std::sync::Mutex;

use crate::error::{io_error, ClusterError, Result};

/// `tests/cluster/install-packages.sh`, carried inside the binary so that the
/// `truc` executable and every test can install from any directory.
pub const INSTALL_SCRIPT: &str = include_str!("../../../tests/cluster/install-packages.sh");

/// Characters of the script's output kept in an error: its last lines say
/// why apt-get failed.
const INSTALL_OUTPUT_CHARS_MAX: usize = 4_000;

/// Serialises the installs of one process; the script itself holds a file
/// lock against other processes.
static INSTALL_LOCK: Mutex<()> = Mutex::new(());

/// Makes sure a PostgreSQL server, `patroni` and `etcd` are installed,
/// running the install script (which returns at once when they are). Needs
/// root or sudo, and Debian's package registry when something is missing;
/// without them it fails with the script's own reason, never silently.
pub fn ensure_packages() -> Result<()> {
    // A test that panicked while holding the lock poisons it; the install
    // state on disk is still whatever the script left, so carry on.
    let _guard = INSTALL_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut script = tempfile::Builder::new()
        .prefix("truc-install-packages-")
        .suffix(".sh")
        .tempfile()
        .map_err(io_error("create", std::env::temp_dir()))?;
    script
        .write_all(INSTALL_SCRIPT.as_bytes())
        .map_err(io_error("write", script.path()))?;
    let output = Command::new("bash")
        .arg(script.path())
        .output()
        .map_err(|source| ClusterError::Spawn {
            what: "bash tests/cluster/install-packages.sh".to_owned(),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    let tail_start = text
        .char_indices()
        .rev()
        .nth(INSTALL_OUTPUT_CHARS_MAX)
        .map_or(0, |(index, _)| index);
    Err(ClusterError::Packages {
        status: output.status.to_string(),
        output: text[tail_start..].trim().to_owned(),
    })
}

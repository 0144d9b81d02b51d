//! What the process tests share: running the `truc` binary as a user does
//! and reading the JSON report a command wrote.

// Each test file uses the part it needs.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

pub const TRUC: &str = env!("CARGO_BIN_EXE_truc");

/// A `truc` command that succeeded: what it printed and the report it wrote.
pub struct Reported {
    pub stdout: String,
    pub stderr: String,
    pub report: serde_json::Value,
}

/// Runs `command` (a `truc` command told to write its report to `json`),
/// fails the test with everything it printed unless it succeeded, and reads
/// the report.
pub fn reported(command: &mut Command, json: &Path) -> Reported {
    let output = command.output().expect("run truc");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{stdout}\n{stderr}"
    );
    let bytes = std::fs::read(json).unwrap_or_else(|error| panic!("{}: {error}", json.display()));
    let report = serde_json::from_slice(&bytes)
        .unwrap_or_else(|error| panic!("{}: {error}", json.display()));
    Reported {
        stdout,
        stderr,
        report,
    }
}

/// Runs `truc` with `args` and fails the test unless it succeeded.
pub fn truc(args: &[&str]) -> std::process::Output {
    let output = Command::new(TRUC).args(args).output().expect("run truc");
    assert!(
        output.status.success(),
        "truc {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

//! The directory of registered agencies: who exists on the axis, which of
//! them have a node of their own, which relay for their subtree (LGSP), and
//! so where a document to any code is delivered and which certificates may
//! act. The running hub reads it through [`LiveDirectory`], which a reload
//! of the file replaces without a restart ([`watch`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;
use truc_domain::AgencyCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionMode {
    /// The agency's own document system talks to the axis.
    #[default]
    Direct,
    /// Through a ministry- or province-level integration platform.
    Lgsp,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgencyEntry {
    pub code: AgencyCode,
    pub name: String,
    #[serde(default)]
    pub connection: ConnectionMode,
    /// This agency's node is the LGSP of its code's subtree: it receives the
    /// deliveries of the units below it that have no node of their own, and
    /// moves their statuses.
    #[serde(default)]
    pub relay: bool,
    /// False when the unit has no node of its own and is reached through the
    /// nearest registered ancestor that relays for it.
    #[serde(default = "own_node_default")]
    pub own_node: bool,
}

fn own_node_default() -> bool {
    true
}

impl AgencyEntry {
    /// A unit with its own node, relaying for no one.
    pub fn direct(code: AgencyCode, name: impl Into<String>) -> AgencyEntry {
        AgencyEntry {
            code,
            name: name.into(),
            connection: ConnectionMode::Direct,
            relay: false,
            own_node: true,
        }
    }

    /// What is wrong with the entry on its own, if anything.
    fn check(&self) -> Result<(), EntryProblem> {
        if !self.own_node && self.relay {
            return Err(EntryProblem::RelayWithoutNode { code: self.code });
        }
        if !self.own_node && self.connection == ConnectionMode::Direct {
            return Err(EntryProblem::NoNodeNotThroughLgsp { code: self.code });
        }
        Ok(())
    }
}

/// Why a directory file is not put in force; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is {bytes} bytes; at most {DIRECTORY_FILE_BYTES_MAX}", path.display())]
    TooLarge { path: PathBuf, bytes: u64 },
    /// Not TOML, or keys the directory does not know.
    #[error("{}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    /// Entries that contradict themselves or each other, all of them.
    #[error("{}: {}", path.display(), problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid {
        path: PathBuf,
        problems: Vec<EntryProblem>,
    },
}

/// What is wrong with one entry of a directory file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntryProblem {
    #[error("agency {code} is listed twice")]
    ListedTwice { code: AgencyCode },
    #[error(
        "agency {code}: a relay must have a node of its own (own_node = false with relay = true)"
    )]
    RelayWithoutNode { code: AgencyCode },
    #[error(
        "agency {code}: a unit without a node of its own reaches the axis through an LGSP (set connection = \"lgsp\")"
    )]
    NoNodeNotThroughLgsp { code: AgencyCode },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectoryFile {
    #[serde(default)]
    agency: Vec<AgencyEntry>,
}

/// Where a document addressed to one code goes, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// The unit's own node receives it.
    Own { unit: AgencyCode },
    /// The nearest registered ancestor that relays for the unit receives it
    /// and passes it down.
    Relay { unit: AgencyCode, relay: AgencyCode },
    /// Registered, but no node of its own and no relaying ancestor.
    NoRoute { unit: AgencyCode },
    /// Not in the directory at all.
    Unregistered { unit: AgencyCode },
}

impl Route {
    /// The agency whose node (and queue) receives the delivery.
    pub fn node(&self) -> Option<AgencyCode> {
        match self {
            Route::Own { unit } => Some(*unit),
            Route::Relay { relay, .. } => Some(*relay),
            Route::NoRoute { .. } | Route::Unregistered { .. } => None,
        }
    }

    /// Why a recipient with no route is refused, as its refusal reason.
    pub fn refusal(&self) -> Option<String> {
        match self {
            Route::Own { .. } | Route::Relay { .. } => None,
            Route::NoRoute { .. } => Some(
                "no route: registered without a node of its own, and no registered ancestor relays for it (LGSP)"
                    .into(),
            ),
            Route::Unregistered { .. } => {
                Some("not registered in the directory of the axis".into())
            }
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Own { unit } => write!(f, "{unit} → delivered to its own node"),
            Route::Relay { unit, relay } => write!(
                f,
                "{unit} → delivered to {relay} (LGSP relay for its subtree)"
            ),
            Route::NoRoute { unit } => write!(
                f,
                "{unit} → no route (registered without a node of its own; no registered ancestor relays for it)"
            ),
            Route::Unregistered { unit } => {
                write!(f, "{unit} → no route (not registered in the directory)")
            }
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct Directory {
    agencies: BTreeMap<AgencyCode, AgencyEntry>,
}

impl Directory {
    pub fn new(entries: impl IntoIterator<Item = AgencyEntry>) -> Self {
        Self {
            agencies: entries.into_iter().map(|e| (e.code, e)).collect(),
        }
    }

    pub fn load(path: &Path) -> Result<Self, DirectoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| DirectoryError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// The directory of a file's text; `path` only names it in problems.
    fn parse(text: &str, path: &Path) -> Result<Self, DirectoryError> {
        let file: DirectoryFile = toml::from_str(text).map_err(|source| DirectoryError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let mut directory = Directory::default();
        // Every problem of the file at once, so that one edit fixes them all.
        let mut problems = Vec::new();
        for entry in file.agency {
            if directory.agencies.contains_key(&entry.code) {
                problems.push(EntryProblem::ListedTwice { code: entry.code });
            }
            if let Err(problem) = entry.check() {
                problems.push(problem);
            }
            directory.agencies.insert(entry.code, entry);
        }
        if !problems.is_empty() {
            return Err(DirectoryError::Invalid {
                path: path.to_owned(),
                problems,
            });
        }
        Ok(directory)
    }

    pub fn get(&self, code: &AgencyCode) -> Option<&AgencyEntry> {
        self.agencies.get(code)
    }

    pub fn contains(&self, code: &AgencyCode) -> bool {
        self.agencies.contains_key(code)
    }

    pub fn entries(&self) -> impl Iterator<Item = &AgencyEntry> {
        self.agencies.values()
    }

    pub fn len(&self) -> usize {
        self.agencies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.agencies.is_empty()
    }

    /// Where a document to `unit` is delivered: its own node if it has one,
    /// else the nearest registered ancestor that relays for it.
    pub fn route(&self, unit: &AgencyCode) -> Route {
        let Some(entry) = self.agencies.get(unit) else {
            return Route::Unregistered { unit: *unit };
        };
        if entry.own_node {
            return Route::Own { unit: *unit };
        }
        match self.relay_for(unit) {
            Some(relay) => Route::Relay { unit: *unit, relay },
            None => Route::NoRoute { unit: *unit },
        }
    }

    /// The nearest registered strict ancestor of `unit` that relays for its subtree.
    pub fn relay_for(&self, unit: &AgencyCode) -> Option<AgencyCode> {
        let mut current = unit.parent();
        while let Some(code) = current {
            if self.agencies.get(&code).is_some_and(|entry| entry.relay) {
                return Some(code);
            }
            current = code.parent();
        }
        None
    }

    /// Whether `agency` may act for `unit`: it is a registered relay and
    /// `unit` is strictly below it.
    pub fn relays_for(&self, agency: &AgencyCode, unit: &AgencyCode) -> bool {
        agency != unit
            && agency.contains(unit)
            && self.agencies.get(agency).is_some_and(|entry| entry.relay)
    }

    pub fn is_relay(&self, agency: &AgencyCode) -> bool {
        self.agencies.get(agency).is_some_and(|entry| entry.relay)
    }

    /// Whether `agency` may act for `unit` (move its statuses): `unit` is
    /// registered without a node of its own and its deliveries go to
    /// `agency`'s node. Narrower than [`Directory::relays_for`], which says
    /// what a relay may read: a unit with a node of its own acts for itself,
    /// and a unit reached through a nearer relay is that relay's.
    pub fn acts_for(&self, agency: &AgencyCode, unit: &AgencyCode) -> bool {
        matches!(self.route(unit), Route::Relay { relay, .. } if relay == *agency)
    }

    /// Whether the agency of a client certificate may do `act`: a
    /// certificate of the axis CA is never enough, the code must be
    /// registered, and the acts of a node need a node of its own.
    pub fn admits(&self, code: &AgencyCode, act: Act) -> Result<(), NotAdmitted> {
        let Some(entry) = self.agencies.get(code) else {
            return Err(NotAdmitted::Unregistered { code: *code });
        };
        if act == Act::Node && !entry.own_node {
            return Err(NotAdmitted::NoNode {
                code: *code,
                relay: self.relay_for(code),
            });
        }
        Ok(())
    }
}

/// What an agency's certificate is used for, as far as the directory decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// Reading statuses, attachments, counts, lists and routes.
    Read,
    /// The acts of a node: sending, opening a delivery stream, moving statuses.
    Node,
}

/// Why the directory does not let a certificate's agency act.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotAdmitted {
    #[error(
        "{code} is not registered in the directory of the axis; a certificate of the axis CA alone admits no one"
    )]
    Unregistered { code: AgencyCode },
    #[error("{code} has no node of its own; {}", match relay {
        Some(relay) => format!("it is reached only through its relay {relay} (LGSP), whose node receives its documents and moves their statuses"),
        None => "no registered ancestor relays for it".to_owned(),
    })]
    NoNode {
        code: AgencyCode,
        relay: Option<AgencyCode>,
    },
}

/// The directory a running hub reads: each call sees one whole version,
/// and a reload swaps in the next.
#[derive(Debug)]
pub(crate) struct LiveDirectory(RwLock<Arc<Directory>>);

impl LiveDirectory {
    pub(crate) fn new(directory: Directory) -> Self {
        LiveDirectory(RwLock::new(Arc::new(directory)))
    }

    /// The directory as it is now; held for a whole decision, so that one
    /// call never mixes two versions.
    pub(crate) fn current(&self) -> Arc<Directory> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn replace(&self, directory: Directory) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(directory);
    }
}

/// Where the hub reads its directory again while it runs.
#[derive(Clone, Debug)]
pub struct DirectoryReload {
    pub path: PathBuf,
    /// How often the file is read and compared with the one in force.
    pub interval: Duration,
    /// Also read it at once on SIGHUP (`truc hub` sets it; a test hub, one
    /// of many in a process, does not).
    pub on_sighup: bool,
}

/// Most bytes of a directory file the hub reads: the whole axis (about
/// 1,300 units in 2019, each entry under 200 bytes) is a fraction of it.
const DIRECTORY_FILE_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Reads the file every `interval` (and on SIGHUP when asked) and, when its
/// bytes changed, loads it and puts it in force for every call from then
/// on; `changed` is told of each directory put in force. A file that does
/// not load leaves the one in force, and says why. The bytes are compared,
/// not the modification time, which a quick edit of the same length can
/// leave unchanged.
pub(crate) async fn watch(
    live: Arc<LiveDirectory>,
    reload: DirectoryReload,
    mut hangups: Hangups,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    changed: impl Fn(&Directory),
) {
    let read = |path: &Path| -> Result<String, DirectoryError> {
        let unreadable = |source| DirectoryError::Read {
            path: path.to_owned(),
            source,
        };
        let bytes = std::fs::metadata(path).map_err(unreadable)?.len();
        if bytes > DIRECTORY_FILE_BYTES_MAX {
            return Err(DirectoryError::TooLarge {
                path: path.to_owned(),
                bytes,
            });
        }
        std::fs::read_to_string(path).map_err(unreadable)
    };
    let mut seen = read(&reload.path).ok();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(reload.interval) => {}
            _ = next_hangup(&mut hangups) => {}
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        }
        let text = match read(&reload.path) {
            Ok(text) => text,
            Err(error) => {
                tracing::error!(target: "truc::security", %error, "directory not reloaded; the one in force stays");
                continue;
            }
        };
        if seen.as_deref() == Some(text.as_str()) {
            continue;
        }
        match Directory::parse(&text, &reload.path) {
            Ok(next) => {
                let before = live.current();
                let removed = before.entries().filter(|e| !next.contains(&e.code)).count();
                let added = next.entries().filter(|e| !before.contains(&e.code)).count();
                tracing::info!(
                    target: "truc::security",
                    path = %reload.path.display(),
                    agencies = next.len(),
                    added,
                    removed,
                    "directory reloaded; every call from now on is checked against it"
                );
                live.replace(next);
                changed(&live.current());
            }
            Err(error) => tracing::error!(
                target: "truc::security",
                %error,
                "directory not reloaded; the one in force stays"
            ),
        }
        seen = Some(text);
    }
}

/// SIGHUPs as they come, when asked for.
#[cfg(unix)]
pub(crate) type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
pub(crate) type Hangups = Option<()>;

/// Starts listening for SIGHUP, before the hub serves: a SIGHUP that came
/// before the listener would end the process (its default action).
#[cfg(unix)]
pub(crate) fn hangups(wanted: bool) -> Hangups {
    use tokio::signal::unix::{signal, SignalKind};
    if !wanted {
        return None;
    }
    signal(SignalKind::hangup())
        .inspect_err(|error| {
            tracing::warn!(%error, "cannot watch for SIGHUP; the directory is reloaded on its interval only")
        })
        .ok()
}

#[cfg(not(unix))]
pub(crate) fn hangups(_wanted: bool) -> Hangups {
    None
}

/// Resolves on the next SIGHUP, or never without a handler.
async fn next_hangup(hangups: &mut Hangups) {
    #[cfg(unix)]
    if let Some(signal) = hangups.as_mut() {
        if signal.recv().await.is_some() {
            return;
        }
    }
    #[cfg(not(unix))]
    let _ = hangups;
    std::future::pending::<()>().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(code: &str, connection: ConnectionMode, relay: bool) -> AgencyEntry {
        AgencyEntry {
            code: code.parse().unwrap(),
            name: code.into(),
            connection,
            relay,
            own_node: relay || connection == ConnectionMode::Direct,
        }
    }

    fn code(text: &str) -> AgencyCode {
        text.parse().unwrap()
    }

    /// A province relaying for its districts (05 and 07.05 through it, 06
    /// with its own node, 06.H42 with neither), and `more` entries.
    fn province_directory(more: impl IntoIterator<Item = AgencyEntry>) -> Directory {
        use ConnectionMode::{Direct, Lgsp};
        Directory::new(
            [
                entry("000.00.00.H41", Lgsp, true),
                entry("000.00.05.H41", Lgsp, false),
                entry("000.07.05.H41", Lgsp, false),
                entry("000.00.06.H41", Direct, false),
                entry("000.00.06.H42", Lgsp, false),
            ]
            .into_iter()
            .chain(more),
        )
    }

    #[test]
    fn routes_to_own_node_else_nearest_relaying_ancestor() {
        use ConnectionMode::{Direct, Lgsp};
        let directory = province_directory([
            entry("000.00.06.H43", Lgsp, false),
            entry("000.00.00.H43", Direct, false),
        ]);
        let h41 = code("000.00.00.H41");
        assert_eq!(directory.route(&h41), Route::Own { unit: h41 });
        for unit in ["000.00.05.H41", "000.07.05.H41"] {
            assert_eq!(
                directory.route(&code(unit)),
                Route::Relay {
                    unit: code(unit),
                    relay: h41
                }
            );
        }
        let district = code("000.00.06.H41");
        assert_eq!(directory.route(&district), Route::Own { unit: district });
        // No relaying ancestor: registered, but unreachable.
        assert!(matches!(
            directory.route(&code("000.00.06.H42")),
            Route::NoRoute { .. }
        ));
        // The ancestor is registered but does not relay.
        assert!(matches!(
            directory.route(&code("000.00.06.H43")),
            Route::NoRoute { .. }
        ));
        assert!(matches!(
            directory.route(&code("000.00.09.H41")),
            Route::Unregistered { .. }
        ));
        assert_eq!(
            directory.route(&code("000.00.05.H41")).to_string(),
            "000.00.05.H41 → delivered to 000.00.00.H41 (LGSP relay for its subtree)"
        );
        assert!(directory.relays_for(&h41, &code("000.07.05.H41")));
        assert!(!directory.relays_for(&h41, &h41));
        assert!(!directory.relays_for(&h41, &code("000.00.05.H42")));
        assert!(!directory.relays_for(&code("000.00.00.H43"), &code("000.00.06.H43")));
    }

    #[test]
    fn only_registered_agencies_act_and_units_without_a_node_only_through_their_relay() {
        let directory = province_directory([]);
        let (province, district) = (code("000.00.00.H41"), code("000.00.05.H41"));
        for act in [Act::Read, Act::Node] {
            assert_eq!(directory.admits(&province, act), Ok(()));
            let stranger = code("000.00.00.H01");
            let refusal = directory.admits(&stranger, act).unwrap_err();
            assert_eq!(refusal, NotAdmitted::Unregistered { code: stranger });
            assert!(refusal
                .to_string()
                .starts_with("000.00.00.H01 is not registered"));
        }
        assert_eq!(directory.admits(&district, Act::Read), Ok(()));
        let refusal = directory.admits(&district, Act::Node).unwrap_err();
        assert!(
            refusal
                .to_string()
                .contains("only through its relay 000.00.00.H41"),
            "{refusal}"
        );
        assert!(directory
            .admits(&code("000.00.06.H42"), Act::Node)
            .unwrap_err()
            .to_string()
            .contains("no registered ancestor relays for it"));

        // The relay acts for the units it receives for, and no others.
        assert!(directory.acts_for(&province, &district));
        assert!(directory.acts_for(&province, &code("000.07.05.H41")));
        assert!(
            !directory.acts_for(&province, &code("000.00.06.H41")),
            "own node"
        );
        assert!(
            !directory.acts_for(&province, &code("000.00.09.H41")),
            "unregistered"
        );
        assert!(!directory.acts_for(&province, &province));
        assert!(!directory.acts_for(&code("000.00.06.H41"), &district));
    }

    #[test]
    fn a_file_with_contradictions_is_refused_whole() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("agencies.toml");
        std::fs::write(
            &path,
            r#"
[[agency]]
code = "000.00.00.H41"
name = "A"
relay = true
own_node = false

[[agency]]
code = "000.00.05.H41"
name = "B"
own_node = false
"#,
        )
        .unwrap();
        let error = Directory::load(&path).unwrap_err();
        let DirectoryError::Invalid { problems, .. } = &error else {
            panic!("not refused for its entries: {error}");
        };
        assert_eq!(
            problems,
            &[
                EntryProblem::RelayWithoutNode {
                    code: code("000.00.00.H41")
                },
                EntryProblem::NoNodeNotThroughLgsp {
                    code: code("000.00.05.H41")
                },
            ]
        );
        let said = error.to_string();
        assert!(said.starts_with(&path.display().to_string()), "{said}");
        assert!(
            said.contains("000.00.00.H41: a relay must have a node"),
            "{said}"
        );
        assert!(
            said.contains("000.00.05.H41: a unit without a node"),
            "{said}"
        );
    }

    #[test]
    fn a_missing_file_keeps_the_system_error() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("absent.toml");
        let error = Directory::load(&path).unwrap_err();
        match &error {
            DirectoryError::Read {
                path: named,
                source,
            } => {
                assert_eq!(named, &path);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("not a read error: {other}"),
        }
        assert!(error
            .to_string()
            .starts_with(&format!("cannot read {}: ", path.display())));
    }
}

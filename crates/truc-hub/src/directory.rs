//! The directory of registered agencies: who exists on the axis, which of
//! them have a node of their own, which relay for their subtree (LGSP), and
//! so where a document to any code is delivered.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

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
    fn check(&self) -> Result<(), String> {
        if !self.own_node && self.relay {
            return Err(format!(
                "agency {}: a relay must have a node of its own (own_node = false with relay = true)",
                self.code
            ));
        }
        if !self.own_node && self.connection == ConnectionMode::Direct {
            return Err(format!(
                "agency {}: a unit without a node of its own reaches the axis through an LGSP (set connection = \"lgsp\")",
                self.code
            ));
        }
        Ok(())
    }
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

    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        let file: DirectoryFile =
            toml::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))?;
        let mut directory = Directory::default();
        // Every problem of the file at once, so that one edit fixes them all.
        let mut problems = Vec::new();
        for entry in file.agency {
            if directory.agencies.contains_key(&entry.code) {
                problems.push(format!("agency {} is listed twice", entry.code));
            }
            if let Err(problem) = entry.check() {
                problems.push(problem);
            }
            directory.agencies.insert(entry.code, entry);
        }
        if !problems.is_empty() {
            return Err(format!("{}: {}", path.display(), problems.join("; ")));
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

    #[test]
    fn routes_to_own_node_else_nearest_relaying_ancestor() {
        use ConnectionMode::{Direct, Lgsp};
        let directory = Directory::new([
            entry("000.00.00.H41", Lgsp, true),
            entry("000.00.05.H41", Lgsp, false),
            entry("000.07.05.H41", Lgsp, false),
            entry("000.00.06.H41", Direct, false),
            entry("000.00.06.H42", Lgsp, false),
            entry("000.00.06.H43", Lgsp, false),
            entry("000.00.00.H43", Direct, false),
        ]);
        let code = |text: &str| text.parse::<AgencyCode>().unwrap();
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
        assert!(
            error.contains("000.00.00.H41: a relay must have a node"),
            "{error}"
        );
        assert!(
            error.contains("000.00.05.H41: a unit without a node"),
            "{error}"
        );
    }
}

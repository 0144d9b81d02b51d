//! The directory of registered agencies: who exists on the axis.

use std::collections::BTreeMap;
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectoryFile {
    #[serde(default)]
    agency: Vec<AgencyEntry>,
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
        for entry in file.agency {
            if directory.agencies.contains_key(&entry.code) {
                return Err(format!(
                    "{}: agency {} is listed twice",
                    path.display(),
                    entry.code
                ));
            }
            directory.agencies.insert(entry.code, entry);
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
}

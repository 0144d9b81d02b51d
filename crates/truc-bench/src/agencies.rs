//! The agencies a bench run uses. Each scenario has its own set, so that what
//! one scenario leaves queued (intake runs with no node connected) never
//! reaches the nodes of another: `000.00.00.<letter><nn>`, one letter per
//! scenario.

use serde::Serialize;

/// Which part of the bench an agency set serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScenarioKind {
    Intake,
    Fanout,
    Moves,
    Attachments,
    /// Many nodes (`many_nodes`): thousands of agencies of their own, so not
    /// in [`ScenarioKind::ALL`] nor the printed directory.
    Nodes,
}

impl ScenarioKind {
    pub const ALL: [ScenarioKind; 4] = [
        ScenarioKind::Intake,
        ScenarioKind::Fanout,
        ScenarioKind::Moves,
        ScenarioKind::Attachments,
    ];

    /// The level-1 letter of this scenario's agency codes.
    pub fn letter(self) -> char {
        match self {
            ScenarioKind::Intake => 'I',
            ScenarioKind::Fanout => 'F',
            ScenarioKind::Moves => 'M',
            ScenarioKind::Attachments => 'A',
            ScenarioKind::Nodes => 'N',
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ScenarioKind::Intake => "intake",
            ScenarioKind::Fanout => "fanout",
            ScenarioKind::Moves => "moves",
            ScenarioKind::Attachments => "attachments",
            ScenarioKind::Nodes => "nodes",
        }
    }
}

/// Most agencies in one scenario's set (two-digit body numbers).
pub const AGENCIES_MAX: usize = 99;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agency {
    pub code: String,
    pub name: String,
}

/// `count` agencies for `kind`: `000.00.00.F01`, `000.00.00.F02`, …
pub fn bench_agencies(kind: ScenarioKind, count: usize) -> Vec<Agency> {
    assert!(
        (1..=AGENCIES_MAX).contains(&count),
        "1 to {AGENCIES_MAX} agencies"
    );
    (1..=count)
        .map(|number| Agency {
            code: format!("000.00.00.{}{number:02}", kind.letter()),
            name: format!("Bench {} {number:02}", kind.name()),
        })
        .collect()
}

/// Every bench agency of every scenario, as the `[[agency]]` directory file a
/// hub loads and `truc certs init --directory` issues certificates for.
pub fn directory_toml(count: usize) -> String {
    let mut text = format!(
        "# The agencies of `truc bench` ({count} per scenario). Load this file as the hub's\n\
         # directory and issue certificates for it with\n\
         # `truc certs init --dir DIR --directory THIS_FILE`.\n"
    );
    for kind in ScenarioKind::ALL {
        for agency in bench_agencies(kind, count) {
            text.push_str(&format!(
                "\n[[agency]]\ncode = \"{}\"\nname = \"{}\"\n",
                agency.code, agency.name
            ));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_well_formed_distinct_across_scenarios_and_listed_once() {
        let mut codes = std::collections::BTreeSet::new();
        for kind in ScenarioKind::ALL {
            for agency in bench_agencies(kind, 12) {
                agency
                    .code
                    .parse::<truc_domain::AgencyCode>()
                    .unwrap_or_else(|e| panic!("{}: {e}", agency.code));
                assert!(codes.insert(agency.code));
            }
        }
        assert_eq!(codes.len(), 48);
        let text = directory_toml(12);
        assert_eq!(text.matches("[[agency]]").count(), 48);
        assert!(text.contains("code = \"000.00.00.A12\""));
        assert!(text.contains("code = \"000.00.00.M12\""));
    }
}

//! Reading a hub's figures: through its operator API (a running hub), or from a stopped hub's
//! data directory. Wire and storage rows become [`HubFigures`] here and nowhere else.

use std::collections::BTreeMap;
use std::path::Path;

use truc_domain::views::Report;
use truc_domain::{AgencyCode, DocumentDate};
use truc_node::AxisClient;
use truc_store::{Store, StoreOptions};

use crate::report::{AgencyFigures, HubFigures};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("the hub refused the report: {0}")]
    Hub(#[from] truc_node::ClientError),
    #[error(
        "the data directory {path} is locked: the hub is still running{}. Stop it, or ask the \
         running hub with --hub ADDRESS --certs DIR",
        pid.map(|pid| format!(" (PID {pid})")).unwrap_or_default()
    )]
    Locked { path: String, pid: Option<u32> },
    #[error("cannot read the data directory {path}: {reason}")]
    Store { path: String, reason: String },
    #[error("the hub reported an agency code that does not parse: {code:?}: {reason}")]
    Code { code: String, reason: String },
}

/// The file a replay keeps beside the hub's data in a data directory of
/// its own (`truc replay --data-dir`): which dataset, at which scale.
pub const REPLAY_RECORD_FILE: &str = "replay.json";

/// What was replayed into a data directory, so that `truc report
/// --data-dir` compares it with the same targets without being told.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRecord {
    /// 2019, 2021 or 2022.
    pub dataset: String,
    /// The scale N/D, or none for the published figures themselves.
    pub scale: Option<(u64, u64)>,
    /// The plan's seed (it moves documents, never counts).
    pub seed: u64,
}

impl ReplayRecord {
    /// Writes the record into `dir`, whole (a temporary name, then a rename).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let temporary = dir.join(format!(".{REPLAY_RECORD_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&temporary, text + "\n")?;
        std::fs::rename(&temporary, dir.join(REPLAY_RECORD_FILE))
    }

    /// The record of `dir`, if a replay left one.
    pub fn read(dir: &Path) -> Result<Option<ReplayRecord>, SourceError> {
        let path = dir.join(REPLAY_RECORD_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(SourceError::Store {
                    path: path.display().to_string(),
                    reason: error.to_string(),
                })
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|error| SourceError::Store {
                path: path.display().to_string(),
                reason: format!("not a replay record: {error}"),
            })
    }
}

/// `yyyy-mm-dd`, or empty for an open end (the API's convention).
fn iso(date: Option<DocumentDate>) -> String {
    date.map(|date| date.iso()).unwrap_or_default()
}

fn parse_code(code: &str) -> Result<AgencyCode, SourceError> {
    code.parse()
        .map_err(|error: truc_domain::AgencyCodeError| SourceError::Code {
            code: code.to_owned(),
            reason: error.to_string(),
        })
}

/// Asks a running hub, as an operator: the per-agency report recomputed from its records
/// (with `focus` as the focus recipient) and its live counters.
pub async fn figures_from_hub(
    operator: &AxisClient,
    period: (Option<DocumentDate>, Option<DocumentDate>),
    focus: &AgencyCode,
) -> Result<HubFigures, SourceError> {
    let (from, to) = (iso(period.0), iso(period.1));
    let report = operator.report(&from, &to, &focus.to_string()).await?;
    let counts = operator.counts(&from, &to).await?;
    let mut figures = from_report_rows(report)?;
    figures.counter_totals = Some((counts.total_sent, counts.total_received));
    Ok(figures)
}

fn from_report_rows(report: Report) -> Result<HubFigures, SourceError> {
    let mut agencies = BTreeMap::new();
    for row in report.rows {
        agencies.insert(
            parse_code(&row.organ_id)?,
            AgencyFigures {
                sent: row.sent,
                received: row.received,
                statuses_reported: row.statuses_reported.into_iter().collect(),
                sent_to_focus: row.sent_to_focus,
                sent_to_focus_signed: row.sent_to_focus_signed,
                overdue: row.overdue,
            },
        );
    }
    Ok(HubFigures {
        agencies,
        counter_totals: None,
    })
}

/// Reads a stopped hub's data directory. sled locks the directory, so a running hub makes this
/// fail with [`SourceError::Locked`].
pub fn figures_from_data_dir(
    path: &Path,
    period: (Option<DocumentDate>, Option<DocumentDate>),
    focus: &AgencyCode,
) -> Result<HubFigures, SourceError> {
    let display = path.display().to_string();
    if !path.join("conf").exists() && !path.join("db").exists() {
        return Err(SourceError::Store {
            path: display,
            reason: "no hub data there (no sled database)".into(),
        });
    }
    let store = Store::open(path, &StoreOptions::default()).map_err(|error| match error {
        truc_store::StoreError::Locked { pid, .. } => SourceError::Locked {
            path: display.clone(),
            pid,
        },
        error => SourceError::Store {
            path: display.clone(),
            reason: error.to_string(),
        },
    })?;
    let from = period.0.map(|date| date.ordinal_key()).unwrap_or(0);
    let to = period.1.map(|date| date.ordinal_key()).unwrap_or(u32::MAX);
    let focus = focus.to_string();
    let rows = store
        .report(from, to, Some(&focus))
        .map_err(|error| SourceError::Store {
            path: display.clone(),
            reason: error.to_string(),
        })?;
    let counters = store
        .counts(from, to)
        .map_err(|error| SourceError::Store {
            path: display.clone(),
            reason: error.to_string(),
        })?
        .values()
        .fold((0, 0), |(sent, received), (s, r)| (sent + s, received + r));
    let mut agencies = BTreeMap::new();
    for (code, row) in rows {
        agencies.insert(
            parse_code(&code)?,
            AgencyFigures {
                sent: row.sent,
                received: row.received,
                statuses_reported: row.status_codes().into_iter().collect(),
                sent_to_focus: row.sent_to_focus,
                sent_to_focus_signed: row.sent_to_focus_signed,
                overdue: row.overdue,
            },
        );
    }
    Ok(HubFigures {
        agencies,
        counter_totals: Some(counters),
    })
}

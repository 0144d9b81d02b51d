//! `truc report`: the report of a running hub (through its operator API) or of a stopped hub's
//! data directory (read offline), optionally compared with a published dataset.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use truc_domain::{AgencyCode, DocumentDate};
use truc_pki::PkiPaths;
use truc_replay::driver::{self, Target};
use truc_replay::published::{parse_scale, Dataset, Expected, GOVERNMENT_OFFICE};
use truc_replay::report::{FigureSource, Report};
use truc_replay::source::{
    figures_from_data_dir, figures_from_hub, ReplayRecord, REPLAY_RECORD_FILE,
};

use crate::replay_cmd::{resolve_all, write_outputs};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  truc report --hub 127.0.0.1:7443 --certs certs/dev --period 2019-03-12..2019-09-30 --dataset 2019
  truc report --data-dir data/hub --dataset 2021 --json report.json   (a stopped hub, read offline)
  truc report --data-dir data/replay-2021   (kept by truc replay --data-dir: its dataset and scale are read from replay.json)

Exit code 1 when a dataset is given and a figure differs.")]
pub struct ReportArgs {
    /// Document dates FROM..TO, inclusive (yyyy-mm-dd; either end may be left open). Defaults
    /// to the dataset's period, or everything.
    #[arg(long, value_name = "FROM..TO", value_parser = parse_period)]
    pub period: Option<(Option<DocumentDate>, Option<DocumentDate>)>,
    /// A running hub to ask (needs --certs); several hubs of one store: repeat
    /// the flag or give a comma list, tried in order.
    #[arg(
        long,
        value_name = "ADDR",
        value_delimiter = ',',
        requires = "certs",
        conflicts_with = "data_dir"
    )]
    pub hub: Vec<String>,
    /// Certificate folder holding the operator's credentials.
    #[arg(long, value_name = "DIR", requires = "hub")]
    pub certs: Option<PathBuf>,
    /// Operator whose certificate reads the report.
    #[arg(long, default_value = driver::DEFAULT_OPERATOR)]
    pub operator: String,
    /// A stopped hub's data directory, read offline.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Compare with this dataset's published figures: 2019, 2021 or 2022 (default for a data
    /// directory kept by `truc replay --data-dir`: the dataset it replayed).
    #[arg(long)]
    pub dataset: Option<Dataset>,
    /// Compare with the dataset scaled by N/D, as `truc replay --scale N/D` replays it (default
    /// for a data directory kept by `truc replay --data-dir`: its scale).
    #[arg(long, value_name = "N/D", value_parser = parse_scale)]
    pub scale: Option<(u64, u64)>,
    /// The recipient of the "sent to" table (seed 002, Phụ lục V: the Government Office).
    #[arg(long, default_value = GOVERNMENT_OFFICE)]
    pub focus: String,
    /// Write the report as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the per-agency rows as CSV.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,
}

fn parse_period(text: &str) -> Result<(Option<DocumentDate>, Option<DocumentDate>), String> {
    let (from, to) = text
        .split_once("..")
        .ok_or_else(|| format!("period {text:?} is not FROM..TO (e.g. 2019-03-12..2019-09-30)"))?;
    let date = |part: &str| {
        if part.trim().is_empty() {
            Ok(None)
        } else {
            DocumentDate::parse_iso(part.trim())
                .map(Some)
                .map_err(|error| format!("period {text:?}: {error}"))
        }
    };
    let (from, to) = (date(from)?, date(to)?);
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            return Err(format!("period {text:?} ends before it starts"));
        }
    }
    Ok((from, to))
}

/// What a report is compared with, and the replay record it came from.
struct Comparison {
    dataset: Option<Dataset>,
    scale: Option<(u64, u64)>,
    record: Option<ReplayRecord>,
}

/// The dataset and scale to compare with: as given, or as the replay that
/// filled `--data-dir` recorded; a flag that contradicts the record is a
/// usage error (its comparison would mark every row ✗).
fn comparison(args: &ReportArgs) -> anyhow::Result<Comparison> {
    let record = match &args.data_dir {
        Some(dir) => ReplayRecord::read(dir)?,
        None => None,
    };
    let Some(record) = record else {
        if args.scale.is_some() && args.dataset.is_none() {
            return Err(crate::usage(
                "--scale: say which --dataset it scales (2019, 2021 or 2022)",
            ));
        }
        return Ok(Comparison {
            dataset: args.dataset,
            scale: args.scale,
            record: None,
        });
    };
    let recorded: Dataset = record
        .dataset
        .parse()
        .map_err(|error: String| anyhow::anyhow!("{REPLAY_RECORD_FILE}: {error}"))?;
    let scale_text = |scale: Option<(u64, u64)>| {
        scale.map_or_else(
            || "full scale".to_owned(),
            |(n, d)| format!("--scale {n}/{d}"),
        )
    };
    if let Some(dataset) = args.dataset.filter(|dataset| *dataset != recorded) {
        return Err(crate::usage(format!(
            "--dataset: {} holds a {recorded} replay ({REPLAY_RECORD_FILE}), not {dataset}; leave \
             --dataset out to compare with what was replayed",
            args.data_dir.as_deref().unwrap_or(Path::new(".")).display()
        )));
    }
    let normal = |scale: Option<(u64, u64)>| scale.filter(|(n, d)| n != d);
    if args.scale.is_some() && normal(args.scale) != normal(record.scale) {
        return Err(crate::usage(format!(
            "--scale: {} holds a replay at {} ({REPLAY_RECORD_FILE}); leave --scale out to compare \
             with what was replayed",
            args.data_dir.as_deref().unwrap_or(Path::new(".")).display(),
            scale_text(record.scale)
        )));
    }
    Ok(Comparison {
        dataset: Some(recorded),
        scale: record.scale,
        record: Some(record),
    })
}

pub async fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let Comparison {
        dataset,
        scale,
        record,
    } = comparison(&args)?;
    if let Some(record) = &record {
        eprintln!(
            "comparing with the {} replay{} this data directory holds ({REPLAY_RECORD_FILE})",
            record.dataset,
            record
                .scale
                .map(|(n, d)| format!(" at {n}/{d}"))
                .unwrap_or_default()
        );
    }
    let expected = match dataset {
        Some(dataset) => Some(match scale.filter(|(n, d)| n != d) {
            // Scaled targets come from the plan; its seed moves documents, never counts.
            Some(scale) => Expected::for_plan(&dataset.plan(1, Some(scale))?, Some(scale))?,
            None => Expected::published(dataset, None)?,
        }),
        None => None,
    };
    let dataset_period = match &expected {
        Some(expected) => (Some(expected.period.0), Some(expected.period.1)),
        None => (None, None),
    };
    let period = args.period.unwrap_or(dataset_period);
    let focus: AgencyCode = args
        .focus
        .parse()
        .with_context(|| format!("--focus {}", args.focus))?;
    let (figures, source) = match (args.hub.is_empty(), &args.certs, &args.data_dir) {
        (false, Some(certs), _) => {
            let target = Target {
                hubs: resolve_all(&args.hub)?,
                pki: PkiPaths::new(certs),
                operator: args.operator.clone(),
                embedded: false,
            };
            let operator = target.operator_client().await?;
            let figures = figures_from_hub(&operator, period, &focus).await?;
            let source = FigureSource::Hub {
                address: target.hubs.to_string(),
                embedded: false,
            };
            (figures, source)
        }
        (true, _, Some(data_dir)) => {
            eprintln!(
                "reading {} offline: this is a stopped hub's data, not a live view",
                data_dir.display()
            );
            let figures = figures_from_data_dir(data_dir, period, &focus)?;
            let source = FigureSource::DataDirectory {
                path: data_dir.display().to_string(),
            };
            (figures, source)
        }
        _ => anyhow::bail!(
            "say where the figures are: --hub ADDR --certs DIR for a running hub, or --data-dir \
             DIR for a stopped one"
        ),
    };
    let report = Report::build(&figures, expected.as_ref(), period, source);
    print!("{}", report.render_text());
    write_outputs(&report, args.json.as_ref(), args.csv.as_ref())?;
    if report.matches_published() == Some(false) && scale.is_none() && record.is_none() {
        eprintln!(
            "note: if these figures come from a scaled replay (truc replay --scale N/D), compare \
             with the same --scale N/D"
        );
    }
    Ok(match report.matches_published() {
        Some(false) => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_with_open_ends() {
        let (from, to) = parse_period("2019-03-12..2019-09-30").unwrap();
        assert_eq!(from.unwrap().iso(), "2019-03-12");
        assert_eq!(to.unwrap().iso(), "2019-09-30");
        assert_eq!(parse_period("..").unwrap(), (None, None));
        assert!(parse_period("2019-09-30..2019-03-12").is_err());
        assert!(parse_period("2019").is_err());
    }
}

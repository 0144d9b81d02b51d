//! The figures truc must reproduce, extracted from the five source reports into `seeds/*.csv`.
//!
//! The CSV files are embedded at compile time and parsed into typed rows; [`extract`] holds
//! the parsers that derive the same rows from the report text, so the files can be checked
//! against the reports (see `tests/seeds.rs`) and regenerated (`examples/regenerate.rs`).
//! Every row keeps its provenance: source file, table, row (STT, or the line for prose), the
//! line in the file, and the raw text wherever a cell had to be interpreted.

pub mod extract;
pub mod names;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Seed 001: the Government Office's 2022 report, with Phụ lục 6 (per-agency volumes).
pub const SEED_001_FILE: &str = "001_4e95cd827a39929c.txt";
/// Seed 002: the 2019 one-year review of Decision 28/2018/QĐ-TTg.
pub const SEED_002_FILE: &str = "002_5b880aa72a9f48cd.txt";

/// The embedded CSV files, by file name, in the order the README describes them.
pub const CSV_FILES: [(&str, &str); 7] = [
    ("agencies.csv", include_str!("../../../seeds/agencies.csv")),
    (
        "2019_levels.csv",
        include_str!("../../../seeds/2019_levels.csv"),
    ),
    (
        "2019_to_government_office.csv",
        include_str!("../../../seeds/2019_to_government_office.csv"),
    ),
    (
        "2019_status_feedback.csv",
        include_str!("../../../seeds/2019_status_feedback.csv"),
    ),
    (
        "2019_connections.csv",
        include_str!("../../../seeds/2019_connections.csv"),
    ),
    (
        "2021_2022_agencies.csv",
        include_str!("../../../seeds/2021_2022_agencies.csv"),
    ),
    (
        "2021_2022_totals.csv",
        include_str!("../../../seeds/2021_2022_totals.csv"),
    ),
];

/// Everything that can go wrong reading the embedded files or the report text.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("{file}: {source}")]
    Csv {
        file: String,
        #[source]
        source: csv::Error,
    },
    #[error("{file}: {detail}")]
    CsvWrite { file: String, detail: String },
    #[error("no embedded CSV named {0}")]
    MissingFile(String),
    #[error("{source_file}: section not found: {section}")]
    SectionNotFound {
        source_file: String,
        section: String,
    },
    #[error("{source_file}:{line}: {detail}")]
    Malformed {
        source_file: String,
        line: u32,
        detail: String,
    },
    #[error(
        "{source_file}:{line}: no single directory entry for {name:?} ({candidates} candidates)"
    )]
    UnknownAgency {
        name: String,
        source_file: String,
        line: u32,
        candidates: usize,
    },
    #[error("{source_file}:{line}: no code assigned for {name:?}")]
    NoAssignedCode {
        name: String,
        source_file: String,
        line: u32,
    },
}

/// Central body or province: the two kinds of level-1 member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgencyKind {
    Central,
    Province,
}

/// How a body reached the axis in 2019 (seed 002, Phụ lục I and II).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionMode {
    /// Its own document system talks to the axis (Phụ lục I).
    Direct,
    /// Through a ministry- or province-level integration platform (Phụ lục II).
    Lgsp,
}

/// One body of the directory (`agencies.csv`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgencyRow {
    /// QCVN 102:2016 code, `AAA.BB.CC.Xnn`.
    pub code: String,
    pub name: String,
    pub level: u8,
    pub kind: AgencyKind,
    /// Blank when the body is in neither list or in both (see `note`).
    pub connection: Option<ConnectionMode>,
    /// Every other spelling seen in the tables, `; `-separated.
    pub name_variants: String,
    /// The rule that matched each variant (`normalized` or `alias`), in the same order.
    pub matched_by: String,
    pub note: String,
    pub source_file: String,
    pub table: String,
    pub row: u32,
    pub line: u32,
    pub raw: String,
}

/// Per-agency volumes on the axis, 2021 and 2022 to 28 July (`2021_2022_agencies.csv`).
/// `None` is a blank published cell: the body did not exchange that year.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgencyVolumeRow {
    pub code: String,
    /// As printed in this table.
    pub name: String,
    pub kind: AgencyKind,
    pub received_2021: Option<u64>,
    pub sent_2021: Option<u64>,
    pub received_2022: Option<u64>,
    pub sent_2022: Option<u64>,
    pub source_file: String,
    pub table: String,
    pub row: u32,
    pub line: u32,
    /// The printed cells, when any of them had to be interpreted.
    pub raw: String,
}

/// Volumes from 2019-03-12 to 2019-09-30 by administrative level (`2019_levels.csv`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelRow {
    /// 1, 2 or 3; `None` for the all-level total.
    pub level: Option<u8>,
    /// The level as the report names it.
    pub level_name: String,
    pub period_start: String,
    pub period_end: String,
    pub sent: u64,
    pub received: u64,
    pub source_file: String,
    pub table: String,
    pub row: u32,
    pub line: u32,
    pub raw: String,
}

/// Documents one body sent to the Government Office in 2019 (`2019_to_government_office.csv`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GovernmentOfficeRow {
    pub code: String,
    /// As printed in this table.
    pub name: String,
    pub total_sent: u64,
    pub electronic: u64,
    pub signed: u64,
    /// Signed / electronic, as printed (e.g. `99.7%`).
    pub published_signed_pct: String,
    /// Electronic / total sent, as printed (e.g. `61.80%`).
    pub published_electronic_pct: String,
    /// A published percentage differs from its own counts at the printed precision.
    pub pct_disagrees: bool,
    /// Other oddities of the row (counts that cannot both be right, undefined ratios).
    pub note: String,
    pub source_file: String,
    pub table: String,
    pub row: u32,
    pub line: u32,
    pub raw: String,
}

/// Which group of units a status-feedback row counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackCategory {
    FiveOrMore,
    ThreeToFive,
    ArrivedOnly,
}

/// One statement of seed 002, III.2 (`2019_status_feedback.csv`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusFeedbackRow {
    pub category: FeedbackCategory,
    pub min_statuses: u8,
    /// `None` for "or more".
    pub max_statuses: Option<u8>,
    pub unit_count: u32,
    pub total_units: u32,
    /// The unit, where the report names it.
    pub code: String,
    pub name: String,
    pub source_file: String,
    pub table: String,
    pub row: u32,
    pub line: u32,
    pub raw: String,
}

/// Seed 002, III.2, summed up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusFeedback {
    /// Units reporting five statuses or more (84).
    pub five_or_more: u32,
    /// Units reporting "from 3 to 5" statuses (10); the groups are disjoint, so 3 or 4.
    pub three_or_four: u32,
    /// Units reporting only "arrived" (the Party Central Office).
    pub arrived_only_codes: Vec<String>,
    /// Units the counts are out of (95).
    pub total_units: u32,
}

/// One entry of seed 002, Phụ lục I or II (`2019_connections.csv`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionRow {
    pub code: String,
    /// As printed in the list.
    pub name: String,
    pub mode: ConnectionMode,
    /// Where the same body appears in the other list, if it does.
    pub also_listed: String,
    pub source_file: String,
    pub table: String,
    pub row: u32,
    pub line: u32,
    pub raw: String,
}

/// Whether a total is printed in a report or summed from the per-agency rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TotalOrigin {
    Published,
    Computed,
}

/// Which documents a total counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Received,
    Sent,
    /// Sent and received together, as the prose figures count them.
    Both,
}

/// Which bodies a total covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    All,
    Central,
    Province,
}

/// How exact a printed figure is ("trên"/"hơn" = more than, "khoảng" = about).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    Exact,
    AtLeast,
    Approx,
}

/// A 2021/2022 total, printed or summed (`2021_2022_totals.csv`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotalRow {
    pub origin: TotalOrigin,
    /// `2021`, `2022_to_07_28`, `2022_first_8_months`, `2019_03_12_to_report`, `monthly_average`.
    pub period: String,
    pub direction: Direction,
    pub scope: Scope,
    pub value: u64,
    pub bound: Bound,
    pub note: String,
    pub source_file: String,
    pub table: String,
    /// 0 for computed totals, which no single row holds.
    pub row: u32,
    pub line: u32,
    pub raw: String,
}

/// The embedded text of one CSV file.
pub fn csv_text(file: &str) -> Result<&'static str, SeedError> {
    CSV_FILES
        .iter()
        .find(|(name, _)| *name == file)
        .map(|(_, text)| *text)
        .ok_or_else(|| SeedError::MissingFile(file.to_string()))
}

/// Parses CSV text (header row, RFC 4180) into rows.
pub fn parse_csv<T: DeserializeOwned>(file: &str, text: &str) -> Result<Vec<T>, SeedError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    reader
        .deserialize()
        .collect::<Result<Vec<T>, _>>()
        .map_err(|source| SeedError::Csv {
            file: file.to_string(),
            source,
        })
}

/// Writes rows as CSV text in the form the files are kept in.
pub fn to_csv<T: Serialize>(file: &str, rows: &[T]) -> Result<String, SeedError> {
    let write_error = |detail: String| SeedError::CsvWrite {
        file: file.to_string(),
        detail,
    };
    let mut writer = csv::WriterBuilder::new()
        .has_headers(true)
        .from_writer(Vec::new());
    for row in rows {
        writer
            .serialize(row)
            .map_err(|error| write_error(error.to_string()))?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|error| write_error(error.to_string()))?;
    String::from_utf8(bytes).map_err(|error| write_error(error.to_string()))
}

fn embedded<T: DeserializeOwned>(file: &str) -> Result<Vec<T>, SeedError> {
    parse_csv(file, csv_text(file)?)
}

/// The agency directory: one row per body in any table.
pub fn agencies() -> Result<Vec<AgencyRow>, SeedError> {
    embedded("agencies.csv")
}

/// Per-agency volumes, 2021 and 2022 to 28 July (seed 001, Phụ lục 6, III).
pub fn volumes_2021_2022() -> Result<Vec<AgencyVolumeRow>, SeedError> {
    embedded("2021_2022_agencies.csv")
}

/// Printed and summed 2021/2022 totals.
pub fn totals_2021_2022() -> Result<Vec<TotalRow>, SeedError> {
    embedded("2021_2022_totals.csv")
}

/// 2019 volumes by level (seed 002, III.1).
pub fn levels_2019() -> Result<Vec<LevelRow>, SeedError> {
    embedded("2019_levels.csv")
}

/// Documents sent to the Government Office in 2019 (seed 002, Phụ lục V).
pub fn to_government_office_2019() -> Result<Vec<GovernmentOfficeRow>, SeedError> {
    embedded("2019_to_government_office.csv")
}

/// The rows of seed 002, III.2.
pub fn status_feedback_rows_2019() -> Result<Vec<StatusFeedbackRow>, SeedError> {
    embedded("2019_status_feedback.csv")
}

/// Seed 002, III.2, summed up.
pub fn status_feedback_2019() -> Result<StatusFeedback, SeedError> {
    Ok(summarize_status_feedback(&status_feedback_rows_2019()?))
}

/// Sums status-feedback rows into the three figures the report gives.
pub fn summarize_status_feedback(rows: &[StatusFeedbackRow]) -> StatusFeedback {
    let count = |category| {
        rows.iter()
            .filter(|row| row.category == category)
            .map(|row| row.unit_count)
            .sum()
    };
    StatusFeedback {
        five_or_more: count(FeedbackCategory::FiveOrMore),
        three_or_four: count(FeedbackCategory::ThreeToFive),
        arrived_only_codes: rows
            .iter()
            .filter(|row| row.category == FeedbackCategory::ArrivedOnly)
            .map(|row| row.code.clone())
            .collect(),
        total_units: rows.iter().map(|row| row.total_units).max().unwrap_or(0),
    }
}

/// The 2019 connection lists (seed 002, Phụ lục I and II).
pub fn connections_2019() -> Result<Vec<ConnectionRow>, SeedError> {
    embedded("2019_connections.csv")
}

/// Whether `code` has the QCVN 102:2016 shape `AAA.BB.CC.Xnn`: three, two and two digits,
/// then an uppercase letter and two digits.
pub fn is_well_formed_code(code: &str) -> bool {
    let groups: Vec<&str> = code.split('.').collect();
    let digits = |group: &str, len: usize| {
        group.len() == len && group.bytes().all(|byte| byte.is_ascii_digit())
    };
    match groups.as_slice() {
        [level4, level3, level2, level1] => {
            let level1 = level1.as_bytes();
            digits(level4, 3)
                && digits(level3, 2)
                && digits(level2, 2)
                && level1.len() == 3
                && level1[0].is_ascii_uppercase()
                && level1[1..].iter().all(u8::is_ascii_digit)
        }
        _ => false,
    }
}

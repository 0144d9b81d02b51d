//! The report: the hub's own figures for a period, set beside the published ones row by row,
//! and rendered as a table, JSON or CSV. The same code serves `truc replay` and `truc report`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::{json, Value};
use truc_domain::{AgencyCode, DocumentDate};

use crate::attachments::AttachmentsSent;
use crate::published::{Dataset, Expected, ExpectedFeedback, GOVERNMENT_OFFICE};

/// The edXML code of "arrived" (01).
const STATUS_ARRIVED: u32 = 1;

/// One agency's figures as the hub recorded them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgencyFigures {
    pub sent: u64,
    /// Deliveries that arrived (were acknowledged by the agency's node).
    pub received: u64,
    /// Distinct status codes the agency reported as a recipient.
    pub statuses_reported: BTreeSet<u32>,
    /// Documents it sent to the focus recipient, and how many of those carried a verified
    /// document signature.
    pub sent_to_focus: u64,
    pub sent_to_focus_signed: u64,
    /// Deliveries to the agency that passed a feedback deadline unanswered
    /// (no published figure to compare with).
    pub overdue: u64,
}

/// What the hub holds for a period, from its operator API or its data directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubFigures {
    pub agencies: BTreeMap<AgencyCode, AgencyFigures>,
    /// Totals from the hub's live counters (kept as documents and arrivals are recorded), a
    /// second reading that must agree with the sum of the recomputed rows.
    pub counter_totals: Option<(u64, u64)>,
}

/// Where the figures were read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FigureSource {
    /// The operator API of a hub at this address; `embedded` when the replay started it.
    Hub { address: String, embedded: bool },
    /// A stopped hub's data directory, read offline.
    DataDirectory { path: String },
}

impl FigureSource {
    pub fn describe(&self) -> String {
        match self {
            FigureSource::Hub {
                address,
                embedded: true,
            } => format!("the embedded hub at {address}, through its operator API"),
            FigureSource::Hub { address, .. } => {
                format!("the hub at {address}, through its operator API")
            }
            FigureSource::DataDirectory { path } => {
                format!("the data directory {path}, read offline (the hub is not running)")
            }
        }
    }
}

/// Sent and received, measured and, where published, expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRow {
    pub label: String,
    pub sent: u64,
    pub received: u64,
    pub expected: Option<(u64, u64)>,
}

impl VolumeRow {
    pub fn matches(&self) -> Option<bool> {
        self.expected
            .map(|expected| expected == (self.sent, self.received))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgencyRow {
    pub code: AgencyCode,
    pub name: String,
    pub level: u8,
    pub sent: u64,
    pub received: u64,
    pub statuses_reported: Vec<u32>,
    /// Deliveries to it that passed a feedback deadline; not compared.
    pub overdue: u64,
    /// `None` where the table prints nothing.
    pub published_sent: Option<u64>,
    pub published_received: Option<u64>,
    /// Compared at all: only datasets with per-agency tables (a blank then means zero).
    pub compared: bool,
}

impl AgencyRow {
    pub fn matches(&self) -> Option<bool> {
        self.compared.then(|| {
            (self.sent, self.received)
                == (
                    self.published_sent.unwrap_or(0),
                    self.published_received.unwrap_or(0),
                )
        })
    }
}

/// One body's documents to the Government Office (seed 002, Phụ lục V).
#[derive(Debug, Clone, PartialEq)]
pub struct OfficeRow {
    pub code: AgencyCode,
    pub name: String,
    /// Published total, paper included; `None` for a body the table does not list.
    pub total_sent: Option<u64>,
    /// Measured: documents that reached the office over the axis, and of those, documents
    /// whose own signature verified.
    pub electronic: u64,
    pub signed: u64,
    pub expected: Option<(u64, u64)>,
    /// Recomputed from the measured counts, in percent.
    pub signed_pct: Option<f64>,
    pub electronic_pct: Option<f64>,
    pub published_signed_pct: String,
    pub published_electronic_pct: String,
    /// The printed percentage disagrees with the printed counts (flagged, not a failure: the
    /// counts are what is reproduced).
    pub pct_disagrees: bool,
    pub note: String,
}

impl OfficeRow {
    pub fn matches(&self) -> Option<bool> {
        self.expected
            .map(|expected| expected == (self.electronic, self.signed))
    }
}

/// Level-1 bodies by the number of distinct statuses they reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackSummary {
    pub five_or_more: u64,
    pub three_or_four: u64,
    pub arrived_only: u64,
    pub arrived_only_codes: Vec<AgencyCode>,
    /// Level-1 bodies in none of the three groups (no status, or one or two that are not
    /// "arrived" alone).
    pub other: u64,
    pub expected: Option<ExpectedFeedback>,
}

impl FeedbackSummary {
    pub fn matches(&self) -> Option<bool> {
        self.expected.as_ref().map(|expected| {
            self.five_or_more == expected.five_or_more
                && self.three_or_four == expected.three_or_four
                && self.arrived_only_codes == expected.arrived_only_codes
        })
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub dataset: Option<Dataset>,
    /// "scaled 1/100" when compared with a scaled plan's targets.
    pub scale: Option<(u64, u64)>,
    pub period: (Option<DocumentDate>, Option<DocumentDate>),
    pub source: FigureSource,
    pub totals: VolumeRow,
    pub counter_totals: Option<(u64, u64)>,
    pub levels: Vec<VolumeRow>,
    pub agencies: Vec<AgencyRow>,
    pub focus: AgencyCode,
    pub to_government_office: Vec<OfficeRow>,
    pub status_feedback: FeedbackSummary,
    /// The attachments a replay sent, when the report is a replay's (a report read from a hub
    /// or a data directory does not know them).
    pub attachments: Option<AttachmentsSent>,
}

/// The report's figures, each with whether it matches, for the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub section: &'static str,
    pub row: String,
    pub detail: String,
}

impl Report {
    /// Sets `figures` beside `expected` (if any). The period is the one the figures were read
    /// for; the focus recipient is the Government Office.
    pub fn build(
        figures: &HubFigures,
        expected: Option<&Expected>,
        period: (Option<DocumentDate>, Option<DocumentDate>),
        source: FigureSource,
    ) -> Report {
        let focus: AgencyCode = expected.map(|e| e.focus).unwrap_or_else(|| {
            GOVERNMENT_OFFICE
                .parse()
                .expect("the Government Office code is well formed")
        });
        let empty = AgencyFigures::default();
        let figures_of = |code: &AgencyCode| figures.agencies.get(code).unwrap_or(&empty);

        // Every body the hub or the dataset knows, in code order.
        let mut codes: BTreeSet<AgencyCode> = figures.agencies.keys().copied().collect();
        if let Some(expected) = expected {
            codes.extend(expected.agencies.keys().copied());
        }
        let per_agency = expected.is_some_and(|e| e.dataset != Dataset::Y2019);
        let agencies: Vec<AgencyRow> = codes
            .iter()
            .map(|code| {
                let measured = figures_of(code);
                let known = expected.and_then(|e| e.agencies.get(code));
                let name = known
                    .map(|a| a.name.clone())
                    .or_else(|| expected.and_then(|e| e.names.get(code).cloned()))
                    .unwrap_or_default();
                AgencyRow {
                    code: *code,
                    name,
                    level: known.map(|a| a.level).unwrap_or_else(|| code.level()),
                    sent: measured.sent,
                    received: measured.received,
                    statuses_reported: measured.statuses_reported.iter().copied().collect(),
                    overdue: measured.overdue,
                    published_sent: known.and_then(|a| a.published_sent),
                    published_received: known.and_then(|a| a.published_received),
                    // A body outside a per-agency table must not exchange at all.
                    compared: known.map(|a| a.compared).unwrap_or(per_agency),
                }
            })
            .collect();

        let sum = |rows: &mut dyn Iterator<Item = &AgencyRow>| {
            rows.fold((0, 0), |(sent, received), row| {
                (sent + row.sent, received + row.received)
            })
        };
        let (sent, received) = sum(&mut agencies.iter());
        let totals = VolumeRow {
            label: "total".into(),
            sent,
            received,
            expected: expected.map(|e| e.totals),
        };
        let level_names = [
            "level 1 (ministries, provinces)",
            "level 2 (departments, districts)",
            "level 3 (communes)",
        ];
        let levels = (1..=3u8)
            .map(|level| {
                let (sent, received) = sum(&mut agencies.iter().filter(|row| row.level == level));
                VolumeRow {
                    label: level_names[usize::from(level - 1)].into(),
                    sent,
                    received,
                    expected: expected
                        .and_then(|e| e.levels)
                        .map(|levels| levels[usize::from(level - 1)]),
                }
            })
            .collect();

        let mut to_government_office = Vec::new();
        let mut listed = BTreeSet::new();
        for row in expected
            .map(|e| e.to_government_office.as_slice())
            .unwrap_or(&[])
        {
            listed.insert(row.code);
            let measured = figures_of(&row.code);
            to_government_office.push(office_row(
                row.code,
                row.name.clone(),
                Some(row.total_sent),
                measured,
                Some((row.electronic, row.signed)),
                Printed {
                    counts: Some(row.printed),
                    signed_pct: &row.published_signed_pct,
                    electronic_pct: &row.published_electronic_pct,
                    disagrees: row.pct_disagrees,
                },
                row.note.clone(),
            ));
        }
        let office_compared = expected.is_some_and(|e| !e.to_government_office.is_empty());
        // The table is a 2019 figure: other datasets leave it out, a report without a dataset
        // lists whoever sent to the office.
        let office_listed = office_compared || expected.is_none();
        for row in agencies.iter().filter(|_| office_listed) {
            let measured = figures_of(&row.code);
            if !listed.contains(&row.code) && measured.sent_to_focus > 0 {
                // With a published table, a body outside it must not reach the office.
                to_government_office.push(office_row(
                    row.code,
                    row.name.clone(),
                    None,
                    measured,
                    office_compared.then_some((0, 0)),
                    Printed {
                        counts: None,
                        signed_pct: "",
                        electronic_pct: "",
                        disagrees: false,
                    },
                    String::new(),
                ));
            }
        }

        let status_feedback = feedback_summary(
            agencies.iter().filter(|row| row.level == 1),
            expected.and_then(|e| e.feedback.clone()),
        );

        Report {
            dataset: expected.map(|e| e.dataset),
            scale: expected.and_then(|e| e.scale),
            period,
            source,
            totals,
            counter_totals: figures.counter_totals,
            levels,
            agencies,
            focus,
            to_government_office,
            status_feedback,
            attachments: None,
        }
    }

    /// Every compared figure that differs. Empty means the report matches what it was
    /// compared with.
    pub fn mismatches(&self) -> Vec<Mismatch> {
        let mut out = Vec::new();
        let volume = |section, row: &VolumeRow, out: &mut Vec<Mismatch>| {
            if row.matches() == Some(false) {
                let (sent, received) = row.expected.unwrap_or_default();
                out.push(Mismatch {
                    section,
                    row: row.label.clone(),
                    detail: format!(
                        "{} / {} against {} / {}",
                        row.sent, row.received, sent, received
                    ),
                });
            }
        };
        volume("totals", &self.totals, &mut out);
        if let Some((sent, received)) = self.counter_totals {
            if (sent, received) != (self.totals.sent, self.totals.received) {
                out.push(Mismatch {
                    section: "totals",
                    row: "live counters".into(),
                    detail: format!(
                        "the hub's counters say {sent} / {received}, its records {} / {}",
                        self.totals.sent, self.totals.received
                    ),
                });
            }
        }
        for row in &self.levels {
            volume("levels", row, &mut out);
        }
        for row in &self.agencies {
            if row.matches() == Some(false) {
                out.push(Mismatch {
                    section: "agencies",
                    row: format!("{} {}", row.code, row.name),
                    detail: format!(
                        "{} / {} against {} / {}",
                        row.sent,
                        row.received,
                        row.published_sent.unwrap_or(0),
                        row.published_received.unwrap_or(0)
                    ),
                });
            }
        }
        for row in &self.to_government_office {
            if let (Some(false), Some((electronic, signed))) = (row.matches(), row.expected) {
                out.push(Mismatch {
                    section: "to the Government Office",
                    row: format!("{} {}", row.code, row.name),
                    detail: format!(
                        "{} electronic / {} signed against {electronic} / {signed}",
                        row.electronic, row.signed
                    ),
                });
            }
        }
        if self.status_feedback.matches() == Some(false) {
            let summary = &self.status_feedback;
            let expected = summary.expected.clone().expect("compared feedback");
            out.push(Mismatch {
                section: "status feedback",
                row: "level-1 bodies".into(),
                detail: format!(
                    "{} / {} / {:?} against {} / {} / {:?}",
                    summary.five_or_more,
                    summary.three_or_four,
                    codes_text(&summary.arrived_only_codes),
                    expected.five_or_more,
                    expected.three_or_four,
                    codes_text(&expected.arrived_only_codes)
                ),
            });
        }
        out
    }

    /// `Some(true)` when every compared figure matches; `None` when nothing was compared.
    pub fn matches_published(&self) -> Option<bool> {
        self.dataset.map(|_| self.mismatches().is_empty())
    }

    /// The report as JSON (see the issue for the fields other tools rely on).
    pub fn to_json(&self) -> Value {
        let optional = |value: Option<u64>| value.map(Value::from).unwrap_or(Value::Null);
        json!({
            "dataset": self.dataset.map(|d| d.name()),
            "scale": self.scale.map(|(n, d)| format!("{n}/{d}")),
            "period": {
                "from": self.period.0.map(|d| d.iso()),
                "to": self.period.1.map(|d| d.iso()),
            },
            "source": self.source.describe(),
            "totals": {
                "sent": self.totals.sent,
                "received": self.totals.received,
                "published_sent": optional(self.totals.expected.map(|e| e.0)),
                "published_received": optional(self.totals.expected.map(|e| e.1)),
                "counters": self.counter_totals.map(|(sent, received)| json!({"sent": sent, "received": received})),
            },
            "levels": self.levels.iter().enumerate().map(|(index, row)| json!({
                "level": index + 1,
                "sent": row.sent,
                "received": row.received,
                "published_sent": optional(row.expected.map(|e| e.0)),
                "published_received": optional(row.expected.map(|e| e.1)),
                "matches": row.matches(),
            })).collect::<Vec<_>>(),
            "agencies": self.agencies.iter().map(|row| json!({
                "code": row.code.to_string(),
                "name": row.name,
                "level": row.level,
                "sent": row.sent,
                "received": row.received,
                "published_sent": optional(row.published_sent),
                "published_received": optional(row.published_received),
                "statuses_reported": row.statuses_reported,
                "overdue": row.overdue,
                "matches": row.matches(),
            })).collect::<Vec<_>>(),
            "focus_recipient": self.focus.to_string(),
            "to_government_office": self.to_government_office.iter().map(|row| json!({
                "code": row.code.to_string(),
                "name": row.name,
                "total_sent": optional(row.total_sent),
                "electronic": row.electronic,
                "signed": row.signed,
                "published_electronic": optional(row.expected.map(|e| e.0)),
                "published_signed": optional(row.expected.map(|e| e.1)),
                "signed_pct": row.signed_pct,
                "electronic_pct": row.electronic_pct,
                "published_signed_pct": row.published_signed_pct,
                "published_electronic_pct": row.published_electronic_pct,
                "pct_disagrees": row.pct_disagrees,
                "note": row.note,
                "matches": row.matches(),
            })).collect::<Vec<_>>(),
            "status_feedback": {
                "five_or_more": self.status_feedback.five_or_more,
                "three_or_four": self.status_feedback.three_or_four,
                "arrived_only": self.status_feedback.arrived_only,
                "arrived_only_codes": codes_text(&self.status_feedback.arrived_only_codes),
                "other": self.status_feedback.other,
                "published": self.status_feedback.expected.as_ref().map(|e| json!({
                    "five_or_more": e.five_or_more,
                    "three_or_four": e.three_or_four,
                    "arrived_only": e.arrived_only_codes.len(),
                    "arrived_only_codes": codes_text(&e.arrived_only_codes),
                    "total_units": e.total_units,
                })),
            },
            "mismatches": self.mismatches().iter().map(|m| json!({
                "section": m.section, "row": m.row, "detail": m.detail,
            })).collect::<Vec<_>>(),
            "matches_published": self.matches_published(),
            "attachments": self.attachments.as_ref().map(AttachmentsSent::to_json),
        })
    }

    /// The agency rows as CSV (header row, RFC 4180 quoting).
    pub fn agencies_csv(&self) -> String {
        let mut out = String::from(
            "code,name,level,sent,received,published_sent,published_received,statuses_reported,overdue,matches\n",
        );
        let optional = |value: Option<u64>| value.map(|v| v.to_string()).unwrap_or_default();
        for row in &self.agencies {
            let statuses: Vec<String> = row
                .statuses_reported
                .iter()
                .map(|code| format!("{code:02}"))
                .collect();
            let fields = [
                row.code.to_string(),
                row.name.clone(),
                row.level.to_string(),
                row.sent.to_string(),
                row.received.to_string(),
                optional(row.published_sent),
                optional(row.published_received),
                statuses.join(" "),
                row.overdue.to_string(),
                row.matches().map(|m| m.to_string()).unwrap_or_default(),
            ];
            let line: Vec<String> = fields.iter().map(|field| csv_field(field)).collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
        out
    }

    /// The report as text: a header, then each section row by row with ✓ or ✗, then the
    /// verdict. The per-agency rows are printed when the dataset publishes them (or when no
    /// dataset is given); for 2019 they are in the JSON and CSV.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        self.write_heading(&mut out);
        self.write_volumes(&mut out);
        self.write_agencies(&mut out);
        self.write_to_government_office(&mut out);
        self.write_status_feedback(&mut out);
        self.write_verdict(&mut out);
        out
    }

    /// What was compared with what, over which period, from which figures.
    fn write_heading(&self, out: &mut String) {
        let heading = match self.dataset {
            Some(dataset) => {
                let scale = self
                    .scale
                    .map(|(n, d)| {
                        format!(", scaled {n}/{d} (compared with the scaled plan's targets)")
                    })
                    .unwrap_or_default();
                format!(
                    "truc report — dataset {dataset}{scale}, compared with {}",
                    dataset.source()
                )
            }
            None => "truc report — no dataset given, nothing compared".into(),
        };
        let _ = writeln!(out, "{heading}");
        let period = |date: Option<DocumentDate>| date.map(|d| d.iso()).unwrap_or("…".into());
        let _ = writeln!(
            out,
            "period {} .. {} (document dates); figures from {}",
            period(self.period.0),
            period(self.period.1),
            self.source.describe()
        );
        if let Some(attachments) = &self.attachments {
            let _ = writeln!(out, "{}", attachments.line());
        }
        let _ = writeln!(out);
    }

    /// Sent and received in total and per level, and the live counters beside them.
    fn write_volumes(&self, out: &mut String) {
        let compared = self.dataset.is_some();
        let _ = writeln!(
            out,
            "{:<40} {:>12} {:>12}   {:>12} {:>12}",
            "VOLUMES",
            "sent",
            "received",
            if compared { "published" } else { "" },
            if compared { "published" } else { "" }
        );
        for row in std::iter::once(&self.totals).chain(&self.levels) {
            let (published_sent, published_received) = match row.expected {
                Some((sent, received)) => (group(sent), group(received)),
                None => (String::new(), String::new()),
            };
            let _ = writeln!(
                out,
                "{} {:<38} {:>12} {:>12}   {:>12} {:>12}",
                mark(row.matches()),
                row.label,
                group(row.sent),
                group(row.received),
                published_sent,
                published_received
            );
        }
        if let Some((sent, received)) = self.counter_totals {
            let agrees = (sent, received) == (self.totals.sent, self.totals.received);
            let _ = writeln!(
                out,
                "{} {:<38} {:>12} {:>12}   (the hub's live counters, beside its records)",
                mark(Some(agrees)),
                "live counters",
                group(sent),
                group(received)
            );
        }
    }

    /// One row per agency where the dataset publishes them, else where to find them.
    fn write_agencies(&self, out: &mut String) {
        let compared = self.dataset.is_some();
        let print_agencies = self.dataset.is_none_or(|d| d != Dataset::Y2019);
        if print_agencies && !self.agencies.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "{:<16} {:<44} {:>10} {:>10}   {:>10} {:>10}   {:>8}",
                "AGENCY",
                "",
                "sent",
                "received",
                if compared { "published" } else { "" },
                if compared { "published" } else { "" },
                "overdue"
            );
            for row in &self.agencies {
                let published = |value: Option<u64>| match (row.compared, value) {
                    (true, Some(value)) => group(value),
                    (true, None) => "(blank)".into(),
                    (false, _) => String::new(),
                };
                let _ = writeln!(
                    out,
                    "{} {:<14} {:<44} {:>10} {:>10}   {:>10} {:>10}   {:>8}",
                    mark(row.matches()),
                    row.code.to_string(),
                    truncate(&row.name, 44),
                    group(row.sent),
                    group(row.received),
                    published(row.published_sent),
                    published(row.published_received),
                    group(row.overdue)
                );
            }
        } else if !self.agencies.is_empty() {
            let _ = writeln!(
                out,
                "\n{} units reported (no per-agency table is published for {}; the rows are in \
                 --json and --csv)",
                self.agencies.len(),
                self.dataset.map(|d| d.name()).unwrap_or_default()
            );
        }
    }

    /// Phụ lục V: what each body sent the Government Office, electronic and signed.
    fn write_to_government_office(&self, out: &mut String) {
        if !self.to_government_office.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "TO THE GOVERNMENT OFFICE ({}): electronic and signed measured [published]; \
                 percentages recomputed [published]",
                self.focus
            );
            let _ = writeln!(
                out,
                "  {:<14} {:<36} {:>7} {:>15} {:>15} {:>17} {:>19}",
                "code", "", "total", "electronic", "signed", "signed/electr.", "electr./total"
            );
            for row in &self.to_government_office {
                let bracket = |value: Option<u64>| {
                    value
                        .map(|value| format!("[{}]", group(value)))
                        .unwrap_or_default()
                };
                let pct = |value: Option<f64>, published: &str| {
                    let decimals = decimals_of(published).unwrap_or(1);
                    let recomputed = value
                        .map(|v| format!("{v:.decimals$}%"))
                        .unwrap_or_else(|| "—".into());
                    if published.is_empty() {
                        recomputed
                    } else {
                        format!("{recomputed} [{published}]")
                    }
                };
                let _ = writeln!(
                    out,
                    "{} {:<14} {:<36} {:>7} {:>15} {:>15} {:>17} {:>19}",
                    mark(row.matches()),
                    row.code.to_string(),
                    truncate(&row.name, 36),
                    row.total_sent.map(group).unwrap_or_default(),
                    format!(
                        "{} {}",
                        group(row.electronic),
                        bracket(row.expected.map(|e| e.0))
                    ),
                    format!(
                        "{} {}",
                        group(row.signed),
                        bracket(row.expected.map(|e| e.1))
                    ),
                    pct(row.signed_pct, &row.published_signed_pct),
                    pct(row.electronic_pct, &row.published_electronic_pct),
                );
                if row.pct_disagrees {
                    let _ = writeln!(
                        out,
                        "  ⚑ the published percentage disagrees with its own counts{}",
                        if row.note.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", row.note)
                        }
                    );
                } else if !row.note.is_empty() {
                    let _ = writeln!(out, "  ⚑ {}", row.note);
                }
            }
            let electronic: u64 = self.to_government_office.iter().map(|r| r.electronic).sum();
            let signed: u64 = self.to_government_office.iter().map(|r| r.signed).sum();
            let _ = writeln!(
                out,
                "  all bodies: {} electronic, {} signed ({:.1}%)",
                group(electronic),
                group(signed),
                percent(signed, electronic).unwrap_or(0.0)
            );
        }
    }

    /// How many level-1 bodies stored five statuses or more, three or four, or only "arrived".
    fn write_status_feedback(&self, out: &mut String) {
        let feedback = &self.status_feedback;
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "STATUS FEEDBACK (level-1 bodies, distinct statuses stored by the hub)   measured   published"
        );
        let expected = feedback.expected.as_ref();
        let row_mark = |measured: u64, published: Option<u64>| {
            mark(published.map(|published| published == measured))
        };
        let _ = writeln!(
            out,
            "{} {:<70} {:>8} {:>11}",
            row_mark(feedback.five_or_more, expected.map(|e| e.five_or_more)),
            "five statuses or more",
            feedback.five_or_more,
            expected
                .map(|e| e.five_or_more.to_string())
                .unwrap_or_default()
        );
        let _ = writeln!(
            out,
            "{} {:<70} {:>8} {:>11}",
            row_mark(feedback.three_or_four, expected.map(|e| e.three_or_four)),
            "three or four statuses",
            feedback.three_or_four,
            expected
                .map(|e| e.three_or_four.to_string())
                .unwrap_or_default()
        );
        let arrived_matches = expected.map(|e| e.arrived_only_codes == feedback.arrived_only_codes);
        let _ = writeln!(
            out,
            "{} {:<70} {:>8} {:>11}",
            mark(arrived_matches),
            match codes_text(&feedback.arrived_only_codes).join(", ") {
                codes if codes.is_empty() => "only \"arrived\"".to_owned(),
                codes => format!("only \"arrived\" ({codes})"),
            },
            feedback.arrived_only,
            expected
                .map(|e| format!("{}", e.arrived_only_codes.len()))
                .unwrap_or_default()
        );
        if feedback.other > 0 {
            let _ = writeln!(
                out,
                "  {:<70} {:>8}",
                "in none of these groups", feedback.other
            );
        }
    }

    /// Whether every figure is reproduced, and the rows that differ when not.
    fn write_verdict(&self, out: &mut String) {
        let _ = writeln!(out);
        match self.matches_published() {
            None => {
                let _ = writeln!(
                    out,
                    "No dataset given: nothing compared (use --dataset 2019|2021|2022)."
                );
            }
            Some(true) => {
                let _ = writeln!(
                    out,
                    "VERDICT ✓ every {} figure is reproduced{}.",
                    if self.scale.is_some() {
                        "scaled"
                    } else {
                        "published"
                    },
                    self.scale
                        .map(|(n, d)| format!(" (scaled {n}/{d})"))
                        .unwrap_or_default()
                );
            }
            Some(false) => {
                let mismatches = self.mismatches();
                let _ = writeln!(
                    out,
                    "VERDICT ✗ {} row(s) differ from the {} figures:",
                    mismatches.len(),
                    if self.scale.is_some() {
                        "scaled"
                    } else {
                        "published"
                    }
                );
                for mismatch in mismatches.iter().take(20) {
                    let _ = writeln!(
                        out,
                        "  ✗ {}: {}: {}",
                        mismatch.section, mismatch.row, mismatch.detail
                    );
                }
                if mismatches.len() > 20 {
                    let _ = writeln!(out, "  … and {} more", mismatches.len() - 20);
                }
            }
        }
    }
}

/// What Phụ lục V prints for one body, beside what the hub measured.
struct Printed<'a> {
    /// (total sent, electronic, signed) as printed, unscaled.
    counts: Option<(u64, u64, u64)>,
    signed_pct: &'a str,
    electronic_pct: &'a str,
    /// The seed's own check found the percentage at odds with the counts.
    disagrees: bool,
}

fn office_row(
    code: AgencyCode,
    name: String,
    total_sent: Option<u64>,
    measured: &AgencyFigures,
    expected: Option<(u64, u64)>,
    printed: Printed<'_>,
    note: String,
) -> OfficeRow {
    let signed_pct = percent(measured.sent_to_focus_signed, measured.sent_to_focus);
    let electronic_pct = total_sent.and_then(|total| percent(measured.sent_to_focus, total));
    let (published_signed_pct, published_electronic_pct) =
        (printed.signed_pct, printed.electronic_pct);
    // Recompute the printed percentages from the printed counts as well, so a row is flagged
    // even where the seed's own check missed it.
    let disagrees_with_counts = printed.counts.is_some_and(|(total, electronic, signed)| {
        pct_disagrees(published_signed_pct, percent(signed, electronic))
            || pct_disagrees(published_electronic_pct, percent(electronic, total))
    });
    let seed_flag = printed.disagrees;
    OfficeRow {
        code,
        name,
        total_sent,
        electronic: measured.sent_to_focus,
        signed: measured.sent_to_focus_signed,
        expected,
        signed_pct,
        electronic_pct,
        published_signed_pct: published_signed_pct.to_owned(),
        published_electronic_pct: published_electronic_pct.to_owned(),
        pct_disagrees: seed_flag || disagrees_with_counts,
        note,
    }
}

fn feedback_summary<'a>(
    level1: impl Iterator<Item = &'a AgencyRow>,
    expected: Option<ExpectedFeedback>,
) -> FeedbackSummary {
    let mut summary = FeedbackSummary {
        five_or_more: 0,
        three_or_four: 0,
        arrived_only: 0,
        arrived_only_codes: Vec::new(),
        other: 0,
        expected,
    };
    for row in level1 {
        match row.statuses_reported.as_slice() {
            [STATUS_ARRIVED] => {
                summary.arrived_only += 1;
                summary.arrived_only_codes.push(row.code);
            }
            statuses if statuses.len() >= 5 => summary.five_or_more += 1,
            statuses if statuses.len() >= 3 => summary.three_or_four += 1,
            _ => summary.other += 1,
        }
    }
    summary
}

/// `part / whole` in percent; `None` for an empty whole.
pub fn percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

/// Digits after the decimal point in a printed percentage (`"61.80%"` → 2).
fn decimals_of(printed: &str) -> Option<usize> {
    let number = printed.trim().trim_end_matches('%');
    if number.is_empty() {
        return None;
    }
    Some(number.split_once('.').map(|(_, d)| d.len()).unwrap_or(0))
}

/// Whether a printed percentage is more than half a unit of its last digit away from the value
/// its counts give. An undefined ratio (0/0) printed as 0 is not a disagreement.
fn pct_disagrees(printed: &str, value: Option<f64>) -> bool {
    let Some(decimals) = decimals_of(printed) else {
        return false;
    };
    let Ok(printed_value) = printed.trim().trim_end_matches('%').parse::<f64>() else {
        return false;
    };
    let value = value.unwrap_or(0.0);
    let half_unit = 0.5 * 10f64.powi(-(decimals as i32));
    (printed_value - value).abs() > half_unit + 1e-9
}

fn mark(matches: Option<bool>) -> &'static str {
    match matches {
        Some(true) => "✓",
        Some(false) => "✗",
        None => " ",
    }
}

/// 488165 → "488,165".
pub fn group(value: u64) -> String {
    let digits = value.to_string();
    let lead = match digits.len() % 3 {
        0 => 3,
        short => short,
    };
    let (head, rest) = digits.split_at(lead.min(digits.len()));
    let mut out = String::from(head);
    for triple in rest.as_bytes().chunks(3) {
        out.push(',');
        out.push_str(std::str::from_utf8(triple).expect("ASCII digits"));
    }
    out
}

fn truncate(text: &str, chars_max: usize) -> String {
    if text.chars().count() <= chars_max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(chars_max - 1).collect();
        cut.push('…');
        cut
    }
}

fn codes_text(codes: &[AgencyCode]) -> Vec<String> {
    codes.iter().map(ToString::to_string).collect()
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::published::Expected;

    /// The figures a plan promises, counted from its documents. These tests
    /// check the report's comparison and the plan against the published
    /// table; no hub is involved, so they say nothing about a hub's counts.
    /// A hub's own figures are compared with the published ones in
    /// `tests/e2e/replay.rs` and by every `truc replay`.
    fn figures_of_plan(plan: &crate::Plan) -> HubFigures {
        let focus: AgencyCode = GOVERNMENT_OFFICE.parse().unwrap();
        let mut agencies: BTreeMap<AgencyCode, AgencyFigures> = BTreeMap::new();
        for document in &plan.documents {
            let sender = agencies.entry(document.sender).or_default();
            sender.sent += 1;
            if document.recipients.contains(&focus) {
                sender.sent_to_focus += 1;
                sender.sent_to_focus_signed += u64::from(document.document_signed);
            }
            for recipient in &document.recipients {
                let row = agencies.entry(*recipient).or_default();
                row.received += 1;
                row.statuses_reported.insert(STATUS_ARRIVED);
                for status in plan.moves_for(recipient) {
                    row.statuses_reported.insert(status.code());
                }
            }
        }
        let totals = agencies
            .values()
            .fold((0, 0), |(s, r), row| (s + row.sent, r + row.received));
        HubFigures {
            agencies,
            counter_totals: Some(totals),
        }
    }

    fn source() -> FigureSource {
        FigureSource::Hub {
            address: "127.0.0.1:1".into(),
            embedded: true,
        }
    }

    #[test]
    fn figures_as_the_2019_plan_promises_match_and_a_tampered_row_is_flagged() {
        let plan = crate::plan::plan_2019(7, Some((1, 100))).unwrap();
        let expected = Expected::for_plan(&plan, Some((1, 100))).unwrap();
        let mut figures = figures_of_plan(&plan);
        let period = (Some(plan.period.0), Some(plan.period.1));
        let report = Report::build(&figures, Some(&expected), period, source());
        assert_eq!(report.mismatches(), Vec::new(), "{}", report.render_text());
        assert_eq!(report.matches_published(), Some(true));
        assert_eq!(report.status_feedback.five_or_more, 84);
        assert_eq!(report.status_feedback.three_or_four, 10);
        assert_eq!(report.status_feedback.arrived_only, 1);
        assert!(report.render_text().contains("VERDICT ✓"));

        // One signed document fewer to the Government Office from one body.
        let (code, row) = figures
            .agencies
            .iter_mut()
            .find(|(_, row)| row.sent_to_focus_signed > 0)
            .unwrap();
        let code = *code;
        row.sent_to_focus_signed -= 1;
        let report = Report::build(&figures, Some(&expected), period, source());
        let mismatches = report.mismatches();
        assert_eq!(mismatches.len(), 1, "{mismatches:?}");
        assert!(mismatches[0].row.starts_with(&code.to_string()));
        assert_eq!(report.matches_published(), Some(false));
        let text = report.render_text();
        assert!(text.contains("VERDICT ✗"), "{text}");
        assert!(
            text.lines()
                .any(|line| line.starts_with('✗') && line.contains(&code.to_string())),
            "{text}"
        );
    }

    #[test]
    fn a_tampered_2021_agency_row_and_a_lost_status_are_flagged() {
        let plan = crate::plan::plan_2021(3, Some((1, 1000))).unwrap();
        let expected = Expected::for_plan(&plan, Some((1, 1000))).unwrap();
        let mut figures = figures_of_plan(&plan);
        let period = (Some(plan.period.0), Some(plan.period.1));
        let report = Report::build(&figures, Some(&expected), period, source());
        assert_eq!(report.mismatches(), Vec::new());
        assert_eq!(report.agencies.len(), 104);

        let row = figures
            .agencies
            .values_mut()
            .find(|r| r.received > 0)
            .unwrap();
        row.received += 1;
        let report = Report::build(&figures, Some(&expected), period, source());
        let sections: Vec<&str> = report.mismatches().iter().map(|m| m.section).collect();
        // The row, the total, and the hub's counters (which no longer agree with the records).
        assert_eq!(sections, vec!["totals", "totals", "agencies"]);
    }

    #[test]
    fn a_body_that_did_not_exchange_must_stay_at_zero() {
        let expected = Expected::published(Dataset::Y2021, None).unwrap();
        let blank = expected
            .agencies
            .iter()
            .find(|(_, agency)| agency.published_sent.is_none())
            .map(|(code, _)| *code)
            .unwrap();
        let mut figures = HubFigures::default();
        figures.agencies.insert(
            blank,
            AgencyFigures {
                sent: 1,
                ..AgencyFigures::default()
            },
        );
        let report = Report::build(&figures, Some(&expected), (None, None), source());
        assert!(report
            .mismatches()
            .iter()
            .any(|m| m.section == "agencies" && m.row.starts_with(&blank.to_string())));
    }

    #[test]
    fn printed_percentages_are_checked_at_their_precision() {
        assert!(!pct_disagrees("99.7%", percent(997, 1000)));
        assert!(!pct_disagrees("61.80%", percent(618, 1000)));
        assert!(pct_disagrees("61.90%", percent(618, 1000)));
        assert!(!pct_disagrees("0.0%", None));
        assert_eq!(group(488_165), "488,165");
        assert_eq!(group(5), "5");
        assert_eq!(csv_field("a, b"), "\"a, b\"");
    }

    #[test]
    fn json_has_the_fields_other_tools_read() {
        let plan = crate::plan::plan_2021(3, Some((1, 1000))).unwrap();
        let expected = Expected::for_plan(&plan, Some((1, 1000))).unwrap();
        let figures = figures_of_plan(&plan);
        let report = Report::build(&figures, Some(&expected), (None, None), source());
        let json = report.to_json();
        for key in [
            "dataset",
            "totals",
            "levels",
            "agencies",
            "to_government_office",
            "status_feedback",
            "matches_published",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
        assert_eq!(json["matches_published"], Value::Bool(true));
        assert_eq!(json["levels"][0]["level"], 1);
        let first = &json["agencies"][0];
        for key in [
            "code",
            "name",
            "level",
            "sent",
            "received",
            "published_sent",
            "published_received",
        ] {
            assert!(first.get(key).is_some(), "{key}");
        }
        assert_eq!(report.agencies_csv().lines().count(), 105);
    }
}

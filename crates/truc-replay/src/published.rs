//! The figures a report is compared with: the published tables of one dataset, or, for a scaled
//! replay, the scaled plan's targets (which scale every published column the way the plan does).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use truc_domain::{AgencyCode, DocumentDate};

use crate::plan::{Plan, PlanError};

/// The Government Office: the focus recipient of the 2019 table (seed 002, Phụ lục V).
pub const GOVERNMENT_OFFICE: &str = "000.00.00.G22";

/// One of the published periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dataset {
    /// 2019-03-12 to 2019-09-30 (seed 002).
    Y2019,
    /// 2021 (seed 001, Phụ lục 6, III).
    Y2021,
    /// 2022 to 28 July (seed 001, Phụ lục 6, III).
    Y2022,
}

impl Dataset {
    pub fn name(self) -> &'static str {
        match self {
            Dataset::Y2019 => "2019",
            Dataset::Y2021 => "2021",
            Dataset::Y2022 => "2022",
        }
    }

    /// First and last day of the published period, inclusive.
    pub fn period(self) -> (DocumentDate, DocumentDate) {
        let day = |year, month, day| {
            DocumentDate::from_ymd(year, month, day).expect("the published periods are real dates")
        };
        match self {
            Dataset::Y2019 => (day(2019, 3, 12), day(2019, 9, 30)),
            Dataset::Y2021 => (day(2021, 1, 1), day(2021, 12, 31)),
            Dataset::Y2022 => (day(2022, 1, 1), day(2022, 7, 28)),
        }
    }

    /// Where the figures come from, for the report's header.
    pub fn source(self) -> &'static str {
        match self {
            Dataset::Y2019 => "seed 002 (III.1, III.2, Phụ lục V)",
            Dataset::Y2021 | Dataset::Y2022 => "seed 001 (Phụ lục 6, III)",
        }
    }

    /// The dataset's plan, built the one way every replay builds it.
    pub fn plan(self, seed: u64, scale: Option<(u64, u64)>) -> Result<Plan, PlanError> {
        match self {
            Dataset::Y2019 => crate::plan::plan_2019(seed, scale),
            Dataset::Y2021 => crate::plan::plan_2021(seed, scale),
            Dataset::Y2022 => crate::plan::plan_2022(seed, scale),
        }
    }
}

impl fmt::Display for Dataset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dataset {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "2019" => Ok(Dataset::Y2019),
            "2021" => Ok(Dataset::Y2021),
            "2022" => Ok(Dataset::Y2022),
            other => Err(format!(
                "unknown dataset {other:?}: the published periods are 2019, 2021 and 2022"
            )),
        }
    }
}

/// `N/D` as a scale factor; `1/1` means unscaled.
pub fn parse_scale(text: &str) -> Result<(u64, u64), String> {
    let (numerator, denominator) = text
        .split_once('/')
        .ok_or_else(|| format!("scale {text:?} is not of the form N/D (e.g. 1/100)"))?;
    let parse = |part: &str| {
        part.trim()
            .parse::<u64>()
            .map_err(|_| format!("scale {text:?}: {part:?} is not a whole number"))
    };
    let (numerator, denominator) = (parse(numerator)?, parse(denominator)?);
    if numerator == 0 || denominator == 0 {
        return Err(format!("scale {text:?}: both parts must be at least 1"));
    }
    if numerator > denominator {
        return Err(format!("scale {text:?}: a replay can only scale down"));
    }
    Ok((numerator, denominator))
}

/// One body as the comparison knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedAgency {
    pub name: String,
    pub level: u8,
    /// The published (or scaled) counts; `None` where the table prints nothing.
    pub published_sent: Option<u64>,
    pub published_received: Option<u64>,
    /// Whether the dataset publishes per-agency rows at all (2021 and 2022): then a blank cell
    /// means the body must stay at zero.
    pub compared: bool,
}

/// One row of seed 002, Phụ lục V, possibly scaled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedOfficeRow {
    pub code: AgencyCode,
    pub name: String,
    /// Documents sent to the Government Office on paper and electronically: a published input,
    /// since paper never touches the hub.
    pub total_sent: u64,
    pub electronic: u64,
    pub signed: u64,
    pub published_signed_pct: String,
    pub published_electronic_pct: String,
    /// The seed marks the printed percentage as disagreeing with its own counts.
    pub pct_disagrees: bool,
    pub note: String,
    /// (total sent, electronic, signed) as printed, unscaled: what the printed percentages are
    /// checked against.
    pub printed: (u64, u64, u64),
}

/// Seed 002, III.2: units by how many distinct statuses they reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedFeedback {
    pub five_or_more: u64,
    pub three_or_four: u64,
    pub arrived_only_codes: Vec<AgencyCode>,
    /// The units the counts are out of (95).
    pub total_units: u64,
}

/// Everything a report of one dataset is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub dataset: Dataset,
    /// `Some((n, d))` when the figures are the plan's targets at scale n/d.
    pub scale: Option<(u64, u64)>,
    pub period: (DocumentDate, DocumentDate),
    pub totals: (u64, u64),
    /// Per level 1, 2, 3, where published (2019).
    pub levels: Option<[(u64, u64); 3]>,
    /// Every body the dataset's table lists (2021, 2022) and, with a plan, every unit of the
    /// plan: the rows of the report even where the hub has no record of them.
    pub agencies: BTreeMap<AgencyCode, ExpectedAgency>,
    /// Directory names, for naming any row.
    pub names: BTreeMap<AgencyCode, String>,
    /// The focus recipient of `to_government_office`.
    pub focus: AgencyCode,
    pub to_government_office: Vec<ExpectedOfficeRow>,
    pub feedback: Option<ExpectedFeedback>,
}

impl Expected {
    /// The published figures of `dataset`, straight from the seed tables. With `plan`, the
    /// plan's units are added (names and levels of the 2019 subordinate units, which no table
    /// lists) without changing any published figure.
    pub fn published(dataset: Dataset, plan: Option<&Plan>) -> Result<Expected, PlanError> {
        let names: BTreeMap<AgencyCode, String> = truc_seeds::agencies()?
            .into_iter()
            .map(|row| Ok((row.code.parse()?, row.name)))
            .collect::<Result<_, PlanError>>()?;
        let name_of = |code: &AgencyCode, printed: &str| -> String {
            names
                .get(code)
                .cloned()
                .unwrap_or_else(|| printed.to_owned())
        };
        let focus: AgencyCode = GOVERNMENT_OFFICE.parse()?;
        let mut agencies = BTreeMap::new();
        let mut levels = None;
        let mut to_government_office = Vec::new();
        let mut feedback = None;
        let totals;
        match dataset {
            Dataset::Y2021 | Dataset::Y2022 => {
                let mut sent_total = 0;
                let mut received_total = 0;
                for row in truc_seeds::volumes_2021_2022()? {
                    let code: AgencyCode = row.code.parse()?;
                    let (received, sent) = match dataset {
                        Dataset::Y2021 => (row.received_2021, row.sent_2021),
                        _ => (row.received_2022, row.sent_2022),
                    };
                    sent_total += sent.unwrap_or(0);
                    received_total += received.unwrap_or(0);
                    agencies.insert(
                        code,
                        ExpectedAgency {
                            name: name_of(&code, &row.name),
                            level: code.level(),
                            published_sent: sent,
                            published_received: received,
                            compared: true,
                        },
                    );
                }
                totals = (sent_total, received_total);
            }
            Dataset::Y2019 => {
                let rows = truc_seeds::levels_2019()?;
                let find = |level: Option<u8>| {
                    rows.iter()
                        .find(|row| row.level == level)
                        .map(|row| (row.sent, row.received))
                        .ok_or_else(|| {
                            PlanError::Data(format!("2019_levels.csv has no row for {level:?}"))
                        })
                };
                totals = find(None)?;
                levels = Some([find(Some(1))?, find(Some(2))?, find(Some(3))?]);
                for row in truc_seeds::to_government_office_2019()? {
                    let code: AgencyCode = row.code.parse()?;
                    to_government_office.push(ExpectedOfficeRow {
                        code,
                        name: name_of(&code, &row.name),
                        total_sent: row.total_sent,
                        electronic: row.electronic,
                        signed: row.signed,
                        published_signed_pct: row.published_signed_pct,
                        published_electronic_pct: row.published_electronic_pct,
                        pct_disagrees: row.pct_disagrees,
                        note: row.note,
                        printed: (row.total_sent, row.electronic, row.signed),
                    });
                }
                let counts = truc_seeds::status_feedback_2019()?;
                feedback = Some(ExpectedFeedback {
                    five_or_more: u64::from(counts.five_or_more),
                    three_or_four: u64::from(counts.three_or_four),
                    arrived_only_codes: counts
                        .arrived_only_codes
                        .iter()
                        .map(|code| code.parse())
                        .collect::<Result<_, _>>()?,
                    total_units: u64::from(counts.total_units),
                });
            }
        }
        if let Some(plan) = plan {
            for unit in &plan.units {
                agencies.entry(unit.code).or_insert_with(|| ExpectedAgency {
                    name: unit.name.clone(),
                    level: unit.level,
                    published_sent: None,
                    published_received: None,
                    compared: dataset != Dataset::Y2019,
                });
            }
        }
        Ok(Expected {
            dataset,
            scale: None,
            period: dataset.period(),
            totals,
            levels,
            agencies,
            names,
            focus,
            to_government_office,
            feedback,
        })
    }

    /// The figures a replay at `scale` must reproduce: every published count replaced by the
    /// plan's target for it (the plan scales each column by largest remainder), blanks kept
    /// blank, percentages and the status-feedback counts (units, not documents) as published.
    /// With no scale or `1/1` this is [`Expected::published`].
    pub fn for_plan(plan: &Plan, scale: Option<(u64, u64)>) -> Result<Expected, PlanError> {
        let dataset: Dataset = plan.dataset.parse().map_err(PlanError::Input)?;
        let mut expected = Expected::published(dataset, Some(plan))?;
        let Some((numerator, denominator)) = scale.filter(|(n, d)| n != d) else {
            return Ok(expected);
        };
        expected.scale = Some((numerator, denominator));
        expected.totals = plan.units.iter().fold((0, 0), |(sent, received), unit| {
            (sent + unit.sent, received + unit.received)
        });
        if expected.levels.is_some() {
            let mut levels = [(0, 0); 3];
            for unit in &plan.units {
                if let Some(level) = levels.get_mut(usize::from(unit.level).wrapping_sub(1)) {
                    level.0 += unit.sent;
                    level.1 += unit.received;
                }
            }
            expected.levels = Some(levels);
        }
        for unit in &plan.units {
            if let Some(agency) = expected.agencies.get_mut(&unit.code) {
                if agency.compared {
                    agency.published_sent = agency.published_sent.map(|_| unit.sent);
                    agency.published_received = agency.published_received.map(|_| unit.received);
                }
            }
        }
        if !expected.to_government_office.is_empty() {
            // The plan pins exactly the scaled electronic and signed counts on the office, and
            // nothing else reaches it, so its documents are the scaled table.
            let mut to_office: BTreeMap<AgencyCode, (u64, u64)> = BTreeMap::new();
            for document in &plan.documents {
                if document.recipients.contains(&expected.focus) {
                    let entry = to_office.entry(document.sender).or_default();
                    entry.0 += 1;
                    entry.1 += u64::from(document.document_signed);
                }
            }
            for row in &mut expected.to_government_office {
                let (electronic, signed) = to_office.get(&row.code).copied().unwrap_or((0, 0));
                row.electronic = electronic;
                row.signed = signed;
                row.total_sent = scale_half_up(row.total_sent, numerator, denominator);
            }
        }
        Ok(expected)
    }

    /// "scaled 1/100", or empty.
    pub fn scale_label(&self) -> String {
        match self.scale {
            Some((numerator, denominator)) => format!("scaled {numerator}/{denominator}"),
            None => String::new(),
        }
    }
}

/// `value × n / d`, rounded half up: only for figures the hub never sees (paper totals).
fn scale_half_up(value: u64, numerator: u64, denominator: u64) -> u64 {
    ((2 * u128::from(value) * u128::from(numerator) + u128::from(denominator))
        / (2 * u128::from(denominator))) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_2019_figures_are_the_seed_tables() {
        let expected = Expected::published(Dataset::Y2019, None).unwrap();
        assert_eq!(expected.totals, (163_107, 488_165));
        assert_eq!(
            expected.levels,
            Some([(116_630, 343_547), (44_889, 143_697), (1_588, 921)])
        );
        assert_eq!(expected.to_government_office.len(), 94);
        let feedback = expected.feedback.unwrap();
        assert_eq!((feedback.five_or_more, feedback.three_or_four), (84, 10));
        assert_eq!(feedback.arrived_only_codes.len(), 1);
    }

    #[test]
    fn published_2021_totals_are_the_row_sums_and_blanks_stay_blank() {
        let expected = Expected::published(Dataset::Y2021, None).unwrap();
        assert_eq!(expected.totals, (1_274_485, 4_627_000));
        assert_eq!(expected.agencies.len(), 104);
        let blanks = expected
            .agencies
            .values()
            .filter(|agency| agency.published_sent.is_none())
            .count();
        assert_eq!(blanks, 3);
    }

    #[test]
    fn scales_parse_and_refuse_nonsense() {
        assert_eq!(parse_scale("1/100"), Ok((1, 100)));
        assert!(parse_scale("100").is_err());
        assert!(parse_scale("0/5").is_err());
        assert!(parse_scale("3/2").is_err());
    }
}

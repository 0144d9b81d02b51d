//! The published datasets as plans: units and targets taken from the seed tables.
//!
//! 2021 and 2022 give exact per-agency counts (seed 001, Phụ lục 6, III). 2019 gives only
//! per-level totals (seed 002, III.1), the documents each body sent to the Government Office
//! (Phụ lục V) and the status-feedback counts (III.2), so its unit set and per-unit targets are
//! derived here; see [`plan_2019`].

use std::collections::{BTreeMap, BTreeSet};

use truc_domain::{AgencyCode, DocumentDate, SplitMix64};
use truc_seeds::ConnectionMode;

use super::apportion::{apportion, apportion_at_least_one, scale_column};
use super::{build, Constraints, FeedbackProfile, Pin, Plan, PlanError, Signing, Unit};

/// The Government Office, recipient of every document of Phụ lục V.
pub const GOVERNMENT_OFFICE: &str = "000.00.00.G22";
/// Lào Cai and the Ministry of Information and Communications: the two bodies whose units
/// exchanged documents at commune level in 2019 (seed 002, III.1 and its list IV).
pub const COMMUNE_PARENTS_2019: [&str; 2] = ["000.00.00.H37", "000.00.00.G14"];
/// "About 1,200 departments and districts connected through LGSPs" (seed 002, III.1).
pub const LEVEL2_UNITS_2019: u64 = 1_200;
/// "10 units of the Ministry of Information and Communications and Lào Cai" exchanged
/// documents at commune level (seed 002, III.1); the report gives no split, so five each.
pub const LEVEL3_UNITS_2019: u64 = 10;
/// The four bodies with no plan yet to upgrade their document software (seed 002, III.2):
/// the likeliest among the ten that reported only three or four statuses.
pub const NOT_UPGRADED_2019: [&str; 4] = [
    "000.00.00.G20",
    "000.00.00.G29",
    "000.00.00.G27",
    "000.00.00.G26",
];

/// Fewest level-2 units placed under one LGSP body, so every LGSP relays for several.
const LEVEL2_PER_BODY_MIN: u64 = 8;
/// Fixed key for the 2019 directory and targets: they are the same for every replay seed, so
/// reports from different seeds compare the same units.
const DIRECTORY_KEY_2019: u64 = 20_190_312;

fn date(year: i32, month: u8, day: u8) -> Result<DocumentDate, PlanError> {
    DocumentDate::from_ymd(year, month, day)
        .ok_or_else(|| PlanError::Input(format!("{year}-{month}-{day} is not a date")))
}

fn check_scale(scale: Option<(u64, u64)>) -> Result<(u64, u64), PlanError> {
    match scale {
        None => Ok((1, 1)),
        Some((_, 0)) => Err(PlanError::Input("scale denominator is zero".into())),
        Some(pair) => Ok(pair),
    }
}

/// Per-agency volumes for 2021 (1 January to 31 December): the 104 bodies with their exact
/// received and sent counts; a blank cell is 0 (the body neither sends nor receives).
/// `scale` multiplies every count (see `scale_column`: largest remainder per column).
pub fn plan_2021(seed: u64, scale: Option<(u64, u64)>) -> Result<Plan, PlanError> {
    plan_volumes(2021, (date(2021, 1, 1)?, date(2021, 12, 31)?), seed, scale)
}

/// Per-agency volumes for 2022 to 28 July (the table's own cut-off), as [`plan_2021`].
pub fn plan_2022(seed: u64, scale: Option<(u64, u64)>) -> Result<Plan, PlanError> {
    plan_volumes(2022, (date(2022, 1, 1)?, date(2022, 7, 28)?), seed, scale)
}

fn plan_volumes(
    year: i32,
    period: (DocumentDate, DocumentDate),
    seed: u64,
    scale: Option<(u64, u64)>,
) -> Result<Plan, PlanError> {
    let (numerator, denominator) = check_scale(scale)?;
    let names = directory_names()?;
    let rows = truc_seeds::volumes_2021_2022()?;
    let (received, sent): (Vec<u64>, Vec<u64>) = rows
        .iter()
        .map(|row| match year {
            2021 => (row.received_2021.unwrap_or(0), row.sent_2021.unwrap_or(0)),
            _ => (row.received_2022.unwrap_or(0), row.sent_2022.unwrap_or(0)),
        })
        .unzip();
    let received = scale_column(&received, numerator, denominator);
    let sent = scale_column(&sent, numerator, denominator);
    let mut units = Vec::with_capacity(rows.len());
    for (position, row) in rows.iter().enumerate() {
        let code: AgencyCode = row.code.parse()?;
        units.push(Unit {
            code,
            name: names
                .get(&code)
                .cloned()
                .unwrap_or_else(|| row.name.clone()),
            level: code.level(),
            sent: sent[position],
            received: received[position],
        });
    }
    build(
        &format!("{year}"),
        period,
        units,
        seed,
        &Constraints::default(),
    )
}

/// Directory names by code.
fn directory_names() -> Result<BTreeMap<AgencyCode, String>, PlanError> {
    truc_seeds::agencies()?
        .into_iter()
        .map(|row| Ok((row.code.parse()?, row.name)))
        .collect()
}

/// Per-level targets of seed 002, III.1: (sent, received) for levels 1, 2, 3.
fn level_totals(numerator: u64, denominator: u64) -> Result<[(u64, u64); 3], PlanError> {
    let rows = truc_seeds::levels_2019()?;
    let mut totals = [(0u64, 0u64); 3];
    for level in 1..=3u8 {
        let row = rows
            .iter()
            .find(|row| row.level == Some(level))
            .ok_or_else(|| PlanError::Data(format!("2019_levels.csv has no level {level}")))?;
        totals[usize::from(level - 1)] = (row.sent, row.received);
    }
    let sent = scale_column(&totals.map(|(sent, _)| sent), numerator, denominator);
    let received = scale_column(
        &totals.map(|(_, received)| received),
        numerator,
        denominator,
    );
    Ok([0, 1, 2].map(|level| (sent[level], received[level])))
}

/// 2019-03-12 to 2019-09-30 (seed 002).
///
/// Units:
/// * level 1: the 95 connected bodies. The two connection lists name only 87 distinct bodies
///   (eight provinces appear in both), so the 95 are those 87, the bodies of Phụ lục V (which
///   lists every unit but the Government Office), and the Government Office. Every row of
///   Phụ lục V is therefore a level-1 unit; if the union were not the 95 of III.2 the plan
///   is refused (`Data`).
/// * level 2: 1,200 departments and districts, `parent.child(n)`, spread over the 60 bodies of
///   the LGSP list (at least eight each), since the report puts them behind LGSPs.
/// * level 3: ten communes, five under Lào Cai and five under the Ministry of Information and
///   Communications (`child(1)` of their first five level-2 units).
///
/// Targets: per-level totals are exact. Level 1: each Phụ lục V body sends at least its
/// `electronic` documents to the Government Office; the rest of the level's sent documents,
/// and its received ones apart from the Government Office's, follow each body's 2021 volume
/// (seed 001) with ±10 % noise. The Government Office receives exactly the Phụ lục V documents
/// (Σ electronic = 25,589): it is a pinned recipient, so no other document reaches it and the
/// table holds exactly. Levels 2 and 3 get skewed random shares. Every unit of a level gets at
/// least one of each where the level total allows.
///
/// Signatures: of each body's documents to the Government Office exactly `signed` carry their
/// own signature; its other documents (and those of its level-2 and level-3 units) are signed
/// at that body's published rate, signed / electronic; bodies without a rate (the Government
/// Office; 0/0 for the Academy) use the overall rate, Σ signed / Σ electronic.
///
/// Feedback: seed 002, III.2 counts over the 95 level-1 bodies: the Party Central Office only
/// arrives, ten report three or four statuses (the four bodies without upgraded software, then
/// six drawn with a fixed key), the other 84 report five. Level-2 and level-3 units are not
/// among the 95 and report everything. Every level-1 body receives at least one document, so
/// its profile is observable.
pub fn plan_2019(seed: u64, scale: Option<(u64, u64)>) -> Result<Plan, PlanError> {
    let (numerator, denominator) = check_scale(scale)?;
    let levels = truc_seeds::levels_2019()?;
    let total_row = levels
        .iter()
        .find(|row| row.level.is_none())
        .ok_or_else(|| PlanError::Data("2019_levels.csv has no total row".into()))?;
    let period = (
        DocumentDate::parse_iso(&total_row.period_start)
            .map_err(|error| PlanError::Data(error.to_string()))?,
        DocumentDate::parse_iso(&total_row.period_end)
            .map_err(|error| PlanError::Data(error.to_string()))?,
    );
    let totals = level_totals(numerator, denominator)?;
    let names = directory_names()?;
    let name_of = |code: &AgencyCode| names.get(code).cloned().unwrap_or_else(|| code.to_string());
    let office: AgencyCode = GOVERNMENT_OFFICE.parse()?;
    let mut directory_rng = SplitMix64::new(DIRECTORY_KEY_2019);

    // Level 1.
    let connections = truc_seeds::connections_2019()?;
    let office_rows = truc_seeds::to_government_office_2019()?;
    let feedback_counts = truc_seeds::status_feedback_2019()?;
    let mut level1: BTreeSet<AgencyCode> = BTreeSet::new();
    for row in &connections {
        level1.insert(row.code.parse()?);
    }
    for row in &office_rows {
        level1.insert(row.code.parse()?);
    }
    level1.insert(office);
    if level1.len() != feedback_counts.total_units as usize {
        return Err(PlanError::Data(format!(
            "{} level-1 bodies from the lists, Phụ lục V and the Government Office, but III.2 \
             counts {}",
            level1.len(),
            feedback_counts.total_units
        )));
    }
    let level1: Vec<AgencyCode> = level1.into_iter().collect();

    let electronic = scale_column(
        &office_rows
            .iter()
            .map(|row| row.electronic)
            .collect::<Vec<_>>(),
        numerator,
        denominator,
    );
    let signed = scale_column(
        &office_rows.iter().map(|row| row.signed).collect::<Vec<_>>(),
        numerator,
        denominator,
    );
    let mut pins = Vec::new();
    let mut pinned_sent: BTreeMap<AgencyCode, u64> = BTreeMap::new();
    let mut per_mille_by_root = BTreeMap::new();
    for (position, row) in office_rows.iter().enumerate() {
        let sender: AgencyCode = row.code.parse()?;
        let documents = electronic[position];
        // Scaling rounds the two columns separately; a row may not sign more than it sends.
        let signed = signed[position].min(documents);
        if documents > 0 {
            pins.push(Pin {
                sender,
                recipient: office,
                documents,
                signed,
            });
        }
        pinned_sent.insert(sender, documents);
        if let Some(per_mille) = (row.signed * 1000).checked_div(row.electronic) {
            per_mille_by_root.insert(sender, per_mille as u16);
        }
    }
    let office_received: u64 = pins.iter().map(|pin| pin.documents).sum();
    let all_electronic: u64 = office_rows.iter().map(|row| row.electronic).sum();
    let all_signed: u64 = office_rows.iter().map(|row| row.signed).sum();
    let per_mille_default = (all_signed * 1000)
        .checked_div(all_electronic)
        .unwrap_or(1000) as u16;

    let volumes: BTreeMap<AgencyCode, (u64, u64)> = truc_seeds::volumes_2021_2022()?
        .into_iter()
        .map(|row| {
            Ok((
                row.code.parse()?,
                (row.sent_2021.unwrap_or(0), row.received_2021.unwrap_or(0)),
            ))
        })
        .collect::<Result<_, PlanError>>()?;
    // A body missing from the 2021 table weighs like a small one rather than nothing.
    let volume = |code: &AgencyCode| volumes.get(code).copied().unwrap_or((1_000, 3_000));
    let noise = |rng: &mut SplitMix64| 90 + rng.below(21);

    let (level1_sent, level1_received) = totals[0];
    let pinned_total: u64 = pinned_sent.values().sum();
    if level1_sent < pinned_total || level1_received < office_received {
        return Err(PlanError::Infeasible {
            unit: "level 1".into(),
            reason: format!(
                "the Government Office table needs {pinned_total} sent and {office_received} \
                 received, the level has {level1_sent} / {level1_received}"
            ),
        });
    }
    let base_sent: Vec<u64> = level1
        .iter()
        .map(|code| pinned_sent.get(code).copied().unwrap_or(0))
        .collect();
    let sent_weights: Vec<u64> = level1
        .iter()
        .map(|code| volume(code).0 * noise(&mut directory_rng))
        .collect();
    let level1_sent_targets =
        top_up_at_least_one(&base_sent, level1_sent - pinned_total, &sent_weights);
    let others: Vec<usize> = (0..level1.len())
        .filter(|&position| level1[position] != office)
        .collect();
    let received_weights: Vec<u64> = others
        .iter()
        .map(|&position| volume(&level1[position]).1 * noise(&mut directory_rng))
        .collect();
    let others_received =
        apportion_at_least_one(level1_received - office_received, &received_weights);
    let mut level1_received_targets = vec![0u64; level1.len()];
    for (&position, &received) in others.iter().zip(&others_received) {
        level1_received_targets[position] = received;
    }
    let office_position = level1
        .iter()
        .position(|code| *code == office)
        .ok_or_else(|| PlanError::Internal("the Government Office left level 1".into()))?;
    level1_received_targets[office_position] = office_received;

    let mut units: Vec<Unit> = level1
        .iter()
        .enumerate()
        .map(|(position, code)| Unit {
            code: *code,
            name: name_of(code),
            level: 1,
            sent: level1_sent_targets[position],
            received: level1_received_targets[position],
        })
        .collect();
    if let Some(unit) = units.iter().find(|unit| unit.received == 0) {
        return Err(PlanError::Infeasible {
            unit: format!("{} ({})", unit.code, unit.name),
            reason: "every connected body must receive a document for its status feedback to \
                     be seen, and the scaled level-1 total leaves it none"
                .into(),
        });
    }

    // Level 2.
    let lgsp: BTreeSet<AgencyCode> = connections
        .iter()
        .filter(|row| row.mode == ConnectionMode::Lgsp)
        .map(|row| row.code.parse())
        .collect::<Result<_, _>>()?;
    let lgsp: Vec<AgencyCode> = lgsp.into_iter().collect();
    let spread_weights: Vec<u64> = lgsp.iter().map(|_| 1 + directory_rng.below(30)).collect();
    let spare = LEVEL2_UNITS_2019
        .checked_sub(LEVEL2_PER_BODY_MIN * lgsp.len() as u64)
        .ok_or_else(|| PlanError::Data(format!("{} LGSP bodies", lgsp.len())))?;
    let per_body = apportion(spare, &spread_weights);
    let mut level2 = Vec::new();
    for (parent, extra) in lgsp.iter().zip(per_body) {
        for number in 1..=LEVEL2_PER_BODY_MIN + extra {
            let code = u16::try_from(number)
                .ok()
                .and_then(|number| parent.child(number))
                .ok_or_else(|| PlanError::Data(format!("no child {number} of {parent}")))?;
            level2.push((
                code,
                format!("Đơn vị cấp 2 số {number:02} thuộc {}", name_of(parent)),
            ));
        }
    }
    units.extend(skewed_level(2, level2, totals[1], &mut directory_rng));

    // Level 3.
    let per_parent = LEVEL3_UNITS_2019 / COMMUNE_PARENTS_2019.len() as u64;
    let mut level3 = Vec::new();
    for parent in COMMUNE_PARENTS_2019 {
        let parent: AgencyCode = parent.parse()?;
        for number in 1..=per_parent as u16 {
            let department = parent
                .child(number)
                .ok_or_else(|| PlanError::Data(format!("no child {number} of {parent}")))?;
            if !units.iter().any(|unit| unit.code == department) {
                return Err(PlanError::Data(format!(
                    "{parent} has no level-2 unit {department} to hold a commune"
                )));
            }
            let commune = department
                .child(1)
                .ok_or_else(|| PlanError::Data(format!("no commune under {department}")))?;
            level3.push((commune, format!("Đơn vị cấp xã thuộc {}", name_of(&parent))));
        }
    }
    units.extend(skewed_level(3, level3, totals[2], &mut directory_rng));

    let constraints = Constraints {
        pins,
        signing: Signing {
            per_mille_default,
            per_mille_by_root,
        },
        ..Constraints::default()
    };
    let mut plan = build("2019", period, units, seed, &constraints)?;
    plan.feedback = feedback_2019(&level1, &feedback_counts, &plan.units, &mut directory_rng)?;
    Ok(plan)
}

/// `base` plus `spare` split by weight, giving first one to every unit still at zero when the
/// spare allows.
fn top_up_at_least_one(base: &[u64], spare: u64, weights: &[u64]) -> Vec<u64> {
    let empty: Vec<usize> = (0..base.len()).filter(|&i| base[i] == 0).collect();
    let mut targets = base.to_vec();
    let mut spare = spare;
    if spare >= empty.len() as u64 {
        for &i in &empty {
            targets[i] = 1;
        }
        spare -= empty.len() as u64;
    }
    for (target, part) in targets.iter_mut().zip(apportion(spare, weights)) {
        *target += part;
    }
    targets
}

/// Units of one level with skewed shares of its totals: a size shared by both directions (the
/// product of two uniform draws, so a few units are much larger) times per-direction noise.
fn skewed_level(
    level: u8,
    codes: Vec<(AgencyCode, String)>,
    (sent, received): (u64, u64),
    rng: &mut SplitMix64,
) -> Vec<Unit> {
    let mut sent_weights = Vec::with_capacity(codes.len());
    let mut received_weights = Vec::with_capacity(codes.len());
    for _ in &codes {
        let size = (1 + rng.below(20)) * (1 + rng.below(20));
        sent_weights.push(size * (50 + rng.below(100)));
        received_weights.push(size * (50 + rng.below(100)));
    }
    let sent = apportion_at_least_one(sent, &sent_weights);
    let received = apportion_at_least_one(received, &received_weights);
    codes
        .into_iter()
        .enumerate()
        .map(|(position, (code, name))| Unit {
            code,
            name,
            level,
            sent: sent[position],
            received: received[position],
        })
        .collect()
}

/// Seed 002, III.2 as profiles: the named arrived-only body, the not-upgraded bodies first among
/// the partial ones, the rest drawn; everyone else (and every unit below level 1) full.
fn feedback_2019(
    level1: &[AgencyCode],
    counts: &truc_seeds::StatusFeedback,
    units: &[Unit],
    rng: &mut SplitMix64,
) -> Result<BTreeMap<AgencyCode, FeedbackProfile>, PlanError> {
    let mut feedback: BTreeMap<AgencyCode, FeedbackProfile> = units
        .iter()
        .map(|unit| (unit.code, FeedbackProfile::Full))
        .collect();
    let arrived_only: Vec<AgencyCode> = counts
        .arrived_only_codes
        .iter()
        .map(|code| code.parse())
        .collect::<Result<_, _>>()?;
    let expected =
        counts.five_or_more as usize + counts.three_or_four as usize + arrived_only.len();
    if expected != level1.len() {
        return Err(PlanError::Data(format!(
            "III.2 counts {expected} bodies, level 1 has {}",
            level1.len()
        )));
    }
    for code in &arrived_only {
        if !level1.contains(code) {
            return Err(PlanError::Data(format!(
                "{code} reports only arrived but is not connected"
            )));
        }
        feedback.insert(*code, FeedbackProfile::ArrivedOnly);
    }
    let office: AgencyCode = GOVERNMENT_OFFICE.parse()?;
    let mut partial: Vec<AgencyCode> = Vec::new();
    for code in NOT_UPGRADED_2019 {
        let code: AgencyCode = code.parse()?;
        if level1.contains(&code) && partial.len() < counts.three_or_four as usize {
            partial.push(code);
        }
    }
    let mut candidates: Vec<AgencyCode> = level1
        .iter()
        .copied()
        .filter(|code| *code != office && !arrived_only.contains(code) && !partial.contains(code))
        .collect();
    rng.shuffle(&mut candidates);
    let missing = counts.three_or_four as usize - partial.len();
    partial.extend(candidates.into_iter().take(missing));
    for code in partial {
        feedback.insert(code, FeedbackProfile::Partial);
    }
    Ok(feedback)
}

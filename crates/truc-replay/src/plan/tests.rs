//! Tests of the construction on random tables (properties) and of the dataset plans.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use truc_domain::{AgencyCode, DocumentDate, SplitMix64};

use super::apportion::scale_column;
use super::datasets::GOVERNMENT_OFFICE;
use super::*;

fn unit_code(position: usize) -> AgencyCode {
    format!("000.00.00.H{:02}", position + 1).parse().unwrap()
}

fn march_2021() -> (DocumentDate, DocumentDate) {
    (
        DocumentDate::from_ymd(2021, 3, 1).unwrap(),
        DocumentDate::from_ymd(2021, 3, 31).unwrap(),
    )
}

#[derive(Debug, Clone)]
struct Table {
    units: Vec<Unit>,
    pins: Vec<Pin>,
}

/// The necessary conditions of `build`'s doc comment, written out again independently: `Ok`,
/// or every name a refusal may give (unit descriptions, or `(all units)`).
fn necessary_conditions(table: &Table) -> Result<(), BTreeSet<String>> {
    let units = &table.units;
    let documents: u64 = units.iter().map(|unit| unit.sent).sum();
    let deliveries: u64 = units.iter().map(|unit| unit.received).sum();
    let mut culprits = BTreeSet::new();
    let name = |unit: &Unit| format!("{} ({})", unit.code, unit.name);
    for unit in units {
        if unit.received + unit.sent > documents {
            culprits.insert(name(unit));
        }
    }
    if deliveries < documents {
        culprits.insert("(all units)".to_string());
    }
    let mut pinned_from: BTreeMap<AgencyCode, u64> = BTreeMap::new();
    let mut pinned_to: BTreeMap<AgencyCode, u64> = BTreeMap::new();
    for pin in &table.pins {
        *pinned_from.entry(pin.sender).or_default() += pin.documents;
        *pinned_to.entry(pin.recipient).or_default() += pin.documents;
    }
    for unit in units {
        let from = pinned_from.get(&unit.code).copied().unwrap_or(0);
        if from > unit.sent {
            culprits.insert(name(unit));
        }
        if let Some(&to) = pinned_to.get(&unit.code) {
            if to != unit.received {
                culprits.insert(name(unit));
            }
        }
    }
    if culprits.is_empty() {
        let free_deliveries: u64 = units
            .iter()
            .filter(|unit| !pinned_to.contains_key(&unit.code))
            .map(|unit| unit.received)
            .sum();
        for unit in units {
            let free_sent = unit.sent - pinned_from.get(&unit.code).copied().unwrap_or(0);
            let free_received = if pinned_to.contains_key(&unit.code) {
                0
            } else {
                unit.received
            };
            if free_sent + free_received > free_deliveries {
                culprits.insert(name(unit));
            }
        }
    }
    if culprits.is_empty() {
        Ok(())
    } else {
        Err(culprits)
    }
}

/// A random table, feasible by construction unless `perturbation` breaks it on purpose
/// (though pins may break it too); the oracle above decides.
fn make_table(
    sent: Vec<u64>,
    shares: Vec<u64>,
    kinds: Vec<u8>,
    pin_mode: u8,
    perturbation: u8,
    seed: u64,
) -> Table {
    let count = sent.len();
    let mut rng = SplitMix64::new(seed);
    let documents: u64 = sent.iter().sum();
    let mut received: Vec<u64> = (0..count)
        .map(|j| {
            let room = documents - sent[j];
            match kinds[j] {
                0 => 0,
                1 => room,
                _ => room * shares[j] / 100,
            }
        })
        .collect();
    let top_up = |received: &mut Vec<u64>, skip: Option<usize>| {
        let mut missing = documents.saturating_sub(received.iter().sum());
        for j in 0..count {
            if Some(j) == skip {
                continue;
            }
            let room = documents - sent[j] - received[j];
            let given = room.min(missing);
            received[j] += given;
            missing -= given;
        }
    };
    top_up(&mut received, None);
    let mut pins = Vec::new();
    if pin_mode >= 2 && count >= 3 {
        let office = count - 1;
        received[office] = 0;
        for (sender, &sent_count) in sent.iter().enumerate().take(count - 1) {
            let documents_pinned = rng.below(sent_count + 1);
            if documents_pinned > 0 && rng.below(3) > 0 {
                received[office] += documents_pinned;
                pins.push(Pin {
                    sender: unit_code(sender),
                    recipient: unit_code(office),
                    documents: documents_pinned,
                    signed: rng.below(documents_pinned + 1),
                });
            }
        }
        top_up(&mut received, Some(office));
    }
    match perturbation {
        3 if documents > 0 => {
            let j = rng.below(count as u64) as usize;
            received[j] = documents - sent[j] + 1 + rng.below(3);
        }
        4 => received.iter_mut().for_each(|value| *value /= 4),
        5 if !pins.is_empty() => received[count - 1] += 1,
        _ => {}
    }
    let units = (0..count)
        .map(|j| Unit {
            code: unit_code(j),
            name: format!("unit {j}"),
            level: 1,
            sent: sent[j],
            received: received[j],
        })
        .collect();
    Table { units, pins }
}

fn table_strategy(units_max: usize, sent_max: u64) -> impl Strategy<Value = Table> {
    (2..=units_max)
        .prop_flat_map(move |count| {
            (
                proptest::collection::vec(0..sent_max, count),
                proptest::collection::vec(0u64..=100, count),
                proptest::collection::vec(0u8..4, count),
                0u8..4,
                0u8..8,
                any::<u64>(),
            )
        })
        .prop_map(|(sent, shares, kinds, pin_mode, perturbation, seed)| {
            make_table(sent, shares, kinds, pin_mode, perturbation, seed)
        })
}

fn constraints_for(table: &Table, recipients_max: u32) -> Constraints {
    Constraints {
        recipients_max,
        pins: table.pins.clone(),
        ..Constraints::default()
    }
}

/// Everything a plan from `table` must satisfy, checked without `Plan::verify` as well as with.
fn check_plan(table: &Table, plan: &Plan, recipients_max: u32) {
    plan.verify(recipients_max).unwrap();
    let targets: BTreeMap<AgencyCode, (u64, u64)> = table
        .units
        .iter()
        .map(|unit| (unit.code, (unit.sent, unit.received)))
        .collect();
    let mut counts: BTreeMap<AgencyCode, (u64, u64)> =
        targets.keys().map(|code| (*code, (0, 0))).collect();
    for (position, document) in plan.documents.iter().enumerate() {
        assert_eq!(document.seq, position as u64);
        counts.get_mut(&document.sender).unwrap().0 += 1;
        let distinct: BTreeSet<_> = document.recipients.iter().collect();
        assert_eq!(
            distinct.len(),
            document.recipients.len(),
            "duplicate recipient"
        );
        assert!(!distinct.is_empty());
        assert!(!distinct.contains(&document.sender), "self-addressed");
        assert!(document.recipients.len() <= recipients_max as usize);
        assert!(document.date >= plan.period.0 && document.date <= plan.period.1);
        assert!(document.date.weekday_number() <= 5);
        for recipient in &document.recipients {
            counts.get_mut(recipient).unwrap().1 += 1;
        }
    }
    assert_eq!(counts, targets);
    for pin in &table.pins {
        let pinned: Vec<&PlannedDocument> = plan
            .documents
            .iter()
            .filter(|document| {
                document.sender == pin.sender && document.recipients.contains(&pin.recipient)
            })
            .collect();
        assert_eq!(pinned.len() as u64, pin.documents);
        let signed = pinned
            .iter()
            .filter(|document| document.document_signed)
            .count();
        assert_eq!(signed as u64, pin.signed);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The conditions are necessary and sufficient: a plan comes out exactly when they hold,
    /// with exact counts; otherwise the refusal names a unit that breaks one.
    #[test]
    fn builds_exactly_when_the_necessary_conditions_hold(
        table in table_strategy(9, 30),
        seed in any::<u64>(),
    ) {
        let outcome = build("t", march_2021(), table.units.clone(), seed, &constraints_for(&table, 1000));
        match (necessary_conditions(&table), outcome) {
            (Ok(()), Ok(plan)) => check_plan(&table, &plan, 1000),
            (Ok(()), Err(error)) => prop_assert!(false, "feasible table refused: {error}"),
            (Err(culprits), Ok(_)) => prop_assert!(false, "infeasible table planned: {culprits:?}"),
            (Err(culprits), Err(PlanError::Infeasible { unit, reason })) => {
                prop_assert!(culprits.contains(&unit), "{unit} named ({reason}), expected one of {culprits:?}");
            }
            (Err(_), Err(error)) => prop_assert!(false, "wrong refusal: {error}"),
        }
    }

    /// At the guaranteed margin the cap holds; below the average it is refused.
    #[test]
    fn recipients_max_is_respected_or_refused(
        table in table_strategy(12, 20),
        seed in any::<u64>(),
    ) {
        let table = Table { pins: Vec::new(), ..table };
        prop_assume!(necessary_conditions(&table).is_ok());
        let documents: u64 = table.units.iter().map(|unit| unit.sent).sum();
        let deliveries: u64 = table.units.iter().map(|unit| unit.received).sum();
        prop_assume!(documents > 0);
        let average = deliveries.div_ceil(documents) as u32;
        let recipients_max = average + 2;
        let plan = build("t", march_2021(), table.units.clone(), seed, &constraints_for(&table, recipients_max)).unwrap();
        check_plan(&table, &plan, recipients_max);
        if average > 1 {
            let refused = build("t", march_2021(), table.units.clone(), seed, &constraints_for(&table, average - 1));
            prop_assert!(matches!(refused, Err(PlanError::RecipientsMax { .. })), "{refused:?}");
        }
    }
}

/// The generator must produce all the cases the properties are about, or they prove little.
#[test]
fn table_generator_covers_feasible_infeasible_pinned_and_tight_tables() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = table_strategy(9, 30);
    let (mut feasible, mut infeasible, mut pinned, mut tight) = (0, 0, 0, 0);
    for _ in 0..500 {
        let table = strategy.new_tree(&mut runner).unwrap().current();
        let documents: u64 = table.units.iter().map(|unit| unit.sent).sum();
        match necessary_conditions(&table) {
            Ok(()) => {
                feasible += 1;
                pinned += usize::from(!table.pins.is_empty());
                tight += usize::from(
                    documents > 0
                        && table
                            .units
                            .iter()
                            .any(|unit| unit.sent + unit.received == documents),
                );
            }
            Err(_) => infeasible += 1,
        }
    }
    assert!(
        feasible > 200 && infeasible > 50,
        "{feasible} feasible, {infeasible} infeasible"
    );
    assert!(pinned > 50 && tight > 50, "{pinned} pinned, {tight} tight");
}

#[test]
fn refusals_name_the_unit_and_the_numbers() {
    let units = vec![
        Unit {
            code: unit_code(0),
            name: "a".into(),
            level: 1,
            sent: 5,
            received: 3,
        },
        Unit {
            code: unit_code(1),
            name: "b".into(),
            level: 1,
            sent: 5,
            received: 6,
        },
    ];
    let error = build("t", march_2021(), units, 1, &Constraints::default()).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("000.00.00.H02 (b)"), "{text}");
    assert!(text.contains("6 > 10 − 5 = 5"), "{text}");

    let units = vec![
        Unit {
            code: unit_code(0),
            name: "a".into(),
            level: 1,
            sent: 3,
            received: 1,
        },
        Unit {
            code: unit_code(1),
            name: "b".into(),
            level: 1,
            sent: 2,
            received: 1,
        },
    ];
    let text = build("t", march_2021(), units, 1, &Constraints::default())
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("(all units)") && text.contains("2 < 5"),
        "{text}"
    );
}

#[test]
fn same_seed_same_plan_other_seed_other_plan() {
    let table = make_table(
        vec![20, 7, 0, 13, 30],
        vec![50, 10, 90, 30, 70],
        vec![2, 1, 2, 3, 2],
        2,
        0,
        9,
    );
    assert!(necessary_conditions(&table).is_ok());
    let constraints = constraints_for(&table, 1000);
    let first = build("t", march_2021(), table.units.clone(), 42, &constraints).unwrap();
    let second = build("t", march_2021(), table.units.clone(), 42, &constraints).unwrap();
    assert_eq!(first, second);
    let other = build("t", march_2021(), table.units.clone(), 43, &constraints).unwrap();
    assert_ne!(first.documents, other.documents);
    check_plan(&table, &other, 1000);
}

#[test]
fn nobody_sends_nobody_receives() {
    let units = vec![
        Unit {
            code: unit_code(0),
            name: "a".into(),
            level: 1,
            sent: 0,
            received: 0,
        },
        Unit {
            code: unit_code(1),
            name: "b".into(),
            level: 1,
            sent: 0,
            received: 0,
        },
    ];
    let plan = build("t", march_2021(), units, 1, &Constraints::default()).unwrap();
    assert!(plan.documents.is_empty());
    assert_eq!(plan.totals(), (0, 0));
}

#[test]
fn feedback_profiles_report_five_three_and_one_statuses() {
    assert_eq!(FeedbackProfile::Full.distinct_statuses(), 5);
    assert_eq!(FeedbackProfile::Partial.distinct_statuses(), 3);
    assert_eq!(FeedbackProfile::ArrivedOnly.distinct_statuses(), 1);
    let codes: Vec<u32> = FeedbackProfile::Full
        .moves()
        .iter()
        .map(|status| status.code())
        .collect();
    assert_eq!(codes, vec![3, 4, 5, 6]);
}

/// The 2019 plan against every figure it must reproduce, at `scale`.
fn check_2019(plan: &Plan, scale: (u64, u64)) {
    plan.verify(Constraints::default().recipients_max).unwrap();
    let counts = plan.counts();
    let levels = truc_seeds::levels_2019().unwrap();
    let published: Vec<(u64, u64)> = (1..=3u8)
        .map(|level| {
            let row = levels.iter().find(|row| row.level == Some(level)).unwrap();
            (row.sent, row.received)
        })
        .collect();
    let sent = scale_column(
        &published.iter().map(|pair| pair.0).collect::<Vec<_>>(),
        scale.0,
        scale.1,
    );
    let received = scale_column(
        &published.iter().map(|pair| pair.1).collect::<Vec<_>>(),
        scale.0,
        scale.1,
    );
    for level in 1..=3u8 {
        let (level_sent, level_received) = plan
            .units
            .iter()
            .filter(|unit| unit.level == level)
            .map(|unit| counts[&unit.code])
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
        let index = usize::from(level - 1);
        assert_eq!(
            (level_sent, level_received),
            (sent[index], received[index]),
            "level {level}"
        );
    }

    let office: AgencyCode = GOVERNMENT_OFFICE.parse().unwrap();
    let rows = truc_seeds::to_government_office_2019().unwrap();
    let electronic = scale_column(
        &rows.iter().map(|row| row.electronic).collect::<Vec<_>>(),
        scale.0,
        scale.1,
    );
    let signed = scale_column(
        &rows.iter().map(|row| row.signed).collect::<Vec<_>>(),
        scale.0,
        scale.1,
    );
    let mut to_office: BTreeMap<AgencyCode, (u64, u64)> = BTreeMap::new();
    for document in plan
        .documents
        .iter()
        .filter(|document| document.recipients.contains(&office))
    {
        let entry = to_office.entry(document.sender).or_default();
        entry.0 += 1;
        entry.1 += u64::from(document.document_signed);
    }
    for (position, row) in rows.iter().enumerate() {
        let code: AgencyCode = row.code.parse().unwrap();
        let expected = (
            electronic[position],
            signed[position].min(electronic[position]),
        );
        assert_eq!(
            to_office.remove(&code).unwrap_or((0, 0)),
            expected,
            "{}",
            row.code
        );
    }
    assert!(
        to_office.is_empty(),
        "documents to the Government Office from {to_office:?}"
    );

    let level1: Vec<&Unit> = plan.units.iter().filter(|unit| unit.level == 1).collect();
    assert_eq!(level1.len(), 95);
    assert_eq!(
        plan.units.iter().filter(|unit| unit.level == 2).count(),
        1200
    );
    assert_eq!(plan.units.iter().filter(|unit| unit.level == 3).count(), 10);
    let mut by_statuses: BTreeMap<usize, usize> = BTreeMap::new();
    for unit in &level1 {
        *by_statuses
            .entry(plan.moves_for(&unit.code).len() + 1)
            .or_default() += 1;
        assert!(counts[&unit.code].1 >= 1, "{} receives nothing", unit.code);
    }
    assert_eq!(by_statuses, BTreeMap::from([(1, 1), (3, 10), (5, 84)]));
    let party: AgencyCode = "000.00.00.G33".parse().unwrap();
    assert!(plan.moves_for(&party).is_empty());
    for unit in plan.units.iter().filter(|unit| unit.level > 1) {
        assert_eq!(plan.feedback[&unit.code], FeedbackProfile::Full);
        let root = unit.code.root();
        assert!(level1.iter().any(|body| body.code == root));
    }
    for unit in plan.units.iter().filter(|unit| unit.level == 3) {
        assert!(["000.00.00.H37", "000.00.00.G14"].contains(&unit.code.root().to_string().as_str()));
    }
}

#[test]
fn plan_2019_reproduces_levels_office_table_and_feedback() {
    let plan = plan_2019(2, None).unwrap();
    assert_eq!(plan.totals(), (163_107, 488_165));
    check_2019(&plan, (1, 1));
}

#[test]
fn plan_2019_scaled_stays_exact() {
    let plan = plan_2019(5, Some((1, 10))).unwrap();
    check_2019(&plan, (1, 10));
}

/// The 2021/2022 plan's counts against the table, at `scale`.
fn check_volumes(plan: &Plan, year: i32, scale: (u64, u64)) {
    plan.verify(Constraints::default().recipients_max).unwrap();
    let rows = truc_seeds::volumes_2021_2022().unwrap();
    let pick = |row: &truc_seeds::AgencyVolumeRow| match year {
        2021 => (row.sent_2021.unwrap_or(0), row.received_2021.unwrap_or(0)),
        _ => (row.sent_2022.unwrap_or(0), row.received_2022.unwrap_or(0)),
    };
    let sent = scale_column(
        &rows.iter().map(|row| pick(row).0).collect::<Vec<_>>(),
        scale.0,
        scale.1,
    );
    let received = scale_column(
        &rows.iter().map(|row| pick(row).1).collect::<Vec<_>>(),
        scale.0,
        scale.1,
    );
    let expected: BTreeMap<AgencyCode, (u64, u64)> = rows
        .iter()
        .enumerate()
        .map(|(position, row)| {
            (
                row.code.parse().unwrap(),
                (sent[position], received[position]),
            )
        })
        .collect();
    assert_eq!(plan.counts(), expected);
    let blank: AgencyCode = "000.00.00.G34".parse().unwrap();
    if year == 2021 {
        assert_eq!(plan.counts()[&blank], (0, 0));
    }
}

#[test]
fn plan_2021_and_2022_scaled_are_exact() {
    let plan = plan_2021(1, Some((1, 100))).unwrap();
    assert_eq!(plan.totals(), (12_745, 46_270));
    check_volumes(&plan, 2021, (1, 100));
    let plan = plan_2022(1, Some((1, 100))).unwrap();
    check_volumes(&plan, 2022, (1, 100));
}

#[test]
#[ignore = "full scale: 1.27 million documents; run with --release -- --ignored"]
fn plan_2021_full_scale_is_exact() {
    let plan = plan_2021(1, None).unwrap();
    assert_eq!(plan.totals(), (1_274_485, 4_627_000));
    check_volumes(&plan, 2021, (1, 1));
}

#[test]
#[ignore = "full scale: 0.89 million documents; run with --release -- --ignored"]
fn plan_2022_full_scale_is_exact() {
    let plan = plan_2022(1, None).unwrap();
    assert_eq!(plan.totals(), (888_665, 3_026_312));
    check_volumes(&plan, 2022, (1, 1));
}

//! Checks the embedded seed CSVs: they parse, agree with one another, and (when the reports
//! are beside the workspace) equal what the extractors read from the report text.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

use truc_seeds::{
    agencies, connections_2019, extract, is_well_formed_code, levels_2019, status_feedback_2019,
    status_feedback_rows_2019, to_government_office_2019, totals_2021_2022, volumes_2021_2022,
    AgencyKind, ConnectionMode, Direction, Scope, TotalOrigin, SEED_001_FILE, SEED_002_FILE,
};

fn agency_codes() -> HashSet<String> {
    agencies()
        .expect("agencies.csv parses")
        .into_iter()
        .map(|row| row.code)
        .collect()
}

#[test]
fn agency_codes_are_well_formed_unique_and_complete() {
    let rows = agencies().expect("agencies.csv parses");
    let mut seen = HashSet::new();
    for row in &rows {
        assert!(
            is_well_formed_code(&row.code),
            "malformed code {}",
            row.code
        );
        assert!(seen.insert(row.code.clone()), "duplicate code {}", row.code);
        assert_eq!(row.level, 1, "{}", row.code);
        let letter = if row.kind == AgencyKind::Central {
            "G"
        } else {
            "H"
        };
        assert!(
            row.code.starts_with(&format!("000.00.00.{letter}")),
            "{}",
            row.code
        );
        assert_eq!(
            row.name_variants
                .split("; ")
                .filter(|part| !part.is_empty())
                .count(),
            row.matched_by
                .split("; ")
                .filter(|part| !part.is_empty())
                .count(),
            "one rule per variant: {}",
            row.code
        );
    }
    let central = rows
        .iter()
        .filter(|row| row.kind == AgencyKind::Central)
        .count();
    assert_eq!((central, rows.len() - central), (41, 63));
    let named = |code: &str| {
        rows.iter()
            .find(|row| row.code == code)
            .map(|row| row.name.as_str())
    };
    assert_eq!(named("000.00.00.G22"), Some("Văn phòng Chính phủ"));
    assert_eq!(named("000.00.00.G12"), Some("Bộ Tài chính"));
    assert_eq!(named("000.00.00.G17"), Some("Bộ Xây dựng"));
    assert_eq!(named("000.00.00.G09"), Some("Bộ Nội vụ"));
    assert_eq!(named("000.00.00.H41"), Some("Tỉnh Nghệ An"));
}

#[test]
fn code_shape_is_checked() {
    let cases = [
        ("000.00.00.G22", true),
        ("000.00.18.G12", true),
        ("000.00.00.H41", true),
        ("000.00.00.g22", false),
        ("00.00.00.G22", false),
        ("000.00.00.G2", false),
        ("000.00.00.GG2", false),
        ("000.00.00.G22.", false),
        ("000-00-00-G22", false),
    ];
    for (code, expected) in cases {
        assert_eq!(is_well_formed_code(code), expected, "{code}");
    }
}

#[test]
fn every_table_refers_to_the_directory() {
    let codes = agency_codes();
    let mut referenced: Vec<(String, &str)> = Vec::new();
    referenced.extend(
        volumes_2021_2022()
            .unwrap()
            .into_iter()
            .map(|row| (row.code, "volumes")),
    );
    referenced.extend(
        to_government_office_2019()
            .unwrap()
            .into_iter()
            .map(|row| (row.code, "Phụ lục V")),
    );
    referenced.extend(
        connections_2019()
            .unwrap()
            .into_iter()
            .map(|row| (row.code, "connections")),
    );
    referenced.extend(
        status_feedback_2019()
            .unwrap()
            .arrived_only_codes
            .into_iter()
            .map(|code| (code, "III.2")),
    );
    for (code, table) in referenced {
        assert!(codes.contains(&code), "{table}: {code} not in agencies.csv");
    }
}

#[test]
fn volumes_cover_every_body_once_and_add_up_to_the_documented_totals() {
    let volumes = volumes_2021_2022().unwrap();
    let codes: BTreeSet<&str> = volumes.iter().map(|row| row.code.as_str()).collect();
    assert_eq!((volumes.len(), codes.len()), (104, 104));
    let sum = |pick: fn(&truc_seeds::AgencyVolumeRow) -> Option<u64>| -> u64 {
        volumes.iter().filter_map(pick).sum()
    };
    let received_2021 = sum(|row| row.received_2021);
    let sent_2021 = sum(|row| row.sent_2021);
    // DOMAIN.md: about 4.63 million received and 1.27 million sent in 2021.
    assert!(
        (4_625_000..4_635_000).contains(&received_2021),
        "{received_2021}"
    );
    assert!((1_265_000..1_275_000).contains(&sent_2021), "{sent_2021}");
    // Received is three to 3.6 times sent (each document counts once per recipient).
    assert!(received_2021 > 3 * sent_2021 && received_2021 < 4 * sent_2021);

    // Blank cells stay blank: three bodies did not exchange in 2021.
    let blank_2021: Vec<&str> = volumes
        .iter()
        .filter(|row| row.received_2021.is_none() || row.sent_2021.is_none())
        .map(|row| row.name.as_str())
        .collect();
    assert_eq!(
        blank_2021,
        [
            "Văn phòng Quốc hội",
            "Liên minh hợp tác xã Việt Nam",
            "Tổng liên đoàn Lao động Việt nam"
        ]
    );

    // Every computed total in the totals file is the sum of the rows it names.
    let totals = totals_2021_2022().unwrap();
    for total in totals
        .iter()
        .filter(|row| row.origin == TotalOrigin::Computed)
    {
        let in_scope = volumes.iter().filter(|row| match total.scope {
            Scope::All => true,
            Scope::Central => row.kind == AgencyKind::Central,
            Scope::Province => row.kind == AgencyKind::Province,
        });
        let expected: u64 = in_scope
            .filter_map(|row| match (total.period.as_str(), total.direction) {
                ("2021", Direction::Received) => row.received_2021,
                ("2021", Direction::Sent) => row.sent_2021,
                ("2022_to_07_28", Direction::Received) => row.received_2022,
                ("2022_to_07_28", Direction::Sent) => row.sent_2022,
                other => panic!("unexpected computed total {other:?}"),
            })
            .sum();
        assert_eq!(
            total.value, expected,
            "{} {:?} {:?}",
            total.period, total.direction, total.scope
        );
    }
    let published: Vec<(&str, u64)> = totals
        .iter()
        .filter(|row| row.origin == TotalOrigin::Published)
        .map(|row| (row.period.as_str(), row.value))
        .collect();
    assert_eq!(
        published,
        [
            ("2022_first_8_months", 3_560_000),
            ("2019_03_12_to_report", 14_200_000),
            ("monthly_average", 550_000)
        ]
    );
}

#[test]
fn levels_add_up_to_the_2019_totals() {
    let rows = levels_2019().unwrap();
    let total = rows
        .iter()
        .find(|row| row.level.is_none())
        .expect("a total row");
    assert_eq!((total.sent, total.received), (163_107, 488_165));
    let by_level: Vec<(Option<u8>, u64, u64)> = rows
        .iter()
        .filter(|row| row.level.is_some())
        .map(|row| (row.level, row.sent, row.received))
        .collect();
    assert_eq!(
        by_level,
        [
            (Some(1), 116_630, 343_547),
            (Some(2), 44_889, 143_697),
            (Some(3), 1_588, 921)
        ]
    );
    assert_eq!(
        by_level.iter().map(|(_, sent, _)| sent).sum::<u64>(),
        total.sent
    );
    assert_eq!(
        by_level
            .iter()
            .map(|(_, _, received)| received)
            .sum::<u64>(),
        total.received
    );
}

#[test]
fn status_feedback_accounts_for_all_95_units() {
    let feedback = status_feedback_2019().unwrap();
    assert_eq!(
        (
            feedback.five_or_more,
            feedback.three_or_four,
            feedback.total_units
        ),
        (84, 10, 95)
    );
    assert_eq!(feedback.arrived_only_codes, ["000.00.00.G33"]);
    let units = feedback.five_or_more
        + feedback.three_or_four
        + u32::try_from(feedback.arrived_only_codes.len()).unwrap();
    assert_eq!(units, feedback.total_units);
    assert_eq!(status_feedback_rows_2019().unwrap().len(), 3);
}

#[test]
fn connection_lists_hold_35_direct_and_60_lgsp_entries() {
    let rows = connections_2019().unwrap();
    let direct = rows
        .iter()
        .filter(|row| row.mode == ConnectionMode::Direct)
        .count();
    assert_eq!((direct, rows.len() - direct), (35, 60));
    // Eight provinces are printed in both lists; each such entry says where the other is.
    let both: BTreeSet<&str> = rows
        .iter()
        .filter(|row| !row.also_listed.is_empty())
        .map(|row| row.code.as_str())
        .collect();
    assert_eq!(both.len(), 8);
    let directory = agencies().unwrap();
    for row in directory
        .iter()
        .filter(|row| both.contains(row.code.as_str()))
    {
        assert_eq!(row.connection, None, "{} is in both lists", row.code);
    }
    let distinct: BTreeSet<&str> = rows.iter().map(|row| row.code.as_str()).collect();
    assert_eq!(distinct.len(), 87);
}

#[test]
fn government_office_rows_keep_counts_and_flag_oddities() {
    let rows = to_government_office_2019().unwrap();
    assert_eq!(rows.len(), 94);
    let codes: BTreeSet<&str> = rows.iter().map(|row| row.code.as_str()).collect();
    assert_eq!(codes.len(), 94);
    assert!(
        !codes.contains("000.00.00.G22"),
        "the Government Office does not send to itself"
    );
    assert!(
        rows.iter().all(|row| !row.pct_disagrees),
        "every printed percentage follows its counts"
    );
    let noted: Vec<&str> = rows
        .iter()
        .filter(|row| !row.note.is_empty())
        .map(|row| row.code.as_str())
        .collect();
    assert_eq!(noted, ["000.00.00.H18", "000.00.00.G27"]);
}

/// The reports, when the workspace sits beside `shared/`.
fn reports() -> Option<(String, String)> {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/seeds");
    if !folder.is_dir() {
        println!("skipped: ../shared/seeds not found");
        return None;
    }
    let read = |file: &str| std::fs::read_to_string(folder.join(file)).expect("report readable");
    Some((read(SEED_001_FILE), read(SEED_002_FILE)))
}

#[test]
fn csv_files_equal_what_the_extractors_read_from_the_reports() {
    let Some((text_001, text_002)) = reports() else {
        return;
    };
    let directory = extract::directory(&text_001).unwrap();
    assert_eq!(
        extract::agencies(&text_001, &text_002).unwrap(),
        agencies().unwrap()
    );
    assert_eq!(
        extract::volumes_2021_2022(&text_001).unwrap(),
        volumes_2021_2022().unwrap()
    );
    assert_eq!(
        extract::totals_2021_2022(&text_001).unwrap(),
        totals_2021_2022().unwrap()
    );
    assert_eq!(
        extract::levels_2019(&text_002).unwrap(),
        levels_2019().unwrap()
    );
    assert_eq!(
        extract::to_government_office_2019(&text_002, &directory).unwrap(),
        to_government_office_2019().unwrap()
    );
    assert_eq!(
        extract::status_feedback_2019(&text_002, &directory).unwrap(),
        status_feedback_rows_2019().unwrap()
    );
    assert_eq!(
        extract::connections_2019(&text_002, &directory).unwrap(),
        connections_2019().unwrap()
    );
}

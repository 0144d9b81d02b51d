//! The seed parsers never panic, whatever they are given: the CSV readers on
//! arbitrary text and on damaged copies of the real files, the code-shape
//! check, and the report extractors on arbitrary text. The real files also
//! survive a write and a read unchanged.

use proptest::prelude::*;
use proptest::sample::Index;
use serde::de::DeserializeOwned;
use serde::Serialize;
use truc_seeds::{
    csv_text, extract, is_well_formed_code, names::Directory, parse_csv, to_csv, AgencyRow,
    AgencyVolumeRow, ConnectionRow, GovernmentOfficeRow, LevelRow, StatusFeedbackRow, TotalRow,
    CSV_FILES,
};

/// Parses `text` as the rows of `file`; the only promise is no panic, and
/// an error that names the file.
fn parse_as_file(file: &str, text: &str) {
    fn parse<T: DeserializeOwned>(file: &str, text: &str) {
        if let Err(error) = parse_csv::<T>(file, text) {
            assert!(error.to_string().starts_with(file), "{error}");
        }
    }
    match file {
        "agencies.csv" => parse::<AgencyRow>(file, text),
        "2019_levels.csv" => parse::<LevelRow>(file, text),
        "2019_to_government_office.csv" => parse::<GovernmentOfficeRow>(file, text),
        "2019_status_feedback.csv" => parse::<StatusFeedbackRow>(file, text),
        "2019_connections.csv" => parse::<ConnectionRow>(file, text),
        "2021_2022_agencies.csv" => parse::<AgencyVolumeRow>(file, text),
        "2021_2022_totals.csv" => parse::<TotalRow>(file, text),
        other => panic!("no row type for {other}"),
    }
}

/// One edit of a text: a character changed, inserted or removed, a line
/// duplicated or dropped, or the text cut.
fn damage(text: &str, (at, character, kind): (Index, char, u8)) -> String {
    let mut characters: Vec<char> = text.chars().collect();
    if characters.is_empty() {
        return character.to_string();
    }
    let at = at.index(characters.len());
    match kind {
        0 => characters[at] = character,
        1 => characters.insert(at, character),
        2 => {
            characters.remove(at);
        }
        3 | 4 => {
            let text: String = characters.iter().collect();
            let mut lines: Vec<&str> = text.lines().collect();
            let line = at % lines.len().max(1);
            if !lines.is_empty() {
                if kind == 3 {
                    lines.insert(line, lines[line]);
                } else {
                    lines.remove(line);
                }
            }
            return lines.join("\n");
        }
        _ => characters.truncate(at),
    }
    characters.into_iter().collect()
}

/// Characters that matter to CSV and to the rows: quotes, separators,
/// line ends, digits, signs, and Vietnamese letters.
fn character() -> impl Strategy<Value = char> {
    prop_oneof![
        proptest::sample::select(vec![
            '"', ',', '\n', '\r', ' ', '-', '.', '0', '9', ';', 'Đ', 'ệ', '\u{0}', '\u{feff}'
        ]),
        any::<char>(),
    ]
}

fn round_trip<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(file: &str) {
    let rows: Vec<T> = parse_csv(file, csv_text(file).expect("embedded")).expect("parses");
    let written = to_csv(file, &rows).expect("writes");
    let again: Vec<T> = parse_csv(file, &written).expect("parses again");
    assert_eq!(again, rows, "{file}");
}

#[test]
fn every_seed_file_survives_a_write_and_a_read() {
    round_trip::<AgencyRow>("agencies.csv");
    round_trip::<LevelRow>("2019_levels.csv");
    round_trip::<GovernmentOfficeRow>("2019_to_government_office.csv");
    round_trip::<StatusFeedbackRow>("2019_status_feedback.csv");
    round_trip::<ConnectionRow>("2019_connections.csv");
    round_trip::<AgencyVolumeRow>("2021_2022_agencies.csv");
    round_trip::<TotalRow>("2021_2022_totals.csv");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn csv_readers_never_panic_on_arbitrary_text(
        file in proptest::sample::select(CSV_FILES.iter().map(|(name, _)| *name).collect::<Vec<_>>()),
        text in proptest::collection::vec(character(), 0..400),
    ) {
        let text: String = text.into_iter().collect();
        parse_as_file(file, &text);
        // The header row kept, so that the rows themselves are read.
        let header = csv_text(file).expect("embedded").lines().next().unwrap_or_default();
        parse_as_file(file, &format!("{header}\n{text}"));
    }

    #[test]
    fn csv_readers_never_panic_on_damaged_files(
        file in proptest::sample::select(CSV_FILES.iter().map(|(name, _)| *name).collect::<Vec<_>>()),
        edits in proptest::collection::vec((any::<Index>(), character(), 0u8..6), 1..6),
    ) {
        let mut text = csv_text(file).expect("embedded").to_string();
        for edit in edits {
            text = damage(&text, edit);
        }
        parse_as_file(file, &text);
    }

    #[test]
    fn the_code_shape_check_never_panics_and_wants_thirteen_bytes(text in ".{0,20}") {
        if is_well_formed_code(&text) {
            prop_assert_eq!(text.len(), 13);
        }
    }

    #[test]
    fn report_extractors_never_panic_on_arbitrary_text(
        lines in proptest::collection::vec(
            prop_oneof![
                // Headings and cells the extractors look for, among noise.
                proptest::sample::select(vec![
                    "Phụ lục 6", "III", "III. TÌNH HÌNH GỬI, NHẬN VĂN BẢN ĐIỆN TỬ",
                    "STT", "Tổng", "1", "2.000", "Bộ Tài chính", "Văn phòng Chính phủ",
                    "Phụ lục V", "Phụ lục I", "Phụ lục II", "", "-",
                ]).prop_map(String::from),
                ".{0,30}",
            ],
            0..60,
        ),
    ) {
        let text = lines.join("\n");
        let directory = Directory::new([("000.00.00.G22", "Văn phòng Chính phủ")]);
        let _ = extract::directory(&text);
        let _ = extract::volumes_2021_2022(&text);
        let _ = extract::totals_2021_2022(&text);
        let _ = extract::levels_2019(&text);
        let _ = extract::status_feedback_2019(&text, &directory);
        let _ = extract::connections_2019(&text, &directory);
        let _ = extract::to_government_office_2019(&text, &directory);
        let _ = extract::agencies(&text, &text);
    }
}

//! Parsers that derive every seed table from the report text, as the CSV files were made.
//!
//! Each function takes the whole text of one report, finds its section by the heading the
//! report prints, checks the column headers it relies on, and fails loudly on anything it
//! does not recognise rather than guessing: a wrong figure would be replayed as truth.

use std::collections::{BTreeMap, BTreeSet};

use crate::names::{self, Directory, MatchRule};
use crate::{
    AgencyKind, AgencyRow, AgencyVolumeRow, Bound, ConnectionMode, ConnectionRow, Direction,
    FeedbackCategory, GovernmentOfficeRow, LevelRow, Scope, SeedError, StatusFeedbackRow,
    TotalOrigin, TotalRow, SEED_001_FILE, SEED_002_FILE,
};

/// Bodies seed 001, Phụ lục 6, III lists: 41 central, 63 provinces.
pub const CENTRAL_BODIES: usize = 41;
pub const PROVINCES: usize = 63;

/// Rows of Phụ lục V: every one of the 95 units but the Government Office itself.
pub const GOVERNMENT_OFFICE_ROWS: usize = 94;

/// The text of a report, with 1-based line numbers.
struct Report<'a> {
    file: &'static str,
    lines: Vec<&'a str>,
}

impl<'a> Report<'a> {
    fn new(file: &'static str, text: &'a str) -> Self {
        Report {
            file,
            lines: text.lines().collect(),
        }
    }

    /// The index of the first line at or after `from` whose trimmed text satisfies `predicate`.
    fn find(&self, from: usize, predicate: impl Fn(&str) -> bool) -> Option<usize> {
        (from..self.lines.len()).find(|&index| predicate(self.lines[index].trim()))
    }

    fn find_or_fail(
        &self,
        from: usize,
        section: &str,
        predicate: impl Fn(&str) -> bool,
    ) -> Result<usize, SeedError> {
        self.find(from, predicate)
            .ok_or_else(|| SeedError::SectionNotFound {
                source_file: self.file.to_string(),
                section: section.to_string(),
            })
    }

    fn malformed(&self, index: usize, detail: impl Into<String>) -> SeedError {
        SeedError::Malformed {
            source_file: self.file.to_string(),
            line: line_number(index),
            detail: detail.into(),
        }
    }
}

fn line_number(index: usize) -> u32 {
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}

/// A count as printed in a table cell: `None` for a blank cell, the value, and whether the
/// printed form needed interpretation (thousands separators, a space inside the number).
fn parse_count(cell: &str) -> Result<Option<(u64, bool)>, String> {
    let trimmed = cell.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    // PDF extraction splits numbers across cell lines ("476.4 38"): the pieces are one number.
    let joined: String = trimmed.chars().filter(|c| !c.is_whitespace()).collect();
    let mut interpreted = joined != trimmed;
    let digits = if joined.bytes().all(|byte| byte.is_ascii_digit()) {
        joined
    } else {
        let separator = if joined.contains('.') { '.' } else { ',' };
        let groups: Vec<&str> = joined.split(separator).collect();
        let well_grouped = groups.len() > 1
            && (1..=3).contains(&groups[0].len())
            && groups[1..].iter().all(|group| group.len() == 3)
            && groups
                .iter()
                .all(|group| group.bytes().all(|byte| byte.is_ascii_digit()));
        if !well_grouped {
            return Err(format!("not a count: {cell:?}"));
        }
        interpreted = true;
        groups.concat()
    };
    digits
        .parse::<u64>()
        .map(|value| Some((value, interpreted)))
        .map_err(|error| format!("{cell:?}: {error}"))
}

/// A count in running text: digits with `.` thousands separators ("163.107", "1588").
fn parse_prose_count(text: &str) -> Option<u64> {
    match parse_count(text) {
        Ok(Some((value, _))) => Some(value),
        _ => None,
    }
}

/// The first run of digits, dots and commas in `text`, with what precedes and follows it.
fn split_number(text: &str) -> Option<(&str, &str, &str)> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let length = text[start..]
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .unwrap_or(text.len() - start);
    let number = text[start..start + length].trim_end_matches(['.', ',']);
    Some((&text[..start], number, &text[start + number.len()..]))
}

/// `N/M` as printed in running text ("84/95").
fn parse_fraction(text: &str) -> Option<(u32, u32)> {
    let (_, numerator, rest) = split_number(text)?;
    let rest = rest.strip_prefix('/')?;
    let (_, denominator, _) = split_number(rest)?;
    Some((numerator.parse().ok()?, denominator.parse().ok()?))
}

/// "ngày 12 tháng 03 năm 2019" as `2019-03-12`.
fn parse_vietnamese_date(text: &str) -> Option<String> {
    let after_day = text.split_once("ngày ")?.1;
    let (_, day, rest) = split_number(after_day)?;
    let (_, month, rest) = split_number(rest.split_once("tháng ")?.1)?;
    let (_, year, _) = split_number(rest.split_once("năm ")?.1)?;
    let (day, month, year): (u32, u32, u32) =
        (day.parse().ok()?, month.parse().ok()?, year.parse().ok()?);
    Some(format!("{year:04}-{month:02}-{day:02}"))
}

/// One data row of seed 001, Phụ lục 6, III, before interpretation.
struct RawVolumeRow<'a> {
    kind: AgencyKind,
    table: &'static str,
    stt: u32,
    index: usize,
    name: &'a str,
    /// Printed order: received 2022, sent 2022, received 2021, sent 2021.
    cells: [&'a str; 4],
}

/// The two tables of seed 001, Phụ lục 6, III, row by row.
fn volume_table<'a>(report: &Report<'a>) -> Result<Vec<RawVolumeRow<'a>>, SeedError> {
    let appendix = report.find_or_fail(0, "Phụ lục 6", |line| line == "Phụ lục 6")?;
    let section = report.find_or_fail(appendix, "Phụ lục 6, III", |line| {
        line.starts_with("III. Tình hình gửi, nhận văn bản điện tử qua Trục liên thông")
    })?;
    let end = report
        .find(section + 1, |line| line.starts_with("Phụ lục "))
        .unwrap_or(report.lines.len());
    let mut rows = Vec::new();
    let mut current: Option<(AgencyKind, &'static str)> = None;
    let mut header_seen = false;
    for index in section + 1..end {
        let line = report.lines[index];
        let trimmed = line.trim();
        if trimmed.starts_with("1. Các Bộ, cơ quan") {
            current = Some((AgencyKind::Central, "Phụ lục 6, III.1"));
            header_seen = false;
            continue;
        }
        if trimmed.starts_with("2. UBND các tỉnh") {
            current = Some((AgencyKind::Province, "Phụ lục 6, III.2"));
            header_seen = false;
            continue;
        }
        let cells: Vec<&str> = line.split('\t').collect();
        if cells[0].trim() == "STT" {
            // The column order is what gives each number its meaning: check it.
            let year_2022 = cells
                .get(2)
                .is_some_and(|cell| cell.trim().starts_with("2022"));
            let year_2021 = cells
                .get(4)
                .is_some_and(|cell| cell.trim().starts_with("2021"));
            let directions: Vec<&str> = report.lines.get(index + 1).map_or(Vec::new(), |next| {
                next.split('\t').skip(2).map(str::trim).collect()
            });
            if !year_2022 || !year_2021 || directions != ["Nhận", "Gửi", "Nhận", "Gửi"] {
                return Err(report.malformed(index, "unexpected column headers"));
            }
            header_seen = true;
            continue;
        }
        let Ok(stt) = cells[0].trim().parse::<u32>() else {
            continue;
        };
        let Some((kind, table)) = current.filter(|_| header_seen) else {
            return Err(report.malformed(index, "data row before a table header"));
        };
        if cells.len() > 6 && cells[6..].iter().any(|cell| !cell.trim().is_empty()) {
            return Err(report.malformed(index, "more cells than columns"));
        }
        let cell = |position: usize| cells.get(position).copied().unwrap_or("");
        rows.push(RawVolumeRow {
            kind,
            table,
            stt,
            index,
            name: cell(1).trim(),
            cells: [cell(2), cell(3), cell(4), cell(5)],
        });
    }
    for (kind, expected) in [
        (AgencyKind::Central, CENTRAL_BODIES),
        (AgencyKind::Province, PROVINCES),
    ] {
        let found: Vec<u32> = rows
            .iter()
            .filter(|row| row.kind == kind)
            .map(|row| row.stt)
            .collect();
        let numbered: Vec<u32> = (1..=u32::try_from(expected).unwrap_or(u32::MAX)).collect();
        if found != numbered {
            return Err(report.malformed(
                section,
                format!(
                    "{kind:?}: expected rows 1..={expected}, found {}",
                    found.len()
                ),
            ));
        }
    }
    Ok(rows)
}

fn assigned(report: &Report<'_>, row: &RawVolumeRow<'_>) -> Result<String, SeedError> {
    names::assigned_code(row.kind, row.name).ok_or_else(|| SeedError::NoAssignedCode {
        name: row.name.to_string(),
        source_file: report.file.to_string(),
        line: line_number(row.index),
    })
}

/// The directory used to resolve printed names: seed 001, Phụ lục 6, III with assigned codes.
pub fn directory(text_001: &str) -> Result<Directory, SeedError> {
    let report = Report::new(SEED_001_FILE, text_001);
    let rows = volume_table(&report)?;
    let mut entries = Vec::with_capacity(rows.len());
    for row in &rows {
        entries.push((assigned(&report, row)?, names::canonical_name(row.name)));
    }
    Ok(Directory::new(
        entries
            .iter()
            .map(|(code, name)| (code.as_str(), name.as_str())),
    ))
}

/// Seed 001, Phụ lục 6, III: received and sent per body, 2021 and 2022 to 28 July.
pub fn volumes_2021_2022(text_001: &str) -> Result<Vec<AgencyVolumeRow>, SeedError> {
    let report = Report::new(SEED_001_FILE, text_001);
    let rows = volume_table(&report)?;
    let mut volumes = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut values = [None; 4];
        let mut interpreted = false;
        for (position, cell) in row.cells.iter().enumerate() {
            let parsed = parse_count(cell).map_err(|detail| report.malformed(row.index, detail))?;
            interpreted |= parsed.is_some_and(|(_, changed)| changed);
            values[position] = parsed.map(|(value, _)| value);
        }
        let [received_2022, sent_2022, received_2021, sent_2021] = values;
        volumes.push(AgencyVolumeRow {
            code: assigned(&report, row)?,
            name: row.name.to_string(),
            kind: row.kind,
            received_2021,
            sent_2021,
            received_2022,
            sent_2022,
            source_file: SEED_001_FILE.to_string(),
            table: row.table.to_string(),
            row: row.stt,
            line: line_number(row.index),
            raw: if interpreted {
                row.cells.map(str::trim).join(" | ")
            } else {
                String::new()
            },
        });
    }
    Ok(volumes)
}

/// The figures seed 001 prints in prose (II.2) and the sums of Phụ lục 6, III.
pub fn totals_2021_2022(text_001: &str) -> Result<Vec<TotalRow>, SeedError> {
    let report = Report::new(SEED_001_FILE, text_001);
    let volumes = volumes_2021_2022(text_001)?;
    let appendix = report.find_or_fail(0, "Phụ lục 6", |line| line == "Phụ lục 6")?;
    let section = report.find_or_fail(appendix, "Phụ lục 6, III", |line| {
        line.starts_with("III. Tình hình gửi, nhận văn bản điện tử qua Trục liên thông")
    })?;
    let mut totals = Vec::new();

    let prose = report.find_or_fail(0, "II.2 volumes on the axis", |line| {
        line.contains("8 tháng đầu năm 2022") && line.contains("Trục liên thông văn bản quốc gia")
    })?;
    let text = report.lines[prose];
    let published: [(&str, &str, Bound, &str); 3] = [
        (
            "8 tháng đầu năm 2022",
            "trên ",
            Bound::AtLeast,
            "2022_first_8_months",
        ),
        (
            "Tính đến nay",
            "hơn ",
            Bound::AtLeast,
            "2019_03_12_to_report",
        ),
        ("trung bình", "khoảng ", Bound::Approx, "monthly_average"),
    ];
    // The prose figure for 2022 is set beside the table it should roughly agree with.
    let table_2022: u64 = volumes
        .iter()
        .map(|row| row.received_2022.unwrap_or(0) + row.sent_2022.unwrap_or(0))
        .sum();
    for (anchor, qualifier, bound, period) in published {
        let after_anchor = text.split_once(anchor).map(|(_, rest)| rest);
        // The qualifier directly before a number ("trên Trục" is not a figure).
        let figure = after_anchor.and_then(|rest| {
            rest.match_indices(qualifier)
                .map(|(at, _)| &rest[at..])
                .find(|candidate| {
                    candidate[qualifier.len()..].starts_with(|c: char| c.is_ascii_digit())
                })
        });
        let Some(figure) = figure else {
            return Err(report.malformed(prose, format!("no figure after {anchor:?}")));
        };
        let (_, number, rest) =
            split_number(figure).ok_or_else(|| report.malformed(prose, "no number"))?;
        let millions = rest.starts_with(" triệu");
        let value = if millions {
            // "3,56 triệu": a decimal comma, then millions.
            let (whole, fraction) = number.split_once(',').unwrap_or((number, ""));
            let whole: u64 = whole.parse().map_err(|_| report.malformed(prose, number))?;
            let fraction_value: u64 = if fraction.is_empty() {
                0
            } else {
                fraction
                    .parse()
                    .map_err(|_| report.malformed(prose, number))?
            };
            let scale = 10u64.pow(u32::try_from(fraction.len()).unwrap_or(0));
            whole * 1_000_000 + fraction_value * 1_000_000 / scale
        } else {
            parse_prose_count(number).ok_or_else(|| report.malformed(prose, number))?
        };
        totals.push(TotalRow {
            origin: TotalOrigin::Published,
            period: period.to_string(),
            direction: Direction::Both,
            scope: Scope::All,
            value,
            bound,
            note: if period == "2022_first_8_months" {
                format!("Phụ lục 6, III (to 28/7/2022) sums to {table_2022} received + sent")
            } else {
                String::new()
            },
            source_file: SEED_001_FILE.to_string(),
            table: "II.2".to_string(),
            row: line_number(prose),
            line: line_number(prose),
            raw: format!(
                "{qualifier}{number}{}",
                if millions { " triệu" } else { "" }
            ),
        });
    }

    type Column = fn(&AgencyVolumeRow) -> Option<u64>;
    let columns: [(&str, Direction, Column); 4] = [
        ("2021", Direction::Received, |row| row.received_2021),
        ("2021", Direction::Sent, |row| row.sent_2021),
        ("2022_to_07_28", Direction::Received, |row| {
            row.received_2022
        }),
        ("2022_to_07_28", Direction::Sent, |row| row.sent_2022),
    ];
    for (period, direction, column) in columns {
        for scope in [Scope::All, Scope::Central, Scope::Province] {
            let rows: Vec<&AgencyVolumeRow> = volumes
                .iter()
                .filter(|row| match scope {
                    Scope::All => true,
                    Scope::Central => row.kind == AgencyKind::Central,
                    Scope::Province => row.kind == AgencyKind::Province,
                })
                .collect();
            let blanks = rows.iter().filter(|row| column(row).is_none()).count();
            totals.push(TotalRow {
                origin: TotalOrigin::Computed,
                period: period.to_string(),
                direction,
                scope,
                value: rows.iter().filter_map(|row| column(row)).sum(),
                bound: Bound::Exact,
                note: format!("sum of {} rows; {blanks} blank cells left out", rows.len()),
                source_file: SEED_001_FILE.to_string(),
                table: "Phụ lục 6, III".to_string(),
                row: 0,
                line: line_number(section),
                raw: String::new(),
            });
        }
    }
    Ok(totals)
}

/// Seed 002, III.1: the 2019 totals and the split by administrative level.
pub fn levels_2019(text_002: &str) -> Result<Vec<LevelRow>, SeedError> {
    let report = Report::new(SEED_002_FILE, text_002);
    let section = report.find_or_fail(
        0,
        "III. TÌNH HÌNH GỬI, NHẬN VĂN BẢN ĐIỆN TỬ",
        |line| line.starts_with("III. TÌNH HÌNH GỬI, NHẬN VĂN BẢN ĐIỆN TỬ"),
    )?;
    let index = report.find_or_fail(section, "III.1 volumes", |line| {
        line.starts_with("- Từ ngày") && line.contains("tổng số") && line.contains("Trong đó có")
    })?;
    let text = report.lines[index].trim();
    let (period, split) = text
        .split_once(", có tổng số ")
        .ok_or_else(|| report.malformed(index, "no total"))?;
    let (from, to) = period
        .split_once(" đến ")
        .ok_or_else(|| report.malformed(index, "no period"))?;
    let period_start =
        parse_vietnamese_date(from).ok_or_else(|| report.malformed(index, "start date"))?;
    let period_end =
        parse_vietnamese_date(to).ok_or_else(|| report.malformed(index, "end date"))?;
    let (total, levels) = split
        .split_once(". Trong đó có ")
        .ok_or_else(|| report.malformed(index, "no split"))?;

    let row = |level: Option<u8>, level_name: &str, sent: u64, received: u64, raw: &str| LevelRow {
        level,
        level_name: level_name.to_string(),
        period_start: period_start.clone(),
        period_end: period_end.clone(),
        sent,
        received,
        source_file: SEED_002_FILE.to_string(),
        table: "III.1".to_string(),
        row: line_number(index),
        line: line_number(index),
        raw: raw.to_string(),
    };
    // "X văn bản gửi và Y văn bản nhận trên Trục ..."
    let (sent, rest) = total
        .split_once(" văn bản gửi và ")
        .ok_or_else(|| report.malformed(index, "total sent"))?;
    let (received, _) = rest
        .split_once(" văn bản nhận")
        .ok_or_else(|| report.malformed(index, "total received"))?;
    let sent_total = parse_prose_count(sent).ok_or_else(|| report.malformed(index, sent))?;
    let received_total =
        parse_prose_count(received).ok_or_else(|| report.malformed(index, received))?;
    let total_raw = format!("tổng số {sent} văn bản gửi và {received} văn bản nhận");
    let mut rows = vec![row(None, "tổng số", sent_total, received_total, &total_raw)];

    // "A văn bản gửi, B văn bản nhận của <level>; ..." from level 1 down.
    for (position, segment) in levels.trim_end_matches('.').split("; ").enumerate() {
        let parsed = segment
            .split_once(" văn bản gửi, ")
            .and_then(|(sent, rest)| {
                let (received, name) = rest.split_once(" văn bản nhận của ")?;
                Some((parse_prose_count(sent)?, parse_prose_count(received)?, name))
            });
        let (sent, received, name) =
            parsed.ok_or_else(|| report.malformed(index, format!("level segment {segment:?}")))?;
        let level =
            u8::try_from(position + 1).map_err(|_| report.malformed(index, "too many levels"))?;
        rows.push(row(
            Some(level),
            name.trim(),
            sent,
            received,
            segment.trim(),
        ));
    }
    if rows.len() != 4 {
        return Err(report.malformed(
            index,
            format!("expected 3 levels, found {}", rows.len() - 1),
        ));
    }
    Ok(rows)
}

/// Seed 002, III.2: how many statuses the units report back.
pub fn status_feedback_2019(
    text_002: &str,
    directory: &Directory,
) -> Result<Vec<StatusFeedbackRow>, SeedError> {
    let report = Report::new(SEED_002_FILE, text_002);
    let section = report.find_or_fail(
        0,
        "III. TÌNH HÌNH GỬI, NHẬN VĂN BẢN ĐIỆN TỬ",
        |line| line.starts_with("III. TÌNH HÌNH GỬI, NHẬN VĂN BẢN ĐIỆN TỬ"),
    )?;
    let index = report.find_or_fail(section, "III.2 status feedback", |line| {
        line.starts_with("- Phản hồi trạng thái xử lý văn bản")
    })?;
    let line = line_number(index);
    let text = report.lines[index].trim();
    let body = text
        .split_once(": ")
        .map(|(_, body)| body)
        .ok_or_else(|| report.malformed(index, "no ':'"))?;
    let (first, rest) = body
        .split_once("; ")
        .ok_or_else(|| report.malformed(index, "no ';'"))?;
    let (second, third) = rest
        .split_once(", ")
        .ok_or_else(|| report.malformed(index, "no ','"))?;
    let first = first.trim_start_matches("đã có ").trim();
    let third = third.trim().trim_end_matches('.');

    let statuses_from = |segment: &str| -> Option<(u8, Option<u8>)> {
        let after = segment.split_once(" từ ")?.1;
        let (_, minimum, rest) = split_number(after)?;
        let minimum: u8 = minimum.parse().ok()?;
        if rest.trim_start().starts_with("trạng thái trở lên") {
            return Some((minimum, None));
        }
        let (_, maximum, _) = split_number(rest.split_once("đến ")?.1)?;
        Some((minimum, Some(maximum.parse().ok()?)))
    };
    let row = |category,
               min_statuses,
               max_statuses,
               unit_count,
               total_units,
               code: String,
               name: &str,
               raw: &str| {
        StatusFeedbackRow {
            category,
            min_statuses,
            max_statuses,
            unit_count,
            total_units,
            code,
            name: name.to_string(),
            source_file: SEED_002_FILE.to_string(),
            table: "III.2".to_string(),
            row: line,
            line,
            raw: raw.to_string(),
        }
    };

    let mut rows = Vec::new();
    let mut total_units = 0;
    for (segment, category) in [
        (first, FeedbackCategory::FiveOrMore),
        (second, FeedbackCategory::ThreeToFive),
    ] {
        let (count, out_of) =
            parse_fraction(segment).ok_or_else(|| report.malformed(index, segment))?;
        let (minimum, maximum) =
            statuses_from(segment).ok_or_else(|| report.malformed(index, segment))?;
        total_units = out_of;
        rows.push(row(
            category,
            minimum,
            maximum,
            count,
            out_of,
            String::new(),
            "",
            segment,
        ));
    }
    // "<unit> phản hồi 01 trạng thái “Đã đến”": one named unit, one status.
    let (name, statuses) = third
        .split_once(" phản hồi ")
        .ok_or_else(|| report.malformed(index, third))?;
    let (_, count, after) = split_number(statuses).ok_or_else(|| report.malformed(index, third))?;
    let count: u8 = count.parse().map_err(|_| report.malformed(index, third))?;
    if count != 1 || !after.contains("Đã đến") {
        return Err(report.malformed(index, format!("expected one status, arrived: {third:?}")));
    }
    let (code, _) = directory.resolve(name, SEED_002_FILE, line)?;
    rows.push(row(
        FeedbackCategory::ArrivedOnly,
        1,
        Some(1),
        1,
        total_units,
        code,
        name.trim(),
        third,
    ));
    Ok(rows)
}

/// One numbered list of seed 002's appendix: (STT, line index, printed name).
fn numbered_list<'a>(report: &Report<'a>, start: usize, end: usize) -> Vec<(u32, usize, &'a str)> {
    (start..end)
        .filter_map(|index| {
            let (number, name) = report.lines[index].split_once('\t')?;
            Some((number.trim().parse().ok()?, index, name.trim()))
        })
        .collect()
}

/// Seed 002, Phụ lục I (direct) and II (via LGSP): the bodies connected in 2019.
pub fn connections_2019(
    text_002: &str,
    directory: &Directory,
) -> Result<Vec<ConnectionRow>, SeedError> {
    let report = Report::new(SEED_002_FILE, text_002);
    let appendix = report.find_or_fail(0, "Phụ lục", |line| line == "Phụ lục")?;
    let direct = report.find_or_fail(appendix, "Phụ lục I", |line| {
        line.starts_with("I. Danh sách các đơn vị kết nối trực tiếp")
    })?;
    let lgsp = report.find_or_fail(direct, "Phụ lục II", |line| {
        line.starts_with("II. Danh sách các đơn vị kết nối liên thông qua nền tảng")
    })?;
    let end = report.find_or_fail(lgsp + 1, "Phụ lục III", |line| {
        line.trim_start_matches('*').starts_with("III.")
    })?;

    // The prose of III.1 says how many units each list should hold.
    let prose = report.find_or_fail(0, "III.1 connection counts", |line| {
        line.contains("đơn vị kết nối thông qua nền tảng")
            && line.contains("đơn vị kết nối trực tiếp")
    })?;
    let expected_count = |marker: &str| -> Option<usize> {
        let before = report.lines[prose].split_once(marker)?.0;
        before.trim_end().rsplit(' ').next()?.parse().ok()
    };
    let lists = [
        (
            "Phụ lục I",
            ConnectionMode::Direct,
            numbered_list(&report, direct + 1, lgsp),
            expected_count(" đơn vị kết nối trực tiếp"),
        ),
        (
            "Phụ lục II",
            ConnectionMode::Lgsp,
            numbered_list(&report, lgsp + 1, end),
            expected_count(" đơn vị kết nối thông qua nền tảng"),
        ),
    ];

    let mut rows = Vec::new();
    for (table, mode, entries, expected) in &lists {
        if Some(entries.len()) != *expected {
            return Err(report.malformed(
                prose,
                format!(
                    "{table}: {} entries, the text says {expected:?}",
                    entries.len()
                ),
            ));
        }
        for (stt, index, name) in entries {
            let (code, _) = directory.resolve(name, SEED_002_FILE, line_number(*index))?;
            rows.push(ConnectionRow {
                code,
                name: (*name).to_string(),
                mode: *mode,
                also_listed: String::new(),
                source_file: SEED_002_FILE.to_string(),
                table: (*table).to_string(),
                row: *stt,
                line: line_number(*index),
                raw: String::new(),
            });
        }
    }
    // Some bodies appear in both lists; say so on each entry rather than drop one.
    let snapshot: Vec<(String, String, u32)> = rows
        .iter()
        .map(|row| (row.code.clone(), row.table.clone(), row.row))
        .collect();
    for row in &mut rows {
        let elsewhere: Vec<String> = snapshot
            .iter()
            .filter(|(code, table, _)| *code == row.code && *table != row.table)
            .map(|(_, table, stt)| format!("{table}, row {stt}"))
            .collect();
        row.also_listed = elsewhere.join("; ");
    }
    Ok(rows)
}

/// Whether a printed percentage ("99.7%") equals numerator/denominator rounded half up at
/// the printed precision; `None` when the ratio is undefined.
fn percentage_matches(printed: &str, numerator: u64, denominator: u64) -> Option<bool> {
    if denominator == 0 {
        return None;
    }
    let number = printed.trim().trim_end_matches('%');
    let decimals = number
        .split_once('.')
        .map_or(0, |(_, fraction)| fraction.len());
    let printed_scaled: u64 = number.replace('.', "").parse().ok()?;
    let scale = 10u64.pow(u32::try_from(decimals).ok()?);
    let computed_scaled = (2 * numerator * 100 * scale + denominator) / (2 * denominator);
    Some(printed_scaled == computed_scaled)
}

/// Seed 002, Phụ lục V: documents each body sent to the Government Office, 2019-03-12..09-30.
pub fn to_government_office_2019(
    text_002: &str,
    directory: &Directory,
) -> Result<Vec<GovernmentOfficeRow>, SeedError> {
    let report = Report::new(SEED_002_FILE, text_002);
    let appendix = report.find_or_fail(0, "Phụ lục", |line| line == "Phụ lục")?;
    let section = report.find_or_fail(appendix, "Phụ lục V", |line| {
        line.starts_with("V. Tỷ lệ văn bản điện tử gửi Văn phòng Chính phủ")
    })?;
    let end = report.find_or_fail(section + 1, "Phụ lục VI", |line| {
        line.starts_with("VI.")
    })?;
    let header = report.find_or_fail(section, "Phụ lục V header", |line| {
        line.starts_with("STT\t")
    })?;
    let expected_header = [
        "STT",
        "Đơn vị",
        "Tổng văn bản gửi",
        "Tổng văn bản có bản điện tử",
        "Tổng văn bản có ký số",
        "Tỷ lệ văn bản có ký số/tổng số văn bản điện tử (%)",
        "Tỷ lệ văn bản điện tử/tổng số văn bản gửi (%)",
    ];
    if report.lines[header]
        .split('\t')
        .map(str::trim)
        .collect::<Vec<_>>()
        != expected_header
    {
        return Err(report.malformed(header, "unexpected column headers"));
    }

    let mut rows = Vec::new();
    for index in header + 1..end {
        let cells: Vec<&str> = report.lines[index].split('\t').map(str::trim).collect();
        let Ok(stt) = cells[0].trim_end_matches('.').parse::<u32>() else {
            continue;
        };
        let [_, name, total, electronic, signed, signed_pct, electronic_pct] = cells.as_slice()
        else {
            return Err(report.malformed(index, format!("expected 7 cells, found {}", cells.len())));
        };
        let count = |cell: &str| -> Result<u64, SeedError> {
            match parse_count(cell) {
                Ok(Some((value, false))) => Ok(value),
                _ => Err(report.malformed(index, format!("not a plain count: {cell:?}"))),
            }
        };
        let (total_sent, electronic, signed) = (count(total)?, count(electronic)?, count(signed)?);
        let signed_ok = percentage_matches(signed_pct, signed, electronic);
        let electronic_ok = percentage_matches(electronic_pct, electronic, total_sent);
        let mut notes = Vec::new();
        if electronic > total_sent {
            notes.push(format!(
                "electronic ({electronic}) exceeds total sent ({total_sent}); the published {electronic_pct} follows from these counts"
            ));
        }
        if signed > electronic {
            notes.push(format!(
                "signed ({signed}) exceeds electronic ({electronic})"
            ));
        }
        if signed_ok.is_none() {
            notes.push(format!(
                "signed/electronic is {signed}/{electronic}, undefined; printed as {signed_pct}"
            ));
        }
        let (code, _) = directory.resolve(name, SEED_002_FILE, line_number(index))?;
        rows.push(GovernmentOfficeRow {
            code,
            name: (*name).to_string(),
            total_sent,
            electronic,
            signed,
            published_signed_pct: (*signed_pct).to_string(),
            published_electronic_pct: (*electronic_pct).to_string(),
            pct_disagrees: signed_ok == Some(false) || electronic_ok == Some(false),
            note: notes.join("; "),
            source_file: SEED_002_FILE.to_string(),
            table: "Phụ lục V".to_string(),
            row: stt,
            line: line_number(index),
            raw: String::new(),
        });
    }
    let numbered: Vec<u32> = rows.iter().map(|row| row.row).collect();
    if numbered
        != (1..=u32::try_from(GOVERNMENT_OFFICE_ROWS).unwrap_or(u32::MAX)).collect::<Vec<_>>()
    {
        return Err(report.malformed(
            section,
            format!(
                "expected rows 1..={GOVERNMENT_OFFICE_ROWS}, found {}",
                rows.len()
            ),
        ));
    }
    Ok(rows)
}

/// Codes given in DOMAIN.md; every other code is assigned (see `names`).
const DOMAIN_CODES: [&str; 5] = [
    "000.00.00.G22",
    "000.00.00.G12",
    "000.00.00.G17",
    "000.00.00.G09",
    "000.00.00.H41",
];

/// The agency directory: every body of seed 001, Phụ lục 6, III (which lists all the bodies
/// of the other tables too), with its code, connection mode and the spellings seen elsewhere.
pub fn agencies(text_001: &str, text_002: &str) -> Result<Vec<AgencyRow>, SeedError> {
    let report = Report::new(SEED_001_FILE, text_001);
    let raw_rows = volume_table(&report)?;
    let directory = directory(text_001)?;

    // Every printed spelling, table by table, with the rule that matched it.
    let mut spellings: BTreeMap<String, Vec<(String, MatchRule)>> = BTreeMap::new();
    let mut record = |code: String, printed: &str, rule: MatchRule| {
        let seen = spellings.entry(code).or_default();
        if !seen
            .iter()
            .any(|(spelling, known)| spelling == printed && *known == rule)
        {
            seen.push((printed.to_string(), rule));
        }
    };
    for row in &raw_rows {
        let (code, rule) = directory.resolve(row.name, SEED_001_FILE, line_number(row.index))?;
        record(code, row.name, rule);
    }
    let connections = connections_2019(text_002, &directory)?;
    let government_office = to_government_office_2019(text_002, &directory)?;
    let feedback = status_feedback_2019(text_002, &directory)?;
    for (printed, line) in connections
        .iter()
        .map(|row| (row.name.as_str(), row.line))
        .chain(
            government_office
                .iter()
                .map(|row| (row.name.as_str(), row.line)),
        )
        .chain(
            feedback
                .iter()
                .filter(|row| !row.code.is_empty())
                .map(|row| (row.name.as_str(), row.line)),
        )
    {
        let (code, rule) = directory.resolve(printed, SEED_002_FILE, line)?;
        record(code, printed, rule);
    }

    let mut agencies = Vec::with_capacity(raw_rows.len());
    for row in &raw_rows {
        let code = assigned(&report, row)?;
        let name = names::canonical_name(row.name);
        let listed: Vec<&ConnectionRow> = connections
            .iter()
            .filter(|entry| entry.code == code)
            .collect();
        let modes: BTreeSet<&str> = listed.iter().map(|entry| entry.table.as_str()).collect();
        let where_listed = listed
            .iter()
            .map(|entry| format!("{}, row {}", entry.table, entry.row))
            .collect::<Vec<_>>()
            .join(" and ");
        let (connection, connection_note) =
            match (modes.contains("Phụ lục I"), modes.contains("Phụ lục II")) {
                (true, false) => (Some(ConnectionMode::Direct), String::new()),
                (false, true) => (Some(ConnectionMode::Lgsp), String::new()),
                (true, true) => (
                    None,
                    format!("connection blank: listed in both {where_listed}"),
                ),
                (false, false) => (
                    None,
                    "connection blank: in neither Phụ lục I nor II of seed 002".to_string(),
                ),
            };
        // Spellings other than the directory name, each with the rule that matched it.
        let mut variants: Vec<(String, MatchRule)> = Vec::new();
        for (spelling, rule) in spellings.get(&code).cloned().unwrap_or_default() {
            if spelling != name && !variants.iter().any(|(seen, _)| *seen == spelling) {
                variants.push((spelling, rule));
            }
        }
        let code_note = if DOMAIN_CODES.contains(&code.as_str()) {
            "code from DOMAIN.md"
        } else {
            "code assigned"
        };
        let note = [code_note.to_string(), connection_note]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        agencies.push(AgencyRow {
            code,
            raw: if name == row.name {
                String::new()
            } else {
                row.name.to_string()
            },
            name,
            level: 1,
            kind: row.kind,
            connection,
            name_variants: variants
                .iter()
                .map(|(spelling, _)| spelling.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            matched_by: variants
                .iter()
                .map(|(_, rule)| rule.as_str())
                .collect::<Vec<_>>()
                .join("; "),
            note,
            source_file: SEED_001_FILE.to_string(),
            table: row.table.to_string(),
            row: row.stt,
            line: line_number(row.index),
        });
    }
    agencies.sort_by(|left, right| left.code.cmp(&right.code));
    Ok(agencies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_read_as_printed_or_interpreted() {
        // `Err(())` marks a cell that must be refused.
        type Expected = Result<Option<(u64, bool)>, ()>;
        let cases: [(&str, Expected); 9] = [
            ("", Ok(None)),
            ("  ", Ok(None)),
            ("156559", Ok(Some((156_559, false)))),
            ("25.038", Ok(Some((25_038, true)))),
            ("476.4 38", Ok(Some((476_438, true)))),
            ("29,955", Ok(Some((29_955, true)))),
            ("1.312.142", Ok(Some((1_312_142, true)))),
            ("99,8%", Err(())),
            ("25.03", Err(())),
        ];
        for (cell, expected) in cases {
            assert_eq!(parse_count(cell).map_err(|_| ()), expected, "{cell:?}");
        }
    }

    #[test]
    fn percentages_compare_at_the_printed_precision() {
        assert_eq!(percentage_matches("99.7%", 587, 589), Some(true));
        assert_eq!(percentage_matches("61.80%", 589, 953), Some(true));
        assert_eq!(percentage_matches("61.81%", 589, 953), Some(false));
        assert_eq!(percentage_matches("100.62%", 162, 161), Some(true));
        assert_eq!(percentage_matches("0.0%", 0, 0), None);
    }

    #[test]
    fn prose_helpers_read_dates_and_fractions() {
        assert_eq!(
            parse_vietnamese_date("Từ ngày 12 tháng 03 năm 2019").as_deref(),
            Some("2019-03-12")
        );
        assert_eq!(parse_fraction("đã có 84/95 đơn vị"), Some((84, 95)));
    }
}

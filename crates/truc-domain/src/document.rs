//! Document ids (`OrganId,yyyy/MM/dd,Code`) and the dates they carry.

use std::fmt;
use std::str::FromStr;

use crate::agency::AgencyCode;

/// A calendar date, as days since 1970-01-01 would be awkward to read in keys.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct DocumentDate(time::Date);

/// Text as received is quoted with escapes (`{text:?}`): refusals reach
/// clients and log lines, and the text may hold a line feed or a NUL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentIdError {
    #[error("{text:?} is not a date of the form {form}")]
    Date { text: String, form: &'static str },
    #[error("{text:?} is not of the form OrganId,yyyy/MM/dd,Number/Notation")]
    Shape { text: String },
    #[error("organ id: {0}")]
    Organ(#[from] crate::agency::AgencyCodeError),
    #[error("code {text:?}: {reason}")]
    Code { text: String, reason: &'static str },
}

const ISO_DATE: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");
const ID_DATE: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]/[month]/[day]");

impl DocumentDate {
    pub fn from_ymd(year: i32, month: u8, day: u8) -> Option<Self> {
        let month = time::Month::try_from(month).ok()?;
        time::Date::from_calendar_date(year, month, day)
            .ok()
            .map(Self)
    }

    /// Parses `yyyy-mm-dd`.
    pub fn parse_iso(text: &str) -> Result<Self, DocumentIdError> {
        time::Date::parse(text, ISO_DATE)
            .map(Self)
            .map_err(|_| DocumentIdError::Date {
                text: text.chars().take(40).collect(),
                form: "yyyy-mm-dd",
            })
    }

    pub fn iso(&self) -> String {
        self.0.format(ISO_DATE).expect("a valid date formats")
    }

    /// `yyyymmdd` as a number: sorts like the date, used in storage keys.
    pub fn ordinal_key(&self) -> u32 {
        let (year, month, day) = self.0.to_calendar_date();
        (year as u32) * 10_000 + (month as u32) * 100 + u32::from(day)
    }

    pub fn from_ordinal_key(key: u32) -> Option<Self> {
        Self::from_ymd(
            (key / 10_000) as i32,
            ((key / 100) % 100) as u8,
            (key % 100) as u8,
        )
    }

    pub fn year(&self) -> i32 {
        self.0.year()
    }

    pub fn next_day(&self) -> Option<Self> {
        self.0.next_day().map(Self)
    }

    /// Monday = 1 .. Sunday = 7.
    pub fn weekday_number(&self) -> u8 {
        self.0.weekday().number_from_monday()
    }

    /// Midnight at the start of this date in Vietnam (UTC+7), in Unix milliseconds.
    pub fn start_unix_ms_vietnam(&self) -> i64 {
        let midnight = self
            .0
            .midnight()
            .assume_offset(time::UtcOffset::from_hms(7, 0, 0).expect("UTC+7 is a valid offset"));
        (midnight.unix_timestamp_nanos() / 1_000_000) as i64
    }

    /// The date in Vietnam (UTC+7) of an instant given in Unix milliseconds.
    pub fn vietnam_date_of_unix_ms(unix_ms: i64) -> Option<Self> {
        let instant =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
                .ok()?;
        let offset = time::UtcOffset::from_hms(7, 0, 0).ok()?;
        Some(Self(instant.to_offset(offset).date()))
    }
}

/// An instant for people, in Vietnam time with its offset shown:
/// `2026-11-22 09:30:00 +07:00`. Vietnam has no daylight saving, so one
/// offset serves every date. Logs keep UTC (`…Z`) instead.
pub fn vietnam_time(unix_ms: i64) -> String {
    let offset = time::UtcOffset::from_hms(7, 0, 0).expect("UTC+7 is a valid offset");
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000) {
        Ok(instant) => {
            let t = instant.to_offset(offset);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02} +07:00",
                t.year(),
                t.month() as u8,
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        }
        Err(_) => format!("{unix_ms} ms after 1970-01-01 UTC"),
    }
}

impl fmt::Display for DocumentDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.iso())
    }
}

/// `OrganId,yyyy/MM/dd,Number/Notation`: unique per sender for as long as the
/// hub keeps the document.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct DocumentId {
    sender: AgencyCode,
    date: DocumentDate,
    code: String,
}

/// Longest accepted `Number/Notation`, in bytes.
pub const DOCUMENT_CODE_BYTES_MAX: usize = 100;

impl DocumentId {
    /// Builds an id from its parts, checking the code (`number` and `notation`).
    pub fn new(
        sender: AgencyCode,
        date: DocumentDate,
        number: &str,
        notation: &str,
    ) -> Result<Self, DocumentIdError> {
        let code = format!("{number}/{notation}");
        check_code_part(number, &code, "number")?;
        check_code_part(notation, &code, "notation")?;
        if code.len() > DOCUMENT_CODE_BYTES_MAX {
            return Err(DocumentIdError::Code {
                text: code.chars().take(40).collect(),
                reason: "is longer than 100 bytes",
            });
        }
        Ok(Self { sender, date, code })
    }

    pub fn sender(&self) -> AgencyCode {
        self.sender
    }

    pub fn date(&self) -> DocumentDate {
        self.date
    }

    /// `Number/Notation`.
    pub fn code(&self) -> &str {
        &self.code
    }
}

/// The sender's part (`OrganId`) of an id as written, without parsing the
/// rest: ids reach the store checked, and it counts per sender on hot paths.
pub fn sender_of_id(document_id: &str) -> &str {
    document_id.split(',').next().unwrap_or_default()
}

fn check_code_part(part: &str, code: &str, which: &'static str) -> Result<(), DocumentIdError> {
    let reason = if part.is_empty() {
        Some(if which == "number" {
            "number is empty"
        } else {
            "notation is empty"
        })
    } else if part.contains([',', '/']) {
        Some("number and notation may not contain ',' or '/'")
    } else if part
        .chars()
        .any(|c| crate::file_name::refused_category(c).is_some())
    {
        // A document id names folders in recipients' inboxes and is shown
        // to their staff: the characters refused in file names are refused here.
        Some("contains a control, format or separator character (the characters refused in attachment names)")
    } else if part.trim() != part {
        Some("has leading or trailing spaces")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(DocumentIdError::Code {
            text: code.chars().take(40).collect(),
            reason,
        }),
        None => Ok(()),
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{},{}",
            self.sender,
            self.date.0.format(ID_DATE).expect("a valid date formats"),
            self.code
        )
    }
}

impl FromStr for DocumentId {
    type Err = DocumentIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let shape = || DocumentIdError::Shape {
            text: text.chars().take(80).collect(),
        };
        let mut parts = text.splitn(3, ',');
        let (Some(organ), Some(date), Some(code)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(shape());
        };
        let sender: AgencyCode = organ.parse()?;
        let date = time::Date::parse(date, ID_DATE)
            .map(DocumentDate)
            .map_err(|_| DocumentIdError::Date {
                text: date.chars().take(40).collect(),
                form: "yyyy/MM/dd",
            })?;
        let (number, notation) = code.split_once('/').ok_or_else(shape)?;
        Self::new(sender, date, number, notation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn times_for_people_are_in_vietnam_with_the_offset_shown() {
        // 2026-11-22 02:30:00 UTC is 09:30 in Vietnam.
        assert_eq!(
            vietnam_time(1_795_314_600_000),
            "2026-11-22 09:30:00 +07:00"
        );
        // 18:30 UTC is the next day in Vietnam.
        assert_eq!(
            vietnam_time(1_795_285_800_000),
            "2026-11-22 01:30:00 +07:00"
        );
        assert_eq!(vietnam_time(0), "1970-01-01 07:00:00 +07:00");
    }

    #[test]
    fn parses_the_reference_example() {
        let id: DocumentId = "000.00.00.G22,2018/09/20,7816/VPCP-TTĐT".parse().unwrap();
        assert_eq!(id.sender().to_string(), "000.00.00.G22");
        assert_eq!(id.date().iso(), "2018-09-20");
        assert_eq!(id.code(), "7816/VPCP-TTĐT");
        assert_eq!(id.to_string(), "000.00.00.G22,2018/09/20,7816/VPCP-TTĐT");
    }

    #[test]
    fn refuses_bad_ids() {
        for bad in [
            "",
            "000.00.00.G22",
            "000.00.00.G22,2018/09/20",
            "000.00.00.G22,2018-09-20,1/A",
            "000.00.00.G22,2018/02/30,1/A",
            "000.00.00.G2,2018/09/20,1/A",
            "000.00.00.G22,2018/09/20,1",
            "000.00.00.G22,2018/09/20,/A",
            "000.00.00.G22,2018/09/20,1/",
            "000.00.00.G22,2018/09/20,1/A/B",
            "000.00.00.G22,2018/09/20,1/A,B",
        ] {
            assert!(
                bad.parse::<DocumentId>().is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn vietnam_dates() {
        let date = DocumentDate::from_ymd(2019, 3, 12).unwrap();
        let start = date.start_unix_ms_vietnam();
        assert_eq!(DocumentDate::vietnam_date_of_unix_ms(start), Some(date));
        assert_eq!(
            DocumentDate::vietnam_date_of_unix_ms(start - 1),
            DocumentDate::from_ymd(2019, 3, 11)
        );
        assert_eq!(date.ordinal_key(), 20190312);
        assert_eq!(DocumentDate::from_ordinal_key(20190312), Some(date));
        assert_eq!(date.weekday_number(), 2);
    }

    proptest! {
        #[test]
        fn round_trips(number in "[0-9]{1,6}", notation in "[A-ZĐ][A-ZĐ-]{0,12}",
                       year in 2000i32..2100, month in 1u8..13, day in 1u8..29) {
            let id = DocumentId::new("000.00.00.H41".parse().unwrap(),
                DocumentDate::from_ymd(year, month, day).unwrap(), &number, &notation).unwrap();
            prop_assert_eq!(id.to_string().parse::<DocumentId>().unwrap(), id);
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,60}") {
            let _ = text.parse::<DocumentId>();
        }
    }
}

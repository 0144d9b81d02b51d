//! Byte sizes as people write them on a command line (`320`, `64KiB`,
//! `16MiB`) and as tables show them (`64 KiB`), for the flags of the bench
//! and the replay that choose attachment sizes. Binary units only: `KB`
//! and `MB` mean 1,000 or 1,024 depending on who reads them, so they are
//! refused with the unit to write instead.

use std::fmt;
use std::str::FromStr;

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;

/// A number of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ByteSizeError {
    #[error(
        "'{0}' is not a size: a whole number of bytes, with B, KiB, MiB or GiB or no unit \
         (e.g. 320, 64KiB, 16MiB)"
    )]
    Malformed(String),
    #[error("'{text}': {unit} is ambiguous (1,000 or 1,024?); write {binary}")]
    DecimalUnit {
        text: String,
        unit: String,
        binary: &'static str,
    },
    #[error("'{0}' is more bytes than fit in 64 bits")]
    TooLarge(String),
}

impl ByteSize {
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = ByteSizeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let digits_end = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (digits, unit) = trimmed.split_at(digits_end);
        if digits.is_empty() {
            return Err(ByteSizeError::Malformed(text.to_owned()));
        }
        let multiplier = match unit.trim_start().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kib" => KIB,
            "mib" => MIB,
            "gib" => GIB,
            decimal @ ("k" | "kb" | "m" | "mb" | "g" | "gb") => {
                let binary = match decimal.as_bytes()[0] {
                    b'k' => "KiB",
                    b'm' => "MiB",
                    _ => "GiB",
                };
                return Err(ByteSizeError::DecimalUnit {
                    text: text.to_owned(),
                    unit: unit.trim_start().to_owned(),
                    binary,
                });
            }
            _ => return Err(ByteSizeError::Malformed(text.to_owned())),
        };
        digits
            .parse::<u64>()
            .ok()
            .and_then(|count| count.checked_mul(multiplier))
            .map(ByteSize)
            .ok_or_else(|| ByteSizeError::TooLarge(text.to_owned()))
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the size exactly: `64 KiB`,
    /// `1 MiB`, `100000 B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        for (unit, name) in [(GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
            if bytes >= unit && bytes.is_multiple_of(unit) {
                return write!(f, "{} {name}", bytes / unit);
            }
        }
        write!(f, "{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_or_without_binary_units() {
        let parse = |text: &str| text.parse::<ByteSize>().map(ByteSize::bytes);
        assert_eq!(parse("320"), Ok(320));
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse("320B"), Ok(320));
        assert_eq!(parse("64KiB"), Ok(65_536));
        assert_eq!(parse("64 kib"), Ok(65_536));
        assert_eq!(parse("16MiB"), Ok(16 * 1024 * 1024));
        assert_eq!(parse(" 2GiB "), Ok(2 << 30));
    }

    #[test]
    fn malformed_ambiguous_and_huge_sizes_are_refused_with_the_text() {
        for bad in ["", "KiB", "-1", "1.5MiB", "64 KiBs", "12XB", "0x10"] {
            let error = bad.parse::<ByteSize>().unwrap_err();
            assert!(
                matches!(&error, ByteSizeError::Malformed(text) if text == bad),
                "{bad:?}: {error}"
            );
        }
        let error = "64KB".parse::<ByteSize>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "'64KB': KB is ambiguous (1,000 or 1,024?); write KiB"
        );
        assert!(matches!(
            "1 MB".parse::<ByteSize>(),
            Err(ByteSizeError::DecimalUnit { binary: "MiB", .. })
        ));
        assert!(matches!(
            "99999999999GiB".parse::<ByteSize>(),
            Err(ByteSizeError::TooLarge(_))
        ));
        assert!(matches!(
            "99999999999999999999".parse::<ByteSize>(),
            Err(ByteSizeError::TooLarge(_))
        ));
    }

    #[test]
    fn sizes_show_in_the_largest_exact_unit_and_parse_back() {
        for (bytes, shown) in [
            (0, "0 B"),
            (320, "320 B"),
            (1024, "1 KiB"),
            (65_536, "64 KiB"),
            (100_000, "100000 B"),
            (1536, "1536 B"),
            (16 << 20, "16 MiB"),
            (3 << 30, "3 GiB"),
        ] {
            assert_eq!(ByteSize(bytes).to_string(), shown);
            assert_eq!(shown.parse::<ByteSize>(), Ok(ByteSize(bytes)));
        }
    }
}

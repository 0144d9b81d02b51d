//! Agency codes of QCVN 102:2016/BTTTT: `AAA.BB.CC.Xnn`, read right to left.

use std::fmt;
use std::str::FromStr;

/// A well-formed agency code. Parsing is the only way to make one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgencyCode {
    /// Level-4 group `AAA` (0 = none).
    level4: u16,
    /// Level-3 group `BB`.
    level3: u8,
    /// Level-2 group `CC`.
    level2: u8,
    /// Level-1 body: letter and number, e.g. `G22`.
    body_letter: u8,
    body_number: u8,
}

/// The code as received is quoted with escapes (`{code:?}`): refusals reach
/// clients and log lines, and a code may hold a line feed or a NUL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgencyCodeError {
    #[error("{code:?} is not of the form AAA.BB.CC.Xnn (three digits, two, two, a capital letter and two digits)")]
    Shape { code: String },
    #[error("{code:?} has a level-1 number 00, which names no body")]
    ZeroBody { code: String },
    #[error("{code:?} has a unit below an absent level (a non-zero group left of a zero group)")]
    Gap { code: String },
}

impl AgencyCode {
    /// The administrative level: 1 = ministry / province, 2 = department /
    /// district, 3 = commune, 4 = below that.
    pub fn level(&self) -> u8 {
        if self.level4 != 0 {
            4
        } else if self.level3 != 0 {
            3
        } else if self.level2 != 0 {
            2
        } else {
            1
        }
    }

    /// The unit directly above: the code with its leftmost non-zero group zeroed.
    pub fn parent(&self) -> Option<AgencyCode> {
        let mut parent = *self;
        if self.level4 != 0 {
            parent.level4 = 0;
        } else if self.level3 != 0 {
            parent.level3 = 0;
        } else if self.level2 != 0 {
            parent.level2 = 0;
        } else {
            return None;
        }
        Some(parent)
    }

    /// The level-1 body this unit belongs to.
    pub fn root(&self) -> AgencyCode {
        AgencyCode {
            level4: 0,
            level3: 0,
            level2: 0,
            ..*self
        }
    }

    /// True when `self` is `other` or one of its ancestors.
    pub fn contains(&self, other: &AgencyCode) -> bool {
        let mut current = Some(*other);
        while let Some(code) = current {
            if code == *self {
                return true;
            }
            current = code.parent();
        }
        false
    }

    /// A child of this unit with the given number in the next group down.
    pub fn child(&self, number: u16) -> Option<AgencyCode> {
        let mut child = *self;
        match self.level() {
            1 if (1..=99).contains(&number) => child.level2 = number as u8,
            2 if (1..=99).contains(&number) => child.level3 = number as u8,
            3 if (1..=999).contains(&number) => child.level4 = number,
            _ => return None,
        }
        Some(child)
    }
}

impl FromStr for AgencyCode {
    type Err = AgencyCodeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let shape = || AgencyCodeError::Shape {
            code: text.chars().take(40).collect(),
        };
        let bytes = text.as_bytes();
        if bytes.len() != 13 || bytes[3] != b'.' || bytes[6] != b'.' || bytes[9] != b'.' {
            return Err(shape());
        }
        let digits = |range: std::ops::Range<usize>| -> Result<u16, AgencyCodeError> {
            let part = &bytes[range];
            if !part.iter().all(u8::is_ascii_digit) {
                return Err(shape());
            }
            Ok(part
                .iter()
                .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0')))
        };
        let level4 = digits(0..3)?;
        let level3 = digits(4..6)? as u8;
        let level2 = digits(7..9)? as u8;
        let body_letter = bytes[10];
        if !body_letter.is_ascii_uppercase() {
            return Err(shape());
        }
        let body_number = digits(11..13)? as u8;
        if body_number == 0 {
            return Err(AgencyCodeError::ZeroBody {
                code: text.to_owned(),
            });
        }
        // A group may be non-zero only if every group to its right is.
        let gap = (level4 != 0 && level3 == 0) || (level3 != 0 && level2 == 0);
        if gap {
            return Err(AgencyCodeError::Gap {
                code: text.to_owned(),
            });
        }
        Ok(AgencyCode {
            level4,
            level3,
            level2,
            body_letter,
            body_number,
        })
    }
}

impl fmt::Display for AgencyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:03}.{:02}.{:02}.{}{:02}",
            self.level4, self.level3, self.level2, self.body_letter as char, self.body_number
        )
    }
}

impl fmt::Debug for AgencyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgencyCode({self})")
    }
}

impl serde::Serialize for AgencyCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for AgencyCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_levels_and_parents() {
        let office: AgencyCode = "000.00.00.G22".parse().unwrap();
        assert_eq!(office.level(), 1);
        assert_eq!(office.parent(), None);
        let taxation: AgencyCode = "000.00.18.G12".parse().unwrap();
        assert_eq!(taxation.level(), 2);
        assert_eq!(taxation.parent().unwrap().to_string(), "000.00.00.G12");
        let commune: AgencyCode = "000.07.05.H41".parse().unwrap();
        assert_eq!(commune.level(), 3);
        assert_eq!(commune.parent().unwrap().to_string(), "000.00.05.H41");
        assert!(commune.root().contains(&commune));
        assert!(!taxation.contains(&commune));
    }

    #[test]
    fn refuses_ill_formed_codes() {
        for bad in [
            "",
            "000.00.00.g22",
            "000.00.00.G2",
            "000.00.00.G222",
            "00.000.00.G22",
            "000-00-00-G22",
            "000.00.00.G00",
            "000.05.00.H41",
            "001.00.05.H41",
            "000.00.0a.G22",
            "000.00.00.Ğ22",
        ] {
            assert!(
                bad.parse::<AgencyCode>().is_err(),
                "{bad} should be refused"
            );
        }
    }

    fn code_strategy() -> impl Strategy<Value = AgencyCode> {
        (0u16..1000, 0u8..100, 0u8..100, b'A'..=b'Z', 1u8..100).prop_filter_map(
            "well formed",
            |(l4, l3, l2, letter, number)| {
                format!("{l4:03}.{l3:02}.{l2:02}.{}{number:02}", letter as char)
                    .parse()
                    .ok()
            },
        )
    }

    proptest! {
        #[test]
        fn display_round_trips(code in code_strategy()) {
            let text = code.to_string();
            prop_assert_eq!(text.parse::<AgencyCode>().unwrap(), code);
        }

        #[test]
        fn parent_is_one_level_up_and_contains(code in code_strategy()) {
            if let Some(parent) = code.parent() {
                prop_assert_eq!(parent.level() + 1, code.level());
                prop_assert!(parent.contains(&code));
                prop_assert!(!code.contains(&parent));
            } else {
                prop_assert_eq!(code.level(), 1);
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,20}") {
            let _ = text.parse::<AgencyCode>();
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = String::from_utf8_lossy(&bytes).parse::<AgencyCode>();
        }

        /// Text made of the code's own alphabet, so that many are near misses:
        /// whatever is accepted is written back as it came, so a code has one
        /// spelling and the document ids built from it are stable.
        #[test]
        fn accepted_text_is_the_canonical_spelling(text in "[0-9.A-Za-zĐ ]{11,15}") {
            if let Ok(code) = text.parse::<AgencyCode>() {
                prop_assert_eq!(code.to_string(), text);
                prop_assert!(code.level() >= 1 && code.level() <= 4);
            }
        }

        #[test]
        fn one_changed_character_is_refused_or_canonical(
            code in code_strategy(),
            at in 0usize..13,
            replacement in any::<char>(),
        ) {
            let mut characters: Vec<char> = code.to_string().chars().collect();
            characters[at] = replacement;
            let text: String = characters.into_iter().collect();
            match text.parse::<AgencyCode>() {
                Ok(parsed) => prop_assert_eq!(parsed.to_string(), text),
                Err(error) => prop_assert!(!error.to_string().is_empty()),
            }
        }
    }
}

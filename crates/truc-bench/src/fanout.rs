//! The fan-out mix: a mean number of recipients per document, such as 3.63,
//! realised as a deterministic mix of ⌊mean⌋ and ⌊mean⌋ + 1 recipients whose
//! running mean is exact at every multiple of 100 documents.

use std::fmt;
use std::str::FromStr;

/// Mean recipients per document, in hundredths (3.63 is 363).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FanoutMix {
    hundredths: u32,
}

/// Most recipients per document the bench will address (the hub allows 1,000;
/// a bench agency set is small).
pub const FANOUT_MAX: u32 = 50;

impl FanoutMix {
    pub fn from_hundredths(hundredths: u32) -> Result<Self, String> {
        if !(100..=FANOUT_MAX * 100).contains(&hundredths) {
            return Err(format!(
                "the mean number of recipients must be between 1 and {FANOUT_MAX}"
            ));
        }
        Ok(Self { hundredths })
    }

    pub fn mean(&self) -> f64 {
        f64::from(self.hundredths) / 100.0
    }

    /// The most recipients any document gets.
    pub fn max_recipients(&self) -> usize {
        self.hundredths.div_ceil(100) as usize
    }

    /// Recipients of document `index`: ⌊mean⌋, plus one for exactly
    /// ⌊n · fraction⌋ of the first n documents, spread evenly (the carry of a
    /// running sum), so any prefix is as close to the mean as it can be.
    pub fn recipients_of(&self, index: u64) -> usize {
        let base = u64::from(self.hundredths / 100);
        let fraction = u64::from(self.hundredths % 100);
        let extra = ((index + 1) * fraction) / 100 - (index * fraction) / 100;
        (base + extra) as usize
    }
}

impl FromStr for FanoutMix {
    type Err = String;

    /// A decimal with at most two decimals: `3`, `3.5`, `3.63`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("'{text}' is not a number of recipients such as 3 or 3.63");
        let (whole, decimals) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
        if whole.is_empty()
            || decimals.len() > 2
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !decimals.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let whole: u32 = whole.parse().map_err(|_| bad())?;
        let decimals: u32 = match decimals.len() {
            0 => 0,
            1 => decimals.parse::<u32>().map_err(|_| bad())? * 10,
            _ => decimals.parse().map_err(|_| bad())?,
        };
        let hundredths = whole
            .checked_mul(100)
            .and_then(|h| h.checked_add(decimals))
            .ok_or_else(bad)?;
        Self::from_hundredths(hundredths)
    }
}

impl fmt::Display for FanoutMix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.hundredths / 100, self.hundredths % 100)
    }
}

/// The recipients of document `index` sent by agency `sender` among
/// `agencies`: the next `count` agencies after the sender, wrapping around, so
/// nobody addresses itself and every agency receives as much as it sends.
pub fn recipients_after(sender: usize, count: usize, agencies: usize) -> Vec<usize> {
    debug_assert!(count < agencies, "a sender never addresses itself");
    (1..=count).map(|step| (sender + step) % agencies).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_of_3_63_is_exact_every_hundred_documents_and_never_drifts_more_than_one() {
        let mix: FanoutMix = "3.63".parse().unwrap();
        assert_eq!(mix.mean(), 3.63);
        assert_eq!(mix.max_recipients(), 4);
        let mut total = 0u64;
        for index in 0..10_000u64 {
            let count = mix.recipients_of(index);
            assert!(count == 3 || count == 4, "document {index} has {count}");
            total += count as u64;
            let n = index + 1;
            // The running total stays within one recipient of n × 3.63.
            let ideal = n * 363;
            assert!(
                total * 100 <= ideal && ideal < total * 100 + 100,
                "after {n}: {total}"
            );
            if n % 100 == 0 {
                assert_eq!(total, n * 363 / 100);
            }
        }
        // Deterministic: the same index always gets the same count.
        assert_eq!(
            mix.recipients_of(7),
            "3.63".parse::<FanoutMix>().unwrap().recipients_of(7)
        );
    }

    #[test]
    fn whole_numbers_mean_every_document_has_that_many() {
        let mix: FanoutMix = "3".parse().unwrap();
        assert!((0..500).all(|i| mix.recipients_of(i) == 3));
        assert_eq!(mix.max_recipients(), 3);
        assert_eq!("2.5".parse::<FanoutMix>().unwrap().to_string(), "2.50");
    }

    #[test]
    fn malformed_or_out_of_range_means_are_refused() {
        for text in ["", "abc", "3.631", "-1", "0.5", "51", "3,63", ".5", "1e2"] {
            assert!(text.parse::<FanoutMix>().is_err(), "{text:?} was accepted");
        }
        assert!("1".parse::<FanoutMix>().is_ok());
        assert!("50".parse::<FanoutMix>().is_ok());
    }

    #[test]
    fn recipients_follow_the_sender_and_wrap() {
        assert_eq!(recipients_after(6, 3, 8), vec![7, 0, 1]);
        assert_eq!(recipients_after(0, 4, 8), vec![1, 2, 3, 4]);
    }
}

//! When planned documents are sent: working days of the period, office hours in Vietnam.

use truc_domain::{DocumentDate, SplitMix64};

use super::apportion::apportion;
use super::PlanError;

const HOUR_MS: i64 = 3_600_000;
const MINUTE_MS: i64 = 60_000;

/// Office hours as milliseconds after midnight, Vietnam time, half open: 07:30–11:30 and
/// 13:30–17:00, the working day of state bodies.
pub const OFFICE_HOURS_MS: [(i64, i64); 2] = [
    (7 * HOUR_MS + 30 * MINUTE_MS, 11 * HOUR_MS + 30 * MINUTE_MS),
    (13 * HOUR_MS + 30 * MINUTE_MS, 17 * HOUR_MS),
];

/// Relative weight of a working day is drawn from this range, so volumes vary mildly from day
/// to day (±15 %) without any day standing out.
const DAY_WEIGHT_MIN: u64 = 85;
const DAY_WEIGHT_SPAN: u64 = 31;

pub(crate) fn in_office_hours(offset_ms: i64) -> bool {
    OFFICE_HOURS_MS
        .iter()
        .any(|&(start, end)| (start..end).contains(&offset_ms))
}

/// Monday to Friday from `first` to `last` inclusive. Public holidays are not modelled: the
/// reports give no per-day figures to place them against.
pub(crate) fn working_days(
    period: (DocumentDate, DocumentDate),
) -> Result<Vec<DocumentDate>, PlanError> {
    let (first, last) = period;
    if first > last {
        return Err(PlanError::Input(format!(
            "period starts {first} after it ends {last}"
        )));
    }
    let mut days = Vec::new();
    let mut day = first;
    loop {
        if day.weekday_number() <= 5 {
            days.push(day);
        }
        if day == last {
            break;
        }
        day = day
            .next_day()
            .ok_or_else(|| PlanError::Input(format!("no day after {day}")))?;
    }
    Ok(days)
}

/// A (day index, instant) for each of `document_count` documents: the documents are spread over
/// the days by weight, in random order, at random office times.
pub(crate) fn schedule(
    days: &[DocumentDate],
    document_count: usize,
    rng: &mut SplitMix64,
) -> Vec<(u32, i64)> {
    let weights: Vec<u64> = days
        .iter()
        .map(|_| DAY_WEIGHT_MIN + rng.below(DAY_WEIGHT_SPAN))
        .collect();
    let per_day = apportion(document_count as u64, &weights);
    let mut order: Vec<u32> = (0..document_count as u32).collect();
    rng.shuffle(&mut order);
    let office_ms: i64 = OFFICE_HOURS_MS.iter().map(|(start, end)| end - start).sum();
    let mut slots = vec![(0u32, 0i64); document_count];
    let mut next = 0usize;
    for (day_index, (&count, day)) in per_day.iter().zip(days).enumerate() {
        let midnight = day.start_unix_ms_vietnam();
        for &document in &order[next..next + count as usize] {
            let mut offset = rng.below(office_ms as u64) as i64;
            let mut at = midnight;
            for &(start, end) in &OFFICE_HOURS_MS {
                if offset < end - start {
                    at = midnight + start + offset;
                    break;
                }
                offset -= end - start;
            }
            slots[document as usize] = (day_index as u32, at);
        }
        next += count as usize;
    }
    slots
}

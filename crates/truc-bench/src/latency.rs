//! Latency recording with HdrHistogram: microsecond resolution, three
//! significant figures, safe to share between tasks.

use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Longest latency kept exactly, in microseconds (an hour); longer ones are
/// recorded as an hour.
const LATENCY_MICROS_MAX: u64 = 3_600_000_000;

pub struct LatencyRecorder {
    histogram: Mutex<Histogram<u64>>,
}

impl Default for LatencyRecorder {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyRecorder {
    pub fn new() -> Self {
        Self {
            histogram: Mutex::new(
                Histogram::new_with_bounds(1, LATENCY_MICROS_MAX, 3)
                    .expect("1 µs to 1 h with 3 significant figures is a valid histogram"),
            ),
        }
    }

    pub fn record(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.histogram
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .saturating_record(micros);
    }

    pub fn summary(&self) -> LatencySummary {
        let histogram = self.histogram.lock().unwrap_or_else(|p| p.into_inner());
        let millis = |micros: u64| micros as f64 / 1000.0;
        if histogram.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: histogram.len(),
            p50_ms: millis(histogram.value_at_quantile(0.50)),
            p99_ms: millis(histogram.value_at_quantile(0.99)),
            p999_ms: millis(histogram.value_at_quantile(0.999)),
            max_ms: millis(histogram.max()),
        }
    }
}

/// Percentiles of one latency, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_recorded_distribution() {
        let recorder = LatencyRecorder::new();
        // 1 ms × 990, 50 ms × 9, 400 ms × 1.
        for _ in 0..990 {
            recorder.record(Duration::from_millis(1));
        }
        for _ in 0..9 {
            recorder.record(Duration::from_millis(50));
        }
        recorder.record(Duration::from_millis(400));
        let summary = recorder.summary();
        assert_eq!(summary.count, 1000);
        assert!((summary.p50_ms - 1.0).abs() < 0.01, "{summary:?}");
        assert!((summary.p99_ms - 1.0).abs() < 0.01, "{summary:?}");
        assert!((summary.p999_ms - 50.0).abs() < 0.1, "{summary:?}");
        assert!((summary.max_ms - 400.0).abs() < 0.5, "{summary:?}");
    }

    #[test]
    fn an_empty_recorder_reports_zeros() {
        assert_eq!(LatencyRecorder::new().summary(), LatencySummary::default());
    }
}

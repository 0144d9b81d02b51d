//! The size of each replayed document's one attachment (`truc replay
//! --attachment-bytes`): 320 B unless asked (a replay then measures the axis,
//! not disk bandwidth, and the published timings stay comparable), a fixed
//! size, or `pdf`, an assumed distribution of office PDF sizes. A size is
//! drawn from the plan's seed and the document's place in the plan, so the
//! same replay sends the same bytes, whatever the concurrency; the documents,
//! deliveries and statuses do not depend on it.

use std::fmt;
use std::str::FromStr;

use serde_json::{json, Value};
use truc_domain::byte_size::{KIB, MIB};
use truc_domain::{ByteSize, Limits, SplitMix64};

/// Bytes of the one attachment unless `--attachment-bytes` says otherwise.
pub const ATTACHMENT_BYTES_DEFAULT: u64 = 320;

/// The `pdf` distribution as quantiles, (cumulative share in millionths,
/// size): sizes between two points are spread evenly. Assumed, not measured:
/// the sources behind the replays (the seeds) publish counts of documents,
/// never their sizes (seed 002 only notes that the size of electronic
/// documents is not standardised). The shape is that of typical office PDFs:
/// a signed one-page letter takes some tens of KiB with its certificates, a
/// scanned multi-page one a few MiB, and the hub's default document limit
/// (64 MiB) is far above the largest.
const PDF_QUANTILES: [(u64, u64); 8] = [
    (0, 16 * KIB),
    (250_000, 48 * KIB),
    (500_000, 100 * KIB),
    (750_000, 320 * KIB),
    (900_000, MIB),
    (950_000, 2 * MIB),
    (990_000, 8 * MIB),
    (1_000_000, 16 * MIB),
];
/// The denominator of the quantiles' shares.
const SHARES: u64 = 1_000_000;
/// Mixed into the document's seed so that drawing a size does not consume
/// the draws its attachment's bytes come from.
const SIZE_STREAM: u64 = 0x5A1E;

/// What sizes a replay's attachments have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachmentSizes {
    /// Every attachment this many bytes.
    Fixed(u64),
    /// Drawn per document from [`PDF_QUANTILES`].
    Pdf,
}

impl Default for AttachmentSizes {
    fn default() -> Self {
        AttachmentSizes::Fixed(ATTACHMENT_BYTES_DEFAULT)
    }
}

impl AttachmentSizes {
    /// The size of the attachment of the document at `seq` in a plan of
    /// `plan_seed`.
    pub fn size_of(self, plan_seed: u64, seq: u64) -> u64 {
        match self {
            AttachmentSizes::Fixed(bytes) => bytes,
            AttachmentSizes::Pdf => {
                let mut rng = SplitMix64::new(plan_seed ^ seq.rotate_left(17)).fork(SIZE_STREAM);
                pdf_size(rng.below(SHARES))
            }
        }
    }

    /// The mean size of an attachment: exact for a fixed size, the
    /// distribution's own for `pdf`.
    pub fn mean_bytes(self) -> f64 {
        match self {
            AttachmentSizes::Fixed(bytes) => bytes as f64,
            AttachmentSizes::Pdf => PDF_QUANTILES
                .windows(2)
                .map(|pair| {
                    let ((from_share, from_size), (to_share, to_size)) = (pair[0], pair[1]);
                    (to_share - from_share) as f64 / SHARES as f64 * (from_size + to_size) as f64
                        / 2.0
                })
                .sum(),
        }
    }

    /// What the sizes are and where they come from, for the replay's output.
    pub fn describe(self) -> String {
        match self {
            AttachmentSizes::Fixed(bytes) if bytes == ATTACHMENT_BYTES_DEFAULT => format!(
                "{} each (the default: small, so that a replay measures the axis rather than \
                 disk bandwidth)",
                ByteSize(bytes)
            ),
            AttachmentSizes::Fixed(bytes) => format!("{} each", ByteSize(bytes)),
            AttachmentSizes::Pdf => format!(
                "pdf, an ASSUMED distribution of office PDF sizes (no measured one exists in the \
                 sources: the published reports count documents, not bytes): {}; mean {:.0} KiB; \
                 drawn per document from the plan's seed",
                quantiles_text(),
                self.mean_bytes() / KIB as f64
            ),
        }
    }
}

/// `median 100 KiB, 75 % ≤ 320 KiB, …` of [`PDF_QUANTILES`].
fn quantiles_text() -> String {
    let mut parts = Vec::new();
    for (share, size) in PDF_QUANTILES {
        let size = ByteSize(size);
        parts.push(match share {
            0 => format!("at least {size}"),
            500_000 => format!("median {size}"),
            SHARES => format!("at most {size}"),
            share => format!("{} % ≤ {size}", share as f64 / 10_000.0),
        });
    }
    parts.join(", ")
}

/// The size at `share` millionths of the way through [`PDF_QUANTILES`], in
/// whole bytes with integer arithmetic only, so that every machine draws the
/// same sizes from the same seed.
fn pdf_size(share: u64) -> u64 {
    let share = share.min(SHARES);
    for pair in PDF_QUANTILES.windows(2) {
        let ((from_share, from_size), (to_share, to_size)) = (pair[0], pair[1]);
        if share <= to_share {
            let along = u128::from(share - from_share);
            let span = u128::from(to_share - from_share);
            let growth = u128::from(to_size - from_size);
            return from_size + (growth * along / span) as u64;
        }
    }
    PDF_QUANTILES[PDF_QUANTILES.len() - 1].1
}

impl fmt::Display for AttachmentSizes {
    /// As `--attachment-bytes` takes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttachmentSizes::Fixed(bytes) => write!(f, "{}", ByteSize(*bytes)),
            AttachmentSizes::Pdf => write!(f, "pdf"),
        }
    }
}

impl FromStr for AttachmentSizes {
    type Err = String;

    /// `pdf`, or one size (`320`, `64KiB`, `16MiB`) up to the hub's default
    /// `limits.document_bytes_max`, which the embedded hub keeps.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.trim().eq_ignore_ascii_case("pdf") {
            return Ok(AttachmentSizes::Pdf);
        }
        let limit = Limits::default().document_bytes_max;
        match text.parse::<ByteSize>() {
            Ok(ByteSize(bytes)) if bytes <= limit => Ok(AttachmentSizes::Fixed(bytes)),
            Ok(size) => Err(format!(
                "--attachment-bytes {size}: above the hub's limits.document_bytes_max ({})",
                ByteSize(limit)
            )),
            Err(error) => Err(format!(
                "--attachment-bytes takes one size or the distribution `pdf`: {error}"
            )),
        }
    }
}

/// What a replay's attachments were, for its report.
#[derive(Clone, Debug, PartialEq)]
pub struct AttachmentsSent {
    pub sizes: AttachmentSizes,
    pub documents: u64,
    /// Attachment bytes of the documents the hub accepted (each once,
    /// however often it was sent).
    pub total_bytes: u64,
}

impl AttachmentsSent {
    pub fn mean_bytes(&self) -> f64 {
        self.total_bytes as f64 / self.documents.max(1) as f64
    }

    pub fn to_json(&self) -> Value {
        json!({
            "sizes": self.sizes.to_string(),
            "description": self.sizes.describe(),
            "documents": self.documents,
            "total_bytes": self.total_bytes,
            "mean_bytes": self.mean_bytes(),
        })
    }

    pub fn line(&self) -> String {
        format!(
            "attachments: one per document, {}; {} bytes sent in all, {} bytes per document on \
             average",
            self.sizes.describe(),
            crate::report::group(self.total_bytes),
            crate::report::group(self.mean_bytes().round() as u64)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_takes_a_size_or_pdf_and_names_itself_when_it_cannot() {
        assert_eq!("320".parse(), Ok(AttachmentSizes::Fixed(320)));
        assert_eq!("64KiB".parse(), Ok(AttachmentSizes::Fixed(65_536)));
        assert_eq!("16MiB".parse(), Ok(AttachmentSizes::Fixed(16 << 20)));
        assert_eq!("PDF".parse(), Ok(AttachmentSizes::Pdf));
        assert_eq!(AttachmentSizes::default(), AttachmentSizes::Fixed(320));
        for bad in ["", "lognormal", "64KB", "-5", "1.5MiB", "65MiB"] {
            let error = bad.parse::<AttachmentSizes>().unwrap_err();
            assert!(error.starts_with("--attachment-bytes"), "{bad:?}: {error}");
        }
        assert!("64KB"
            .parse::<AttachmentSizes>()
            .unwrap_err()
            .contains("write KiB"));
        assert!("65MiB"
            .parse::<AttachmentSizes>()
            .unwrap_err()
            .contains("limits.document_bytes_max (64 MiB)"));
        // What it prints parses back to the same sizes.
        for sizes in [AttachmentSizes::Fixed(65_536), AttachmentSizes::Pdf] {
            assert_eq!(sizes.to_string().parse(), Ok(sizes));
        }
    }

    #[test]
    fn pdf_sizes_follow_the_stated_quantiles_and_repeat_by_seed() {
        let sizes: Vec<u64> = (0..100_000)
            .map(|seq| AttachmentSizes::Pdf.size_of(7, seq))
            .collect();
        assert_eq!(
            sizes[..50],
            (0..50)
                .map(|seq| AttachmentSizes::Pdf.size_of(7, seq))
                .collect::<Vec<_>>()[..]
        );
        assert_ne!(sizes[..50], {
            (0..50)
                .map(|seq| AttachmentSizes::Pdf.size_of(8, seq))
                .collect::<Vec<_>>()
        });
        let mut sorted = sizes.clone();
        sorted.sort_unstable();
        let quantile = |share: f64| sorted[((sorted.len() as f64 * share) as usize).min(99_999)];
        assert!(sorted[0] >= 16 * KIB && sorted[99_999] <= 16 * MIB);
        // Each stated quantile, within one percentage point of draws.
        for (share, size) in PDF_QUANTILES[1..7].iter().copied() {
            let share = share as f64 / SHARES as f64;
            assert!(
                quantile(share - 0.01) <= size && size <= quantile(share + 0.01),
                "{share}: {size} between {} and {}",
                quantile(share - 0.01),
                quantile(share + 0.01)
            );
        }
        let mean = sizes.iter().sum::<u64>() as f64 / sizes.len() as f64;
        let stated = AttachmentSizes::Pdf.mean_bytes();
        assert!(
            (mean - stated).abs() < stated * 0.03,
            "{mean} against {stated}"
        );
        // The table's own mean: about 584 KiB.
        assert!((580.0..590.0).contains(&(stated / KIB as f64)), "{stated}");
        assert!(AttachmentSizes::Pdf.describe().contains("ASSUMED"));
        assert!(AttachmentSizes::Pdf.describe().contains("median 100 KiB"));
    }

    #[test]
    fn the_ends_of_the_table_are_its_first_and_last_sizes() {
        assert_eq!(pdf_size(0), 16 * KIB);
        assert_eq!(pdf_size(500_000), 100 * KIB);
        assert_eq!(pdf_size(SHARES), 16 * MIB);
        assert_eq!(pdf_size(u64::MAX), 16 * MIB);
        assert_eq!(
            pdf_size(970_000),
            2 * MIB + 3 * MIB,
            "halfway from 2 to 8 MiB"
        );
    }

    #[test]
    fn a_fixed_size_is_every_documents_and_its_own_mean() {
        let sizes = AttachmentSizes::Fixed(4096);
        assert!((0..100).all(|seq| sizes.size_of(1, seq) == 4096));
        assert_eq!(sizes.mean_bytes(), 4096.0);
        assert!(AttachmentSizes::default()
            .describe()
            .contains("the default"));
        let sent = AttachmentsSent {
            sizes,
            documents: 3,
            total_bytes: 3 * 4096,
        };
        assert_eq!(sent.to_json()["mean_bytes"], 4096.0);
        assert_eq!(sent.to_json()["sizes"], "4 KiB");
        assert!(
            sent.line().contains("12,288 bytes sent in all"),
            "{}",
            sent.line()
        );
    }
}

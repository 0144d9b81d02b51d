//! The documents a run sends, signed before any timed phase so that the
//! timing measures the hub, not the generator's signing. Each carries one
//! attachment whose bytes differ from every other document's (the hub stores
//! a digest once, so equal attachments would flatter its disk figures).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use truc_domain::SplitMix64;
use truc_node::compose::{AttachmentSource, Prepared};
use truc_node::{Attachment, Draft};
use truc_pki::Credentials;

use crate::agencies::Agency;
use crate::error::BenchError;
use crate::fanout::{recipients_after, FanoutMix};

/// What makes this run's document ids its own: a notation unique to the run
/// and today's date (the hub refuses dates more than a day ahead).
#[derive(Clone, Debug)]
pub struct RunTag {
    pub notation: String,
    pub date: String,
    /// Varies attachment bytes between runs against the same hub.
    pub salt: u64,
}

impl RunTag {
    pub fn new() -> Self {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let date = truc_domain::DocumentDate::vietnam_date_of_unix_ms(now_ms as i64)
            .map(|d| d.iso())
            .unwrap_or_else(|| "2026-01-01".to_owned());
        Self {
            notation: format!("BENCH-{}", base36(now_ms)),
            date,
            salt: now_ms,
        }
    }

    /// The index of one of this run's documents from its id
    /// (`Sender,yyyy/MM/dd,Number/Notation`, number = index + 1); `None` for
    /// a document of another run.
    pub fn index_of(&self, document_id: &str) -> Option<u64> {
        let code = document_id.splitn(3, ',').nth(2)?;
        let (number, notation) = code.split_once('/')?;
        if notation != self.notation {
            return None;
        }
        number.parse::<u64>().ok()?.checked_sub(1)
    }
}

fn base36(mut value: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(value % 36) as usize]);
        value /= 36;
        if value == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).expect("ASCII digits")
}

/// One signed document, ready to stream.
pub struct SignedDocument {
    pub index: u64,
    /// Index of the sender among the scenario's agencies.
    pub sender: usize,
    pub recipients: Vec<usize>,
    pub prepared: Prepared,
}

impl SignedDocument {
    /// What a send carries apart from gRPC, HTTP/2 and TLS framing: the
    /// encoded signed envelope followed by the attachment's bytes. The NATS
    /// comparison publishes exactly these bytes.
    pub fn payload(&self) -> Bytes {
        let mut bytes = self.prepared.envelope_bytes();
        for attachment in &self.prepared.attachments {
            if let AttachmentSource::Bytes(data) = &attachment.source {
                bytes.extend_from_slice(data);
            }
        }
        Bytes::from(bytes)
    }
}

/// Everything needed to make any document of one scenario.
pub struct DocumentMaker {
    pub agencies: Vec<Agency>,
    pub credentials: Vec<Credentials>,
    pub tag: RunTag,
    pub mix: FanoutMix,
    pub attachment_bytes: usize,
    pub sign_documents: bool,
}

impl DocumentMaker {
    pub async fn make(&self, index: u64) -> Result<SignedDocument, BenchError> {
        let count = self.agencies.len();
        let sender = (index % count as u64) as usize;
        let recipients = recipients_after(sender, self.mix.recipients_of(index), count);
        sign_bench_document(
            &self.agencies,
            &self.credentials[sender],
            &self.tag,
            Signing {
                index,
                sender,
                recipients,
                attachment_bytes: self.attachment_bytes,
                sign_document: self.sign_documents,
                subject: format!(
                    "Văn bản thử tải số {} về việc liên thông văn bản điện tử",
                    index + 1
                ),
            },
        )
        .await
    }
}

/// What differs between one bench document and the next.
pub(crate) struct Signing {
    pub index: u64,
    pub sender: usize,
    pub recipients: Vec<usize>,
    pub attachment_bytes: usize,
    pub sign_document: bool,
    pub subject: String,
}

/// The header of bench document `index` from `agencies[sender]` to the
/// `recipients`, dated `date`: an official letter of one page.
pub(crate) fn bench_draft(
    agencies: &[Agency],
    tag: &RunTag,
    index: u64,
    sender: usize,
    recipients: &[usize],
    date: String,
    subject: String,
) -> Draft {
    Draft {
        from: agencies[sender].code.clone(),
        from_name: agencies[sender].name.clone(),
        to: recipients
            .iter()
            .map(|&r| agencies[r].code.clone())
            .collect(),
        number: (index + 1).to_string(),
        notation: tag.notation.clone(),
        place: "Hà Nội".into(),
        date,
        document_type: 1,
        document_type_name: "Công văn".into(),
        subject,
        page_count: 1,
        ..Draft::default()
    }
}

/// One bench document from `agencies[sender]` to the `recipients`, its one
/// attachment made from the index and the run's salt, signed by `credentials`.
pub(crate) async fn sign_bench_document(
    agencies: &[Agency],
    credentials: &Credentials,
    tag: &RunTag,
    signing: Signing,
) -> Result<SignedDocument, BenchError> {
    let Signing {
        index,
        sender,
        recipients,
        attachment_bytes,
        sign_document,
        subject,
    } = signing;
    let draft = Draft {
        sign_document,
        ..bench_draft(
            agencies,
            tag,
            index,
            sender,
            &recipients,
            tag.date.clone(),
            subject,
        )
    };
    let attachment = Attachment::bytes(
        "van-ban.pdf",
        "application/pdf",
        attachment_content(index, tag.salt, attachment_bytes),
    );
    let prepared = Prepared::new(&draft, vec![attachment], credentials).await?;
    Ok(SignedDocument {
        index,
        sender,
        recipients,
        prepared,
    })
}

/// Documents signed between two yields to the other tasks of the runtime.
const PRESIGN_YIELD_EVERY: u64 = 32;

/// Signs documents `indices` on every core, in index order.
pub async fn presign(
    maker: Arc<DocumentMaker>,
    indices: Range<u64>,
) -> Result<Vec<SignedDocument>, BenchError> {
    sign_in_parallel(indices, move |index| {
        let maker = maker.clone();
        async move { maker.make(index).await }
    })
    .await
}

/// `make(index)` for every index of `indices`, spread over every core, in
/// index order.
pub(crate) async fn sign_in_parallel<T, F, Fut>(
    indices: Range<u64>,
    make: F,
) -> Result<Vec<T>, BenchError>
where
    T: Send + 'static,
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<T, BenchError>> + Send + 'static,
{
    let count = (indices.end - indices.start) as usize;
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(count.max(1));
    let per_worker = count.div_ceil(workers) as u64;
    let mut tasks = Vec::with_capacity(workers);
    for worker in 0..workers as u64 {
        let make = make.clone();
        let first = indices.start + worker * per_worker;
        let range = first..(first + per_worker).min(indices.end);
        tasks.push(tokio::spawn(async move {
            let mut documents = Vec::with_capacity(range.clone().count());
            for index in range {
                documents.push(make(index).await?);
                // Signing never waits, so without a yield these tasks hold
                // every worker for the whole pool (a minute for a 300 s
                // phase) and the nodes already connected miss the hub's
                // keepalive pings, which closes their connections.
                if index % PRESIGN_YIELD_EVERY == 0 {
                    tokio::task::yield_now().await;
                }
            }
            Ok::<_, BenchError>(documents)
        }));
    }
    let mut documents = Vec::with_capacity(count);
    for task in tasks {
        documents.extend(
            task.await
                .map_err(|error| BenchError::Setup(error.to_string()))??,
        );
    }
    Ok(documents)
}

/// Bytes that differ for every (run, document): a PDF-like prefix, then a
/// SplitMix64 stream.
pub(crate) fn attachment_content(index: u64, salt: u64, length: usize) -> Vec<u8> {
    let mut bytes = format!("%PDF-1.4\n% truc bench {salt} document {index}\n").into_bytes();
    let mut rng = SplitMix64::new(index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt);
    while bytes.len() < length {
        bytes.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    bytes.truncate(length);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_ids_of_this_run_give_back_their_index_and_others_do_not() {
        let tag = RunTag {
            notation: "BENCH-K1".into(),
            date: "2026-11-22".into(),
            salt: 1,
        };
        assert_eq!(tag.index_of("000.00.00.F01,2026/11/22,1/BENCH-K1"), Some(0));
        assert_eq!(
            tag.index_of("000.00.00.F03,2026/11/22,4711/BENCH-K1"),
            Some(4710)
        );
        assert_eq!(tag.index_of("000.00.00.F03,2026/11/22,4711/BENCH-K2"), None);
        assert_eq!(tag.index_of("000.00.00.F03,2026/11/22,0/BENCH-K1"), None);
        assert_eq!(tag.index_of("garbage"), None);
        assert!(RunTag::new().notation.starts_with("BENCH-"));
    }

    #[test]
    fn attachments_have_the_asked_size_and_differ_per_document_and_run() {
        let a = attachment_content(1, 10, 2048);
        assert_eq!(a.len(), 2048);
        assert_ne!(a, attachment_content(2, 10, 2048));
        assert_ne!(a, attachment_content(1, 11, 2048));
        assert_eq!(a, attachment_content(1, 10, 2048));
        assert_eq!(attachment_content(1, 10, 0).len(), 0);
    }

    #[tokio::test]
    async fn presigned_documents_verify_and_follow_the_fanout_mix() {
        let dir = tempfile::tempdir().unwrap();
        let agencies = crate::bench_agencies(crate::ScenarioKind::Fanout, 6);
        let pairs: Vec<(String, String)> = agencies
            .iter()
            .map(|a| (a.code.clone(), a.name.clone()))
            .collect();
        let pki = truc_pki::init_dev_pki(
            dir.path(),
            &pairs,
            &[],
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
        let credentials = agencies
            .iter()
            .map(|a| pki.agency_credentials(&a.code).unwrap())
            .collect();
        let maker = Arc::new(DocumentMaker {
            agencies: agencies.clone(),
            credentials,
            tag: RunTag::new(),
            mix: "3.63".parse().unwrap(),
            attachment_bytes: 500,
            sign_documents: false,
        });
        let documents = presign(maker.clone(), 0..200).await.unwrap();
        assert_eq!(documents.len(), 200);
        let later = presign(maker.clone(), 200..205).await.unwrap();
        assert_eq!(
            later.iter().map(|d| d.index).collect::<Vec<_>>(),
            vec![200, 201, 202, 203, 204]
        );
        let recipients: usize = documents.iter().map(|d| d.recipients.len()).sum();
        assert_eq!(recipients, 726); // 200 × 3.63
        for (position, document) in documents.iter().enumerate() {
            assert_eq!(document.index, position as u64);
            assert_eq!(
                maker.tag.index_of(&document.prepared.document_id),
                Some(document.index)
            );
            assert!(!document.recipients.contains(&document.sender));
            let key = truc_pki::certificate_public_key(
                pki.agency_credentials(&agencies[document.sender].code)
                    .unwrap()
                    .certificate_der(),
            )
            .unwrap();
            let envelope = &document.prepared.envelope;
            truc_domain::verify_envelope(&key, &envelope.header, &envelope.signature).unwrap();
            assert_eq!(
                document.payload().len(),
                document.prepared.envelope_bytes().len() + 500
            );
        }
    }
}

//! `--scenario attachments`: for each attachment size, a timed phase of
//! signed sends whose one attachment of that size is streamed to the hub in
//! the node's chunks, with every recipient's node connected and
//! acknowledging; beside it, what the disk under the hub's data directory
//! does with sequential writes of the same size, each followed by an
//! `fdatasync`, measured in the same run just before the phase.
//!
//! Nothing holds a whole document per send: each phase keeps one attachment
//! body in memory, shared by its documents, and every document's attachment
//! is that body followed by [`DISTINCT_SUFFIX_BYTES`] of its own. The hub
//! stores an attachment once per digest, so equal attachments would be
//! written once; with a suffix of its own each is stored whole. The suffix
//! comes last so that a document's SHA-256 continues from the body's,
//! hashed once per phase: signing a 16 MiB document costs no more than a
//! 1 KiB one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ring::digest::{Context, SHA256};
use truc_domain::views::{DocumentSignature, SendReceipt, SignedEnvelope};
use truc_domain::{ByteSize, RawAttachment, RawHeader, RawOrgan, SigningKey, SplitMix64};
use truc_node::compose::{document_id_of, header_bytes, CHUNK_BYTES};
use truc_node::{AxisClient, ClientError};
use truc_pki::Credentials;

use crate::agencies::{bench_agencies, Agency, ScenarioKind};
use crate::documents::{sign_in_parallel, RunTag};
use crate::error::BenchError;
use crate::fanout::{recipients_after, FanoutMix};
use crate::nodes::{Fleet, PhaseTracker};
use crate::options::BenchOptions;
use crate::report::{group, AttachmentPhase, AttachmentsFigures};
use crate::resources::{
    disk_bytes, disk_probe_folder, peak_rss_bytes, rss_bytes, sequential_write_sync, CpuMeter,
    DiskBandwidth, RssSampler,
};
use crate::run::{send_figures, Bench};
use crate::scenarios::{check_response, dispatch, sender_slots, DispatchOutcome};

/// Bytes at the end of every attachment that name its run and document
/// (`\n% truc bench <salt> <index>\n%%EOF\n`, both numbers in 16 hex digits).
pub const DISTINCT_SUFFIX_BYTES: usize = 54;
/// The disk's figure: writes for at most this long (and at most the
/// phase's duration)…
const DISK_PROBE_TIME_MAX: Duration = Duration::from_secs(3);
/// …or this many bytes, whichever comes first…
const DISK_PROBE_BYTES_MAX: u64 = 1 << 30;
/// …and at least this many writes, however large.
const DISK_PROBE_WRITES_MIN: u64 = 3;
/// How often the hub's resident memory is read during a phase.
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// Longest wait for one sender's connection (TCP and the TLS handshake).
const CONNECT_MAX: Duration = Duration::from_secs(30);

/// One phase's attachment: the bytes its documents share, and their digest
/// state.
pub(crate) struct AttachmentBody {
    size: u64,
    /// Every attachment's first `size - DISTINCT_SUFFIX_BYTES` bytes.
    shared: Bytes,
    /// SHA-256 after `shared`.
    hashed: Context,
    salt: u64,
}

impl AttachmentBody {
    /// `size` must be at least [`DISTINCT_SUFFIX_BYTES`] (the options say so).
    pub(crate) fn new(size: u64, salt: u64) -> Self {
        let shared_len = usize::try_from(size)
            .unwrap_or(usize::MAX)
            .saturating_sub(DISTINCT_SUFFIX_BYTES);
        let mut shared = Vec::with_capacity(shared_len + 8);
        shared.extend_from_slice(b"%PDF-1.4\n% truc bench attachment\n");
        let mut rng = SplitMix64::new(salt ^ size.rotate_left(32));
        while shared.len() < shared_len {
            shared.extend_from_slice(&rng.next_u64().to_le_bytes());
        }
        shared.truncate(shared_len);
        let mut hashed = Context::new(&SHA256);
        hashed.update(&shared);
        Self {
            size,
            shared: Bytes::from(shared),
            hashed,
            salt,
        }
    }

    fn suffix(&self, index: u64) -> [u8; DISTINCT_SUFFIX_BYTES] {
        let text = format!("\n% truc bench {:016x} {index:016x}\n%%EOF\n", self.salt);
        let mut suffix = [0u8; DISTINCT_SUFFIX_BYTES];
        suffix.copy_from_slice(text.as_bytes());
        suffix
    }

    fn digest(&self, index: u64) -> [u8; 32] {
        let mut context = self.hashed.clone();
        context.update(&self.suffix(index));
        let mut digest = [0u8; 32];
        digest.copy_from_slice(context.finish().as_ref());
        digest
    }

    /// Document `index`'s attachment, [`CHUNK_BYTES`] at a time, as the
    /// node's client cuts an attachment.
    #[cfg(test)]
    fn chunks(&self, index: u64) -> impl Iterator<Item = Vec<u8>> + '_ {
        Self::chunks_of(self, index)
    }

    /// [`AttachmentBody::chunks`] from a body the iterator holds (an `Arc`
    /// for a send's own task).
    fn chunks_of<B: std::ops::Deref<Target = Self>>(
        body: B,
        index: u64,
    ) -> impl Iterator<Item = Vec<u8>> {
        let suffix = body.suffix(index);
        let shared_len = body.shared.len();
        let total = shared_len + DISTINCT_SUFFIX_BYTES;
        (0..total).step_by(CHUNK_BYTES).map(move |start| {
            let end = (start + CHUNK_BYTES).min(total);
            let mut chunk = Vec::with_capacity(end - start);
            if start < shared_len {
                chunk.extend_from_slice(&body.shared[start..end.min(shared_len)]);
            }
            if end > shared_len {
                chunk.extend_from_slice(
                    &suffix[start.max(shared_len) - shared_len..end - shared_len],
                );
            }
            chunk
        })
    }
}

/// One signed document of the attachment scenario.
pub(crate) struct AttachmentEnvelope {
    index: u64,
    sender: usize,
    recipients: usize,
    document_id: String,
    envelope: SignedEnvelope,
}

/// Everything needed to sign any document of one phase.
struct AttachmentSigner {
    agencies: Vec<Agency>,
    credentials: Vec<Credentials>,
    /// Parsed once: reading an Ed25519 key costs as much as a signature.
    keys: Arc<Vec<SigningKey>>,
    tag: RunTag,
    mix: FanoutMix,
    sign_documents: bool,
    body: Arc<AttachmentBody>,
}

impl AttachmentSigner {
    fn sign(&self, index: u64) -> Result<AttachmentEnvelope, BenchError> {
        let count = self.agencies.len();
        let sender = (index % count as u64) as usize;
        let recipients = recipients_after(sender, self.mix.recipients_of(index), count);
        let organ = |agency: &Agency, named: bool| RawOrgan {
            organ_id: agency.code.clone(),
            organ_name: if named {
                agency.name.clone()
            } else {
                String::new()
            },
            ..RawOrgan::default()
        };
        let digest = self.body.digest(index);
        let number = index + 1;
        let raw = RawHeader {
            from: Some(organ(&self.agencies[sender], true)),
            to: recipients
                .iter()
                .map(|&r| organ(&self.agencies[r], false))
                .collect(),
            code_number: number.to_string(),
            code_notation: self.tag.notation.clone(),
            promulgation_place: "Hà Nội".into(),
            promulgation_date: self.tag.date.clone(),
            document_type: 1,
            document_type_name: "Công văn".into(),
            subject: format!(
                "Văn bản thử tải số {number} kèm tệp {}",
                ByteSize(self.body.size)
            ),
            page_count: 1,
            attachments: vec![RawAttachment {
                name: "van-ban.pdf".into(),
                media_type: "application/pdf".into(),
                size_bytes: self.body.size,
                sha256: digest.to_vec(),
            }],
            ..RawHeader::default()
        };
        let header = header_bytes(&raw);
        let key = &self.keys[sender];
        let signing = |error: truc_domain::SignatureError| BenchError::Setup(error.to_string());
        let signature = key.sign_envelope(&header).map_err(signing)?;
        let document_id = document_id_of(&raw);
        let document_signature = if self.sign_documents {
            Some(DocumentSignature {
                signer_certificate: self.credentials[sender].certificate_der().to_vec(),
                signature: key
                    .sign_document(&document_id, &[digest])
                    .map_err(signing)?,
            })
        } else {
            None
        };
        Ok(AttachmentEnvelope {
            index,
            sender,
            recipients: recipients.len(),
            document_id,
            envelope: SignedEnvelope {
                header,
                signature,
                document_signature,
            },
        })
    }
}

/// Sends one document as the node's client does: the envelope, then the
/// attachment in chunks, made as the stream takes them.
async fn send_streamed(
    client: &AxisClient,
    document: &AttachmentEnvelope,
    body: Arc<AttachmentBody>,
) -> Result<SendReceipt, ClientError> {
    let index = document.index;
    client
        .send_streamed(&document.envelope, || {
            AttachmentBody::chunks_of(body.clone(), index)
        })
        .await
}

/// One connection per sending agency for the streamed sends.
async fn connect_senders(
    bench: &Bench<'_>,
    agencies: &[Agency],
) -> Result<Vec<AxisClient>, BenchError> {
    let roots = bench.target.pki.trust_roots()?;
    let mut clients = Vec::with_capacity(agencies.len());
    for (index, agency) in agencies.iter().enumerate() {
        let credentials = bench.target.pki.agency_credentials(&agency.code)?;
        // With several hubs, agency `index` starts on the `index`-th, as the fleet does.
        let address = bench.target.hubs.rotated(index).first();
        let client = tokio::time::timeout(
            CONNECT_MAX,
            AxisClient::connect(address, &roots, credentials),
        )
        .await
        .map_err(|_| {
            BenchError::Setup(format!(
                "{}: the hub did not accept a connection within {} s",
                agency.code,
                CONNECT_MAX.as_secs()
            ))
        })??;
        clients.push(client);
    }
    Ok(clients)
}

/// What every phase's senders share: each sending agency, its connection,
/// its credentials and its signing key.
struct AttachmentSenders {
    agencies: Vec<Agency>,
    stubs: Arc<Vec<AxisClient>>,
    credentials: Vec<Credentials>,
    keys: Arc<Vec<SigningKey>>,
}

impl AttachmentSenders {
    async fn connect(bench: &Bench<'_>, agencies: Vec<Agency>) -> Result<Self, BenchError> {
        let stubs = Arc::new(connect_senders(bench, &agencies).await?);
        let credentials = agencies
            .iter()
            .map(|a| bench.target.pki.agency_credentials(&a.code))
            .collect::<Result<Vec<_>, _>>()?;
        let keys = Arc::new(
            credentials
                .iter()
                .map(|c| SigningKey::from_pkcs8(&c.key_pkcs8_der))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| BenchError::Setup(error.to_string()))?,
        );
        Ok(AttachmentSenders {
            agencies,
            stubs,
            credentials,
            keys,
        })
    }
}

/// The scenario's figures before any phase: how they are measured.
fn attachments_figures(options: &BenchOptions) -> AttachmentsFigures {
    AttachmentsFigures {
        chunk_bytes: CHUNK_BYTES,
        recipients_mean: options.fanout.mean(),
        deliveries: "included: every recipient's node is connected during the phase, \
                     receives and acknowledges each delivery, and the phase ends when all \
                     have arrived (the figures per second count the sends only, first send \
                     to last acknowledgement); attachments up to the hub's \
                     delivery.inline_attachment_bytes_max (64 KiB by default) travel in the \
                     delivery, larger ones are not fetched"
            .to_owned(),
        disk_method: format!(
            "before each phase, the same size written again and again to a new file beside \
             the hub's data directory (same file system), with an fdatasync after each \
             write, for up to {} s or {} (at least {} writes), as the hub must sync before \
             it acknowledges",
            DISK_PROBE_TIME_MAX.as_secs(),
            ByteSize(DISK_PROBE_BYTES_MAX),
            DISK_PROBE_WRITES_MIN
        ),
        memory_method: format!(
            "the hub process's VmRSS read every {} ms from the phase's start to its last \
             delivery, its highest reading reported (VmHWM is the peak over the process's \
             whole life, so it is reported only beside)",
            RSS_SAMPLE_EVERY.as_millis()
        ),
        hub_limits: None,
        phases: Vec::new(),
    }
}

/// The timed sends of one phase, each streamed on its sender's connection,
/// marked sent in `phase` as it leaves.
async fn send_attachments(
    stubs: &Arc<Vec<AxisClient>>,
    documents: Vec<AttachmentEnvelope>,
    phase: &Arc<PhaseTracker>,
    body: &Arc<AttachmentBody>,
    options: &BenchOptions,
) -> DispatchOutcome {
    let (stubs, phase, body) = (stubs.clone(), phase.clone(), body.clone());
    let slots = sender_slots(stubs.len(), options.concurrency);
    dispatch(
        documents,
        None,
        options.duration,
        options.concurrency,
        phase.origin,
        options.drain_timeout,
        move |document: AttachmentEnvelope, start| {
            let stub = stubs[document.sender].clone();
            let slot = slots[document.sender].clone();
            let (phase, body) = (phase.clone(), body.clone());
            async move {
                let _slot = slot
                    .acquire_owned()
                    .await
                    .map_err(|_| "the sender's slots closed".to_string())?;
                // Marked before sending: a recipient can be handed the
                // document before its sender hears the acknowledgement.
                phase.mark_sent(document.index, start);
                let (document_id, expected) = (document.document_id.clone(), document.recipients);
                let response = send_streamed(&stub, &document, body)
                    .await
                    .map_err(|error| match error {
                        ClientError::Refused(status) => format!(
                            "sending {document_id}: {:?}: {}",
                            status.code(),
                            status.message()
                        ),
                        other => format!("sending {document_id}: {other}"),
                    })?;
                check_response(&document_id, &response, expected)
            }
        },
    )
    .await
}

impl Bench<'_> {
    /// The attachment scenario: for each size, the disk's own figure, then a
    /// timed phase of sends with every recipient's node connected.
    pub(crate) async fn attachments(&mut self) -> Result<(), BenchError> {
        let options = self.options;
        let agencies = bench_agencies(ScenarioKind::Attachments, options.agencies);
        let fleet = Fleet::connect(
            self.target,
            agencies.clone(),
            Some(options.window),
            self.tag.clone(),
            options.verify_deliveries,
        )
        .await?;
        let senders = AttachmentSenders::connect(self, agencies).await?;
        let probe_folder = self.target.data_dir.as_deref().map(disk_probe_folder);
        let mut figures = attachments_figures(options);
        let mut next_index = 0u64;
        for &size in &options.attachment_sizes {
            let count = options.attachments_pool_size(size);
            let indices = next_index..next_index + count as u64;
            let phase = self
                .attachment_phase(
                    &fleet,
                    &senders,
                    probe_folder.as_deref(),
                    size,
                    indices.clone(),
                )
                .await?;
            next_index = indices.end;
            figures.phases.push(phase);
        }
        if let Some(failure) = fleet.context.counters.first_failure() {
            self.report
                .failures
                .push(format!("attachment nodes: {failure}"));
        }
        fleet.stop().await;
        self.report.attachments = Some(figures);
        Ok(())
    }

    /// One size's phase: the disk's figure, the pre-signed pool, the timed
    /// sends, and what the hub, its disk and its memory did meanwhile.
    async fn attachment_phase(
        &mut self,
        fleet: &Fleet,
        senders: &AttachmentSenders,
        probe_folder: Option<&std::path::Path>,
        size: u64,
        indices: std::ops::Range<u64>,
    ) -> Result<AttachmentPhase, BenchError> {
        let options = self.options;
        let label = format!("attachments of {}", ByteSize(size));
        let (disk, disk_unmeasured) = self.measure_disk(&label, probe_folder, size).await;
        let body = {
            let salt = self.tag.salt;
            Arc::new(
                tokio::task::spawn_blocking(move || AttachmentBody::new(size, salt))
                    .await
                    .map_err(|error| BenchError::Setup(error.to_string()))?,
            )
        };
        let signer = Arc::new(AttachmentSigner {
            agencies: senders.agencies.clone(),
            credentials: senders.credentials.clone(),
            keys: senders.keys.clone(),
            tag: self.tag.clone(),
            mix: options.fanout,
            sign_documents: options.sign_documents,
            body: body.clone(),
        });
        let count = (indices.end - indices.start) as usize;
        let (documents, presign_s) = self
            .presign_attachments(&label, signer, indices.clone())
            .await?;

        let counts_before = self.counts().await?;
        let notices_before = fleet
            .context
            .counters
            .notices_arrived
            .load(std::sync::atomic::Ordering::Acquire);
        let data_dir_before = self.data_dir_bytes();
        let pid = self.target.pid;
        let rss_before = pid.and_then(rss_bytes);
        let sampler = pid.map(|pid| RssSampler::start(pid, RSS_SAMPLE_EVERY));
        (self.progress)(&format!(
            "{label}: sending for {:.0} s with every recipient's node connected",
            options.duration.as_secs_f64()
        ));
        let phase = Arc::new(PhaseTracker::new(indices, false));
        fleet.context.set_phase(Some(phase.clone()));
        let cpu = CpuMeter::start(pid);
        let outcome = send_attachments(&senders.stubs, documents, &phase, &body, options).await;
        self.record_dispatch_failures(&label, &outcome);
        let expected = outcome.units;
        let drained = self.drain(&label, fleet, &phase, expected).await;
        let cores = cpu.cores();
        let (peak_sampled, samples) = match (sampler, pid) {
            (Some(sampler), Some(pid)) => sampler.stop(pid),
            _ => (None, 0),
        };
        let settled = self
            .settle(
                &label,
                fleet,
                &phase,
                expected,
                drained,
                (counts_before.total_received, notices_before),
            )
            .await?;
        let hub_documents_accepted = self
            .counts()
            .await?
            .total_sent
            .saturating_sub(counts_before.total_sent);
        let data_dir_growth = data_dir_before
            .zip(self.data_dir_bytes())
            .map(|(before, after)| after.saturating_sub(before));
        let send = send_figures(None, count, presign_s, &outcome, cores);
        let seconds = send.seconds.max(1e-9);
        let attachment_mb_per_second =
            send.documents_acknowledged as f64 * size as f64 / 1e6 / seconds;
        let refused = (outcome.acknowledged == 0 && outcome.failures > 0)
            .then(|| outcome.first_failure.clone().unwrap_or_default());
        let counted = hub_documents_accepted == outcome.acknowledged;
        if !counted {
            self.report.failures.push(format!(
                "{label}: {} documents acknowledged, the hub counts {} accepted",
                outcome.acknowledged, hub_documents_accepted
            ));
        }
        let figures_of_phase = AttachmentPhase {
            attachment_bytes: size,
            refused,
            hub_documents_accepted,
            attachment_mb_per_second,
            deliveries_expected: expected,
            deliveries_received: settled.received,
            hub_arrivals_recorded: settled.hub_arrivals,
            arrived_notices: settled.notices,
            consistent: settled.consistent && counted,
            data_dir_growth_bytes: data_dir_growth,
            data_dir_mb_per_second: data_dir_growth.map(|bytes| bytes as f64 / 1e6 / seconds),
            hub_over_disk_percent: disk
                .as_ref()
                .filter(|disk| disk.mb_per_second > 0.0 && outcome.acknowledged > 0)
                .map(|disk| attachment_mb_per_second * 100.0 / disk.mb_per_second),
            disk,
            disk_unmeasured,
            hub_rss_before_bytes: rss_before,
            hub_peak_rss_sampled_bytes: peak_sampled,
            hub_rss_samples: samples,
            hub_lifetime_peak_rss_bytes: pid.and_then(peak_rss_bytes),
            send,
        };
        (self.progress)(&format!(
            "{label}: {:.0} documents/s, {:.1} MB/s of attachments{}",
            figures_of_phase.send.documents_per_second,
            figures_of_phase.attachment_mb_per_second,
            figures_of_phase
                .hub_over_disk_percent
                .map(|percent| format!(" ({percent:.0} % of the disk's)"))
                .unwrap_or_default()
        ));
        Ok(figures_of_phase)
    }

    /// Signs the phase's pool before the timed sends, as signing is not
    /// measured; returns the documents and the seconds it took.
    async fn presign_attachments(
        &self,
        label: &str,
        signer: Arc<AttachmentSigner>,
        indices: std::ops::Range<u64>,
    ) -> Result<(Vec<AttachmentEnvelope>, f64), BenchError> {
        (self.progress)(&format!(
            "{label}: pre-signing {} envelopes before the timed phase (signing is not \
             measured)",
            group(indices.end - indices.start)
        ));
        let presigning = Instant::now();
        let documents = sign_in_parallel(indices, move |index| {
            let signer = signer.clone();
            async move { signer.sign(index) }
        })
        .await?;
        Ok((documents, presigning.elapsed().as_secs_f64()))
    }

    /// The disk's sequential write + fdatasync bandwidth in writes of
    /// `size`, or why it was not measured.
    async fn measure_disk(
        &self,
        label: &str,
        folder: Option<&std::path::Path>,
        size: u64,
    ) -> (Option<DiskBandwidth>, Option<String>) {
        let Some(folder) = folder else {
            return (
                None,
                Some("the hub's data directory is unknown (give --data-dir with --hub)".into()),
            );
        };
        (self.progress)(&format!(
            "{label}: measuring the disk in {}: writes of {} with an fdatasync after each",
            folder.display(),
            ByteSize(size)
        ));
        let folder = folder.to_owned();
        let time_max = DISK_PROBE_TIME_MAX.min(self.options.duration);
        let measured = tokio::task::spawn_blocking(move || {
            sequential_write_sync(
                &folder,
                size,
                time_max,
                DISK_PROBE_BYTES_MAX,
                DISK_PROBE_WRITES_MIN,
            )
        })
        .await;
        match measured {
            Ok(Ok(disk)) => (Some(disk), None),
            Ok(Err(error)) => (None, Some(error.to_string())),
            Err(error) => (None, Some(error.to_string())),
        }
    }

    fn data_dir_bytes(&self) -> Option<u64> {
        self.target
            .data_dir
            .as_deref()
            .and_then(|dir| disk_bytes(dir).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(body: &AttachmentBody, index: u64) -> Vec<u8> {
        body.chunks(index).flatten().collect()
    }

    #[test]
    fn each_document_has_an_attachment_of_its_own_with_the_digest_it_declares() {
        for size in [64, 1024, CHUNK_BYTES as u64, 3 * CHUNK_BYTES as u64 + 10] {
            let body = AttachmentBody::new(size, 42);
            let first = whole(&body, 0);
            let second = whole(&body, 1);
            assert_eq!(first.len() as u64, size);
            assert_ne!(first, second, "{size}");
            assert_eq!(
                body.digest(7).as_slice(),
                ring::digest::digest(&SHA256, &whole(&body, 7)).as_ref(),
                "{size}"
            );
            // Chunks are the node's: full ones, then the rest.
            let lengths: Vec<usize> = body.chunks(3).map(|chunk| chunk.len()).collect();
            let full = (size as usize) / CHUNK_BYTES;
            assert!(lengths[..full].iter().all(|&l| l == CHUNK_BYTES), "{size}");
            assert_eq!(lengths.len(), (size as usize).div_ceil(CHUNK_BYTES));
        }
        assert!(whole(&AttachmentBody::new(1024, 1), 0).starts_with(b"%PDF-1.4\n"));
        assert_ne!(
            whole(&AttachmentBody::new(1024, 1), 0),
            whole(&AttachmentBody::new(1024, 2), 0),
            "another run, other bytes"
        );
        assert_eq!(
            AttachmentBody::new(64, 0).suffix(u64::MAX).len(),
            DISTINCT_SUFFIX_BYTES
        );
    }

    #[tokio::test]
    async fn signed_envelopes_verify_and_declare_the_attachment() {
        let dir = tempfile::tempdir().unwrap();
        let agencies = bench_agencies(ScenarioKind::Attachments, 5);
        let pairs: Vec<(String, String)> = agencies
            .iter()
            .map(|a| (a.code.clone(), a.name.clone()))
            .collect();
        let pki =
            truc_pki::init_dev_pki(dir.path(), &pairs, &[], Duration::from_secs(3600)).unwrap();
        let credentials: Vec<Credentials> = agencies
            .iter()
            .map(|a| pki.agency_credentials(&a.code).unwrap())
            .collect();
        let keys = Arc::new(
            credentials
                .iter()
                .map(|c| SigningKey::from_pkcs8(&c.key_pkcs8_der).unwrap())
                .collect(),
        );
        let body = Arc::new(AttachmentBody::new(100_000, 9));
        let signer = AttachmentSigner {
            agencies: agencies.clone(),
            credentials: credentials.clone(),
            keys,
            tag: RunTag::new(),
            mix: "3.63".parse().unwrap(),
            sign_documents: true,
            body: body.clone(),
        };
        for index in [0, 1, 99] {
            let document = signer.sign(index).unwrap();
            let key =
                truc_pki::certificate_public_key(credentials[document.sender].certificate_der())
                    .unwrap();
            let envelope = &document.envelope;
            truc_domain::verify_envelope(&key, &envelope.header, &envelope.signature).unwrap();
            let header = truc_node::compose::decode_header(&envelope.header).unwrap();
            assert_eq!(header.attachments.len(), 1);
            assert_eq!(header.attachments[0].size_bytes, 100_000);
            assert_eq!(header.attachments[0].sha256, body.digest(index).to_vec());
            assert_eq!(header.to.len(), document.recipients);
            assert_eq!(signer.tag.index_of(&document.document_id), Some(index));
            assert!(envelope.document_signature.is_some());
        }
    }
}

//! One bench run: the selected scenarios in order (intake, fan-out, moves,
//! or the attachment sizes), each on its own agencies, then the NATS
//! comparison if asked.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use truc_node::AxisClient;

use crate::agencies::{bench_agencies, Agency, ScenarioKind};
use crate::documents::{presign, DocumentMaker, RunTag, SignedDocument};
use crate::error::BenchError;
use crate::hub_process::HubTarget;
use crate::nodes::{Fleet, PhaseTracker};
use crate::options::{BenchOptions, RateSpec};
use crate::report::{
    group, sent_how, BenchReport, FanoutFigures, HubDescription, Machine, MovesFigures,
    ResourceSample, SendFigures, Settings, HUB_DURABILITY,
};
use crate::resources::{disk_bytes, rss_and_peak_bytes, CpuMeter};
use crate::scenarios::{move_statuses, send_to_hub, wait_until, DispatchOutcome};

/// Longest wait for the hub's counters to show arrivals it was sent: an
/// acknowledgement on the delivery stream has no reply, so they can lag.
const COUNTS_WAIT_MAX: Duration = Duration::from_secs(30);
/// A preparation phase is bounded by the drain timeout, not by a duration.
const UNBOUNDED_PHASE: Duration = Duration::from_secs(24 * 3600);
/// Longest wait for one `Counts` call: a hub that cannot answer a read for
/// this long is reported, not waited for.
const COUNTS_CALL_MAX: Duration = Duration::from_secs(30);
/// How often a long wait for deliveries says how far it has got.
const DRAIN_REPORT_EVERY: Duration = Duration::from_secs(10);

/// Runs the scenarios `options` selects against the hub at `target`, telling
/// `progress` what it is doing.
pub async fn run(
    options: &BenchOptions,
    target: &HubTarget,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<BenchReport, BenchError> {
    let problems = options.problems();
    if !problems.is_empty() {
        return Err(BenchError::Usage(problems.join("; ")));
    }
    let kinds: Vec<ScenarioKind> = ScenarioKind::ALL
        .into_iter()
        .filter(|kind| options.scenario.includes(*kind))
        .collect();
    let needed: Vec<Agency> = kinds
        .iter()
        .flat_map(|kind| bench_agencies(*kind, options.agencies))
        .collect();
    target.check_certificates(needed.iter().map(|a| a.code.as_str()))?;
    let operator = target.operator_client().await?;
    let tag = RunTag::new();
    let mut report = BenchReport {
        started_at_unix_ms: tag.salt as i64,
        machine: Machine::this_one(),
        hub: HubDescription {
            spawned: target.spawned,
            address: target.hubs.to_string(),
            pid: target.pid,
            durability: target
                .durability
                .clone()
                .unwrap_or_else(|| HUB_DURABILITY.to_owned()),
        },
        settings: Settings {
            duration_s: options.duration.as_secs_f64(),
            concurrency: options.concurrency,
            attachment_bytes: options.attachment_bytes,
            recipients_mean: options.fanout.mean(),
            agencies_per_scenario: options.agencies,
            window: options.window,
            rate: match options.rate {
                RateSpec::Unpaced => "unpaced".to_owned(),
                RateSpec::PerSecond(rate) => format!("{rate} documents/s"),
                RateSpec::HalfOfMeasured => "unpaced, then half the measured rate".to_owned(),
            },
            presigned: true,
            verify_deliveries: options.verify_deliveries,
            sign_documents: options.sign_documents,
            payload_bytes_mean: 0.0,
        },
        ..BenchReport::default()
    };
    let mut bench = Bench {
        options,
        target,
        operator,
        tag,
        progress,
        report: &mut report,
    };
    // Memory at the start, to compare with the end of a long (soak) run.
    bench.sample("start").await;
    if options.scenario.includes(ScenarioKind::Intake) {
        bench.intake().await?;
        bench.sample("intake").await;
    }
    if options.scenario.includes(ScenarioKind::Fanout) {
        bench.fanout().await?;
        bench.sample("fanout").await;
    }
    if options.scenario.includes(ScenarioKind::Moves) {
        bench.moves().await?;
        bench.sample("moves").await;
    }
    if options.scenario.includes(ScenarioKind::Attachments) {
        bench.attachments().await?;
        bench.sample("attachments").await;
    }
    #[cfg(feature = "nats")]
    if let Some(nats) = &options.nats {
        // The ratio is taken against the first fan-out phase, at its pace.
        let (hub_rate, pace) = report
            .fanout
            .first()
            .map(|f| (Some(f.deliveries_per_second), f.send.rate))
            .unwrap_or((None, None));
        let comparison =
            crate::nats::compare(options, nats, target, hub_rate, pace, progress).await?;
        for mode in &comparison.modes {
            if mode.measured && mode.failures > 0 {
                report.failures.push(format!(
                    "{}: {} failures; the first: {}",
                    mode.mode,
                    mode.failures,
                    mode.first_failure.as_deref().unwrap_or("?")
                ));
            }
        }
        report.nats = Some(comparison);
    }
    Ok(report)
}

pub(crate) struct Bench<'a> {
    pub(crate) options: &'a BenchOptions,
    pub(crate) target: &'a HubTarget,
    operator: AxisClient,
    pub(crate) tag: RunTag,
    pub(crate) progress: &'a (dyn Fn(&str) + Sync),
    pub(crate) report: &'a mut BenchReport,
}

impl Bench<'_> {
    /// The nodes of `kind`'s agencies, each receiving within the window
    /// (and checking what it receives if the options say so).
    async fn receiving_fleet(&self, kind: ScenarioKind) -> Result<Fleet, BenchError> {
        let agencies = bench_agencies(kind, self.options.agencies);
        Fleet::connect(
            self.target,
            agencies,
            Some(self.options.window),
            self.tag.clone(),
            self.options.verify_deliveries,
        )
        .await
    }

    fn maker(&self, kind: ScenarioKind) -> Result<Arc<DocumentMaker>, BenchError> {
        let agencies = bench_agencies(kind, self.options.agencies);
        let credentials = agencies
            .iter()
            .map(|a| self.target.pki.agency_credentials(&a.code))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(DocumentMaker {
            agencies,
            credentials,
            tag: self.tag.clone(),
            mix: self.options.fanout,
            attachment_bytes: self.options.attachment_bytes,
            sign_documents: self.options.sign_documents,
        }))
    }

    /// Signs documents `first..first + count`, saying so, untimed.
    async fn presign(
        &mut self,
        maker: &Arc<DocumentMaker>,
        first: u64,
        count: usize,
        label: &str,
    ) -> Result<(Vec<SignedDocument>, f64), BenchError> {
        (self.progress)(&format!(
            "{label}: pre-signing {} envelopes before the timed phase (signing is not measured)",
            group(count as u64)
        ));
        let started = Instant::now();
        // This phase's documents follow the earlier phases' (ids must not repeat).
        let documents = presign(maker.clone(), first..first + count as u64).await?;
        let seconds = started.elapsed().as_secs_f64();
        if self.report.settings.payload_bytes_mean == 0.0 && !documents.is_empty() {
            let sample = &documents[..documents.len().min(100)];
            self.report.settings.payload_bytes_mean =
                sample.iter().map(|d| d.payload().len() as f64).sum::<f64>() / sample.len() as f64;
        }
        Ok((documents, seconds))
    }

    /// The paces of a send scenario: one phase, or two with `half`.
    fn paces(&self) -> Vec<Option<f64>> {
        match self.options.rate {
            RateSpec::Unpaced | RateSpec::HalfOfMeasured => vec![None],
            RateSpec::PerSecond(rate) => vec![Some(rate)],
        }
    }

    pub(crate) fn record_dispatch_failures(&mut self, label: &str, outcome: &DispatchOutcome) {
        if outcome.failures > 0 {
            self.report.failures.push(format!(
                "{label}: {} sends failed; the first: {}",
                outcome.failures,
                outcome.first_failure.as_deref().unwrap_or("?")
            ));
        }
    }

    /// Sends a phase's documents through the fleet at `pace` for the run's
    /// duration, then waits for the answers still out.
    async fn send_timed(
        &self,
        fleet: &Fleet,
        documents: Vec<SignedDocument>,
        phase: Arc<PhaseTracker>,
        pace: Option<f64>,
    ) -> DispatchOutcome {
        send_to_hub(
            &fleet.clients,
            documents,
            phase,
            pace,
            self.options.duration,
            self.options.concurrency,
            self.options.drain_timeout,
        )
        .await
    }

    async fn intake(&mut self) -> Result<(), BenchError> {
        let agencies = bench_agencies(ScenarioKind::Intake, self.options.agencies);
        let fleet = Fleet::connect(self.target, agencies, None, self.tag.clone(), false).await?;
        let maker = self.maker(ScenarioKind::Intake)?;
        let mut paces = self.paces();
        let mut next_index = 0u64;
        let mut phase_number = 0;
        while phase_number < paces.len() {
            let pace = paces[phase_number];
            let count = self.options.pool_size(pace);
            let label = format!("intake ({})", pace_name(pace));
            let (documents, presign_s) = self.presign(&maker, next_index, count, &label).await?;
            (self.progress)(&format!(
                "{label}: sending for {:.0} s",
                self.options.duration.as_secs_f64()
            ));
            let phase = Arc::new(PhaseTracker::new(
                next_index..next_index + count as u64,
                false,
            ));
            let cpu = CpuMeter::start(self.target.pid);
            let outcome = self.send_timed(&fleet, documents, phase, pace).await;
            let cores = cpu.cores();
            next_index += count as u64;
            self.record_dispatch_failures(&label, &outcome);
            let figures = send_figures(pace, count, presign_s, &outcome, cores);
            (self.progress)(&format!(
                "{label}: {:.0} documents/s",
                figures.documents_per_second
            ));
            if self.options.rate == RateSpec::HalfOfMeasured && pace.is_none() {
                paces.push(Some(figures.documents_per_second / 2.0));
            }
            self.report.intake.push(figures);
            phase_number += 1;
        }
        fleet.stop().await;
        Ok(())
    }

    async fn fanout(&mut self) -> Result<(), BenchError> {
        let fleet = self.receiving_fleet(ScenarioKind::Fanout).await?;
        let maker = self.maker(ScenarioKind::Fanout)?;
        let mut paces = self.paces();
        let mut next_index = 0u64;
        let mut phase_number = 0;
        while phase_number < paces.len() {
            let pace = paces[phase_number];
            let count = self.options.pool_size(pace);
            let label = format!("fan-out ({})", pace_name(pace));
            let (documents, presign_s) = self.presign(&maker, next_index, count, &label).await?;
            let arrivals_before = self.counts().await?.total_received;
            let notices_before = fleet
                .context
                .counters
                .notices_arrived
                .load(Ordering::Acquire);
            (self.progress)(&format!(
                "{label}: sending for {:.0} s with every recipient's node connected",
                self.options.duration.as_secs_f64()
            ));
            let phase = Arc::new(PhaseTracker::new(
                next_index..next_index + count as u64,
                false,
            ));
            fleet.context.set_phase(Some(phase.clone()));
            let cpu = CpuMeter::start(self.target.pid);
            let outcome = self
                .send_timed(&fleet, documents, phase.clone(), pace)
                .await;
            next_index += count as u64;
            self.record_dispatch_failures(&label, &outcome);
            let expected = outcome.units;
            let drained = self.drain(&label, &fleet, &phase, expected).await;
            let cores = cpu.cores();
            let settled = self
                .settle(
                    &label,
                    &fleet,
                    &phase,
                    expected,
                    drained,
                    (arrivals_before, notices_before),
                )
                .await?;
            let until_last = phase.until_last_delivery();
            let send = send_figures(pace, count, presign_s, &outcome, cores);
            let figures = FanoutFigures {
                deliveries_expected: expected,
                deliveries_received: settled.received,
                seconds_until_last_delivery: until_last.as_secs_f64(),
                deliveries_per_second: settled.received as f64 / until_last.as_secs_f64().max(1e-9),
                send_to_delivery: phase.send_to_delivery.summary(),
                arrived_notices: settled.notices,
                hub_arrivals_recorded: settled.hub_arrivals,
                consistent: settled.consistent,
                send,
            };
            (self.progress)(&format!(
                "{label}: {:.0} deliveries/s",
                figures.deliveries_per_second
            ));
            if self.options.rate == RateSpec::HalfOfMeasured && pace.is_none() {
                paces.push(Some(figures.send.documents_per_second / 2.0));
            }
            self.report.fanout.push(figures);
            phase_number += 1;
        }
        if let Some(failure) = fleet.context.counters.first_failure() {
            self.report
                .failures
                .push(format!("fan-out nodes: {failure}"));
        }
        fleet.stop().await;
        Ok(())
    }

    /// The hub's live counters, or an error if it cannot answer in time.
    pub(crate) async fn counts(&self) -> Result<truc_domain::views::Counts, BenchError> {
        tokio::time::timeout(COUNTS_CALL_MAX, self.operator.counts("", ""))
            .await
            .map_err(|_| {
                BenchError::Setup(format!(
                    "the hub did not answer Counts within {} s",
                    COUNTS_CALL_MAX.as_secs()
                ))
            })?
            .map_err(BenchError::from)
    }

    /// Waits up to the drain timeout for `expected` deliveries of `phase`,
    /// saying every few seconds how far it has got, so that a slow hub is
    /// told from a stuck bench.
    pub(crate) async fn drain(
        &self,
        label: &str,
        fleet: &Fleet,
        phase: &PhaseTracker,
        expected: u64,
    ) -> bool {
        let deadline = Instant::now() + self.options.drain_timeout;
        loop {
            let slice = DRAIN_REPORT_EVERY.min(deadline.saturating_duration_since(Instant::now()));
            let done = wait_until(&fleet.context.counters, slice, || {
                phase.delivered_count() >= expected
            })
            .await;
            if done
                || Instant::now() >= deadline
                || fleet.context.counters.failures.load(Ordering::Acquire) > 0
            {
                return done;
            }
            (self.progress)(&format!(
                "{label}: waiting for deliveries: {} of {} so far",
                group(phase.delivered_count()),
                group(expected)
            ));
        }
    }

    /// After a phase's drain (`drained`: every delivery came in time), waits
    /// for the senders' arrival notices and the hub's arrival counts to
    /// catch up with what was received (untimed), ends the phase, and says
    /// whether all four agree; `before` is (the hub's arrivals, the notices)
    /// at the phase's start.
    pub(crate) async fn settle(
        &mut self,
        label: &str,
        fleet: &Fleet,
        phase: &PhaseTracker,
        expected: u64,
        drained: bool,
        (arrivals_before, notices_before): (u64, u64),
    ) -> Result<Settled, BenchError> {
        let received = phase.delivered_count();
        if !drained {
            self.report.failures.push(format!(
                "{label}: {} of {} deliveries arrived within {} s after the sends",
                group(received),
                group(expected),
                self.options.drain_timeout.as_secs()
            ));
        }
        let counters = &fleet.context.counters;
        wait_until(counters, COUNTS_WAIT_MAX, || {
            counters.notices_arrived.load(Ordering::Acquire) - notices_before >= received
        })
        .await;
        let hub_arrivals = self.wait_for_arrivals(arrivals_before, received).await?;
        let notices = counters.notices_arrived.load(Ordering::Acquire) - notices_before;
        fleet.context.set_phase(None);
        let consistent = received == expected && hub_arrivals == received && notices == received;
        if !consistent {
            self.report.failures.push(format!(
                "{label}: {} deliveries expected, {} received, {} arrivals counted by the hub, \
                 {} arrival notices",
                expected, received, hub_arrivals, notices
            ));
        }
        Ok(Settled {
            received,
            hub_arrivals,
            notices,
            consistent,
        })
    }

    /// Waits until the hub counts `expected` more arrivals than `before`;
    /// returns how many it counts.
    pub(crate) async fn wait_for_arrivals(
        &self,
        before: u64,
        expected: u64,
    ) -> Result<u64, BenchError> {
        let deadline = Instant::now() + COUNTS_WAIT_MAX;
        loop {
            let counted = self.counts().await?.total_received.saturating_sub(before);
            if counted >= expected || Instant::now() >= deadline {
                return Ok(counted);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn moves(&mut self) -> Result<(), BenchError> {
        let fleet = self.receiving_fleet(ScenarioKind::Moves).await?;
        let maker = self.maker(ScenarioKind::Moves)?;
        let count = self.options.moves_pool_size();
        let label = "status moves";
        let (documents, _) = self.presign(&maker, 0, count, label).await?;
        (self.progress)(&format!(
            "{label}: delivering {} documents first (not timed)",
            group(count as u64)
        ));
        let preparation = Instant::now();
        let arrivals_before = self.counts().await?.total_received;
        let phase = Arc::new(PhaseTracker::new(0..count as u64, true));
        fleet.context.set_phase(Some(phase.clone()));
        let outcome = send_to_hub(
            &fleet.clients,
            documents,
            phase.clone(),
            None,
            UNBOUNDED_PHASE,
            self.options.concurrency,
            self.options.drain_timeout,
        )
        .await;
        self.record_dispatch_failures(label, &outcome);
        let expected = outcome.units;
        let drained = self.drain(label, &fleet, &phase, expected).await;
        // A move before the hub has recorded "arrived" is refused: wait for it.
        let recorded = self.wait_for_arrivals(arrivals_before, expected).await?;
        fleet.context.set_phase(None);
        if !drained || recorded < expected {
            self.report.failures.push(format!(
                "{label}: of {} prepared deliveries {} arrived and the hub recorded {}",
                group(expected),
                group(phase.delivered_count()),
                group(recorded)
            ));
        }
        let preparation_s = preparation.elapsed().as_secs_f64();
        let deliveries = phase
            .arrivals
            .as_ref()
            .map(|a| std::mem::take(&mut *a.lock().unwrap_or_else(|p| p.into_inner())))
            .unwrap_or_default();
        let prepared_deliveries = deliveries.len();
        let notices_before = fleet.context.counters.notices_moved.load(Ordering::Acquire);
        (self.progress)(&format!(
            "{label}: recipients move their deliveries for {:.0} s, {}",
            self.options.duration.as_secs_f64(),
            sent_how(self.options.moves_per_call)
        ));
        let cpu = CpuMeter::start(self.target.pid);
        let moved = move_statuses(
            &fleet.clients,
            deliveries,
            self.options.moves_per_call,
            self.options.duration,
            self.options.concurrency,
            self.options.drain_timeout,
        )
        .await;
        let (hub_cores, bench_cores) = cpu.cores();
        if moved.failures > 0 {
            self.report.failures.push(format!(
                "{label}: {} moves failed; the first: {}",
                moved.failures,
                moved.first_failure.as_deref().unwrap_or("?")
            ));
        }
        let seconds = moved.until_last_move.as_secs_f64();
        let figures = MovesFigures {
            prepared_documents: count,
            prepared_deliveries,
            preparation_s,
            moves_per_call: self.options.moves_per_call,
            moves: moved.moves,
            deliveries_completed: moved.completed,
            move_calls: moved.calls,
            seconds,
            moves_per_second: moved.moves as f64 / seconds.max(1e-9),
            move_call: moved.latency,
            move_notices_received: fleet.context.counters.notices_moved.load(Ordering::Acquire)
                - notices_before,
            failures: moved.failures,
            exhausted: moved.exhausted,
            hub_cores,
            bench_cores,
        };
        (self.progress)(&format!("{label}: {:.0} moves/s", figures.moves_per_second));
        self.report.moves = Some(figures);
        if let Some(failure) = fleet.context.counters.first_failure() {
            self.report.failures.push(format!("moves nodes: {failure}"));
        }
        fleet.stop().await;
        Ok(())
    }

    /// The hub's memory now and at its peak, and bytes on disk per stored document, so far.
    async fn sample(&mut self, after: &str) {
        let documents_stored = match self.counts().await {
            Ok(counts) => counts.total_sent,
            Err(error) => {
                self.report
                    .failures
                    .push(format!("reading the hub's counts after {after}: {error}"));
                0
            }
        };
        let data_dir_bytes = self
            .target
            .data_dir
            .as_deref()
            .and_then(|dir| disk_bytes(dir).ok());
        let (hub_rss_bytes, hub_peak_rss_bytes) =
            self.target.pid.map_or((None, None), rss_and_peak_bytes);
        self.report.resources.push(ResourceSample {
            after: after.to_owned(),
            hub_peak_rss_bytes,
            hub_rss_bytes,
            data_dir_bytes,
            documents_stored,
            bytes_per_document: data_dir_bytes
                .filter(|_| documents_stored > 0)
                .map(|bytes| bytes as f64 / documents_stored as f64),
        });
    }
}

/// A phase's deliveries once they are in.
pub(crate) struct Settled {
    pub(crate) received: u64,
    pub(crate) hub_arrivals: u64,
    pub(crate) notices: u64,
    /// received = expected = the hub's arrivals = the notices.
    pub(crate) consistent: bool,
}

fn pace_name(pace: Option<f64>) -> String {
    match pace {
        None => "unpaced".to_owned(),
        Some(rate) => format!("{rate:.0} documents/s"),
    }
}

pub(crate) fn send_figures(
    pace: Option<f64>,
    presigned: usize,
    presign_s: f64,
    outcome: &DispatchOutcome,
    (hub_cores, bench_cores): (Option<f64>, Option<f64>),
) -> SendFigures {
    SendFigures {
        rate: pace,
        presigned,
        presign_s,
        documents_sent: outcome.started,
        documents_acknowledged: outcome.acknowledged,
        deliveries_queued: outcome.units,
        seconds: outcome.until_last_ack.as_secs_f64(),
        documents_per_second: outcome.rate(),
        send_to_ack: outcome.latency.clone(),
        failures: outcome.failures,
        pool_exhausted: outcome.pool_exhausted,
        hub_cores,
        bench_cores,
    }
}

//! `truc crashtest --power-cut`: the hub's data directory and the nodes' inboxes live on a
//! FUSE file system that loses what was not synced (`truc-faultfs`). At seeded moments, aimed
//! at a send, a delivery, a status move, a checkpoint, a journal segment being created or a
//! payload write, the power stops at one file system request; every process is killed, the
//! unsynced writes are thrown away or torn, and the hub starts again on what remains. After
//! each cut the hub must open with every acknowledged send and move, and every history seen
//! before, or refuse to open naming what is missing; the nodes' applications must still find
//! every document they were told of. The load then completes and the checks of `truc
//! crashtest` run, the last of them on the data directory after a final cut.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use truc_domain::SplitMix64;
use truc_faultfs::{CutMode, CutReport, FaultFs, Operation, PowerSwitch, Trigger};
use truc_node::agent::inbox_name;
use truc_node::AxisClient;
use truc_pki::TrustRoots;

use crate::check::{check_online, print_problems, Checked};
use crate::layout::{setup, Layout, Process, RunFolder};
use crate::load::{deliveries_in_flight, inbox_entries, start_load, Load, Running, AIM_WAIT_MAX};
use crate::plan::{plan, totals, PlannedDocument, OPERATOR, RECIPIENTS};
use crate::CrashtestArgs;

/// How long a cut waits for its trigger's request before the power stops wherever the
/// processes are.
const HIT_WAIT_MAX: Duration = Duration::from_secs(3);
/// Longest wait for the hub to answer (or exit) after a start.
const HUB_START_WAIT_MAX: Duration = Duration::from_secs(60);

/// What a cut aims at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
enum Aim {
    /// A send's group: its journal record written or synced.
    Send,
    /// A node writing a document into its inbox.
    Delivery,
    /// A status move's group.
    Move,
    /// A checkpoint: sled written or synced, a journal segment removed.
    Checkpoint,
    /// The hub starting again: recovery, and the new journal segment it creates.
    Rollover,
    /// A large attachment's bytes reaching the payload log, or its sync.
    Payload,
}

const AIMS: [Aim; 6] = [
    Aim::Send,
    Aim::Delivery,
    Aim::Move,
    Aim::Checkpoint,
    Aim::Rollover,
    Aim::Payload,
];

impl Aim {
    /// The request the power stops at, chosen among the aim's kinds.
    fn trigger(self, rng: &mut SplitMix64) -> (Operation, &'static str) {
        let pick = rng.below_modulo(3);
        match self {
            Aim::Send | Aim::Move => match pick {
                0 => (Operation::Write, "/data/journal/"),
                _ => (Operation::Sync, "/data/journal/"),
            },
            Aim::Delivery => match pick {
                0 => (Operation::Write, "/inbox/"),
                1 => (Operation::Rename, "/inbox/"),
                _ => (Operation::Sync, "/inbox/"),
            },
            Aim::Checkpoint => match pick {
                0 => (Operation::Write, "/data/db"),
                1 => (Operation::Sync, "/data/db"),
                _ => (Operation::Remove, "/data/journal/"),
            },
            // The hub's start creates (or empties) a segment and syncs it: the first sync
            // under the journal after the start.
            Aim::Rollover => (Operation::Sync, "/data/journal"),
            Aim::Payload => match pick {
                0 => (Operation::Sync, "/data/payload/"),
                _ => (Operation::Write, "/data/payload/"),
            },
        }
    }
}

/// One power cut: where it fell and what it took.
#[derive(serde::Serialize)]
struct Cut {
    after_start_ms: u64,
    aim: Aim,
    /// The request the power stopped at; `None` when the trigger was not hit in time and
    /// the power stopped wherever the processes were.
    hit: Option<truc_faultfs::Hit>,
    mode: &'static str,
    sends_in_flight: u64,
    moves_in_flight: u64,
    deliveries_in_flight: u64,
    lost: CutReport,
    /// From the cut until the hub answers an operator call again.
    recovery_ms: u64,
    documents_checked: usize,
    moves_checked: usize,
}

#[derive(serde::Serialize)]
struct Figures {
    seed: u64,
    documents: usize,
    deliveries: usize,
    moves: usize,
    cuts: usize,
    cuts_by_aim: BTreeMap<String, usize>,
    cuts_at_their_request: usize,
    writes_lost: usize,
    writes_torn: usize,
    writes_kept_unsynced: usize,
    entries_lost: usize,
    entries_kept_unsynced: usize,
    acknowledged_sends_checked: usize,
    acknowledged_moves_checked: usize,
    histories_checked: usize,
    /// Notices a node had told its application of, found in its inbox after each cut.
    notices_checked: usize,
    refusals: Vec<String>,
    lost: usize,
    duplicates: usize,
    send_retries: u64,
    move_retries: u64,
    seconds: f64,
    cut_list: Vec<Cut>,
}

/// The documents each node has told its application of, read from its output.
fn told(layout: &Layout) -> HashMap<&'static str, BTreeSet<String>> {
    RECIPIENTS
        .iter()
        .map(|code| {
            let printed = std::fs::read_to_string(layout.root.join(format!("node-{code}.out")))
                .unwrap_or_default();
            let ids = printed
                .lines()
                .filter_map(|line| line.strip_prefix("received "))
                .map(|rest| rest.split(": ").next().unwrap_or(rest).to_owned())
                .collect();
            (*code, ids)
        })
        .collect()
}

/// The notice files each node has told its application of (`status of <id> at <recipient>:
/// <status>` lines), by the name the node gives the file in `.notices`.
fn notices_told(layout: &Layout) -> HashMap<&'static str, BTreeSet<String>> {
    RECIPIENTS
        .iter()
        .map(|code| {
            let printed = std::fs::read_to_string(layout.root.join(format!("node-{code}.out")))
                .unwrap_or_default();
            let files = printed
                .lines()
                .filter_map(|line| line.strip_prefix("status of "))
                .filter_map(|rest| {
                    let (id, rest) = rest.split_once(" at ")?;
                    let (recipient, status) = rest.split_once(": ")?;
                    let status = truc_domain::Status::from_name(status.split(' ').next()?)?;
                    Some(format!(
                        "{}__{recipient}__{:02}.json",
                        inbox_name(id),
                        status.code()
                    ))
                })
                .collect();
            (*code, files)
        })
        .collect()
}

/// Starts the hub and waits until it answers an operator call; `Err` with the end of its
/// log when it exits first (a refusal to open its data).
async fn start_hub(layout: &Layout, roots: &TrustRoots) -> anyhow::Result<(Process, AxisClient)> {
    let mut hub = layout.start_hub()?;
    let credentials = layout.pki.operator_credentials(OPERATOR)?;
    let deadline = Instant::now() + HUB_START_WAIT_MAX;
    loop {
        if let Some(status) = hub.exited() {
            let log = std::fs::read_to_string(layout.root.join("hub.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            bail!(
                "the hub exited ({status}) instead of serving: {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            );
        }
        if let Ok(client) = AxisClient::connect(layout.address, roots, credentials.clone()).await {
            if client.counts("", "").await.is_ok() {
                return Ok((hub, client));
            }
        }
        if Instant::now() >= deadline {
            bail!("the hub did not answer within {HUB_START_WAIT_MAX:?} of its start");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every acknowledged send and move, and every history seen at the last check, must be on
/// the hub; returns the problems and how many documents and moves were checked.
async fn check_after_cut(
    operator: &AxisClient,
    documents: &[PlannedDocument],
    sends: &BTreeSet<usize>,
    moves: &BTreeSet<(usize, &'static str, u32)>,
    seen: &mut BTreeMap<(usize, &'static str), Vec<u32>>,
) -> (Vec<String>, usize) {
    let mut problems = Vec::new();
    let mut indexes: BTreeSet<usize> = sends.clone();
    indexes.extend(seen.keys().map(|(index, _)| *index));
    let mut checked = 0;
    for index in indexes {
        let id = documents[index].draft().document_id();
        let status = match operator.get_status(&id).await {
            Ok(status) => status,
            Err(error) => {
                problems.push(format!(
                    "{id}: acknowledged, not on the hub after the cut: {error}"
                ));
                continue;
            }
        };
        checked += 1;
        for (recipient, _) in &documents[index].recipients {
            let codes: Vec<u32> = status
                .recipients
                .iter()
                .find(|row| row.recipient == *recipient)
                .map(|row| row.history.iter().map(|e| e.status.code() as u32).collect())
                .unwrap_or_default();
            if let Some(before) = seen.get(&(index, *recipient)) {
                if !codes.starts_with(before) {
                    problems.push(format!(
                        "{id} at {recipient}: history {before:?} before the cut, {codes:?} after"
                    ));
                }
            }
            for (_, _, code) in moves.range((index, *recipient, 0)..=(index, *recipient, u32::MAX))
            {
                if !codes.contains(code) {
                    problems.push(format!(
                        "{id} at {recipient}: acknowledged move {code} lost by the cut"
                    ));
                }
            }
            seen.insert((index, *recipient), codes);
        }
    }
    (problems, checked)
}

/// Checks the stopped hub's data directory in a process of its own: the store's threads end
/// with that process, never after the file system they use is gone.
fn check_stopped_store(data_dir: &Path, args: &CrashtestArgs) -> anyhow::Result<Vec<String>> {
    let output = std::process::Command::new(std::env::current_exe()?)
        .args(["crashtest", "--documents", &args.documents.to_string()])
        .args(["--seed", &args.seed.to_string(), "--check-stopped"])
        .arg(data_dir)
        .stdin(std::process::Stdio::null())
        .output()
        .context("cannot run the data directory's check")?;
    if !output.status.success() {
        bail!(
            "the stopped hub's data directory does not open: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

/// What the cuts found so far.
#[derive(Default)]
struct Findings {
    cuts: Vec<Cut>,
    problems: Vec<String>,
    /// The hub refusing to open what a cut left, naming what is missing.
    refusals: Vec<String>,
    /// Each delivery's history as the last check after a cut saw it.
    seen: BTreeMap<(usize, &'static str), Vec<u32>>,
    lost: usize,
    notices_checked: usize,
}

/// The machine whose power is cut: the processes running on it first (so that they are
/// killed before the file system under them goes away), the run's files and plan, and the
/// power-cut file system with its switch.
struct Machine {
    hub: Process,
    running: Running,
    layout: Arc<Layout>,
    roots: TrustRoots,
    documents: Arc<Vec<PlannedDocument>>,
    started: Instant,
    switch: PowerSwitch,
    disk: FaultFs,
}

pub(crate) async fn run(args: CrashtestArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let folder = RunFolder::create(args.keep.as_ref(), "truc-power-")?;
    let mount = folder.path().join("disk");
    std::fs::create_dir_all(&mount)?;
    let disk = FaultFs::mount(&mount).context("the power-cut file system")?;
    let switch: PowerSwitch = disk.switch();
    let mut rng = SplitMix64::new(args.seed);
    let documents = Arc::new(plan(args.documents, &mut rng));
    let layout = Arc::new(setup(folder.path(), &mount)?);
    let roots = layout.pki.trust_roots()?;
    let rate = args.rate.unwrap_or_else(|| spread_rate(&args));

    let (hub, _) = start_hub(&layout, &roots).await?;
    let running = start_load(&layout, &roots, &documents, rate, args.concurrency)?;
    let load = running.load.clone();
    let mut machine = Machine {
        hub,
        running,
        layout,
        roots,
        documents,
        started,
        switch,
        disk,
    };
    let mut findings = Findings::default();
    for round in 0..args.cuts {
        tokio::time::sleep(args.kill_wait(&mut rng)).await;
        let aim = AIMS[round as usize % AIMS.len()];
        if !machine.cut(round, aim, &mut rng, &mut findings).await? {
            break;
        }
    }
    let documents = machine.documents.clone();
    let duplicates = machine.finish(&args, &mut findings).await?;

    let figures = Figures::new(&args, &documents, &load, started, &mut findings, duplicates);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&figures)?)?;
    }
    figures.print();
    let Findings {
        problems, refusals, ..
    } = findings;
    for refusal in &refusals {
        eprintln!("refused: {refusal}");
    }
    if problems.is_empty() && refusals.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    print_problems(&problems);
    eprintln!("{} problems, {} refusals", problems.len(), refusals.len());
    // The file system is unmounted: its contents are gone, the logs are kept.
    folder.keep_failed(&format!("truc-power-failed-{}", args.seed), "logs");
    Ok(ExitCode::FAILURE)
}

/// Sends spread over the cuts, so that every cut falls under load.
fn spread_rate(args: &CrashtestArgs) -> f64 {
    let mean_wait_ms = (args.kill_after_min_ms + args.kill_after_max_ms) as f64 / 2.0;
    (args.documents as f64 / (f64::from(args.cuts) * (mean_wait_ms + 1500.0) / 1000.0)).max(1.0)
}

/// How much of what was not synced a cut takes, drawn from the run's generator.
fn cut_mode(rng: &mut SplitMix64) -> (CutMode, &'static str) {
    match rng.below_modulo(4) {
        0 => (CutMode::LoseAll, "lose-all"),
        1 => (CutMode::KeepNames, "keep-names"),
        _ => {
            let seed = rng.next_u64();
            (CutMode::Torn { seed }, "torn")
        }
    }
}

/// The machine is off: every process dies where it stands.
fn power_off(switch: &PowerSwitch, hub: &mut Process, nodes: &mut BTreeMap<&'static str, Process>) {
    hub.signal_kill();
    for node in nodes.values_mut() {
        node.signal_kill();
    }
    switch.power_off();
    hub.kill_9();
    for node in nodes.values_mut() {
        node.kill_9();
    }
}

impl Machine {
    /// One power cut aimed at `aim`, the checks after it, and the hub and nodes started
    /// again; `false` when the hub refused to open what the cut left, which ends the cuts.
    async fn cut(
        &mut self,
        round: u32,
        aim: Aim,
        rng: &mut SplitMix64,
        findings: &mut Findings,
    ) -> anyhow::Result<bool> {
        let load = self.running.load.clone();
        let pending = self.wait_for_aim(aim).await?;
        let hit = self.stop_power_at(aim, rng).await?;
        let at = self.started.elapsed();
        let in_flight = (
            load.sends_in_flight.load(Ordering::SeqCst),
            load.moves_in_flight.load(Ordering::SeqCst),
        );
        power_off(&self.switch, &mut self.hub, &mut self.running.nodes);
        // No process is left to acknowledge anything: this is what was promised.
        let sends = load.acknowledged.lock().expect("acks").clone();
        let moves_acknowledged = load.moves_acknowledged.lock().expect("moves").clone();
        let told_before = told(&self.layout);
        let notices_before = notices_told(&self.layout);
        let (mode, mode_name) = cut_mode(rng);
        let report = self.disk.cut(mode)?;
        let cut_at = Instant::now();
        findings
            .check_inboxes(&self.layout, round, &told_before, &notices_before)
            .await?;
        let operator = match start_hub(&self.layout, &self.roots).await {
            Ok((started_hub, operator)) => {
                self.hub = started_hub;
                operator
            }
            Err(error) => {
                findings.refusals.push(format!(
                    "cut {} ({aim:?}, {mode_name}): {error:#}",
                    round + 1
                ));
                eprintln!("cut {}: {error:#}", round + 1);
                return Ok(false);
            }
        };
        let (found, documents_checked) = check_after_cut(
            &operator,
            &self.documents,
            &sends,
            &moves_acknowledged,
            &mut findings.seen,
        )
        .await;
        findings.lost += found.len();
        findings
            .problems
            .extend(found.into_iter().map(|p| format!("cut {}: {p}", round + 1)));
        for code in RECIPIENTS {
            self.running
                .nodes
                .insert(code, self.layout.start_node(code)?);
        }
        eprintln!(
            "cut {} at {aim:?} ({}): {} writes lost, {} torn, {} names lost; {} sends, {} \
             deliveries, {} moves in flight; serving again after {} ms, {} documents checked",
            round + 1,
            hit.as_ref().map_or("anywhere".to_string(), |h| format!(
                "{:?} {}",
                h.operation, h.path
            )),
            report.writes_lost,
            report.writes_torn,
            report.entries_lost,
            in_flight.0,
            pending,
            in_flight.1,
            cut_at.elapsed().as_millis(),
            documents_checked,
        );
        findings.cuts.push(Cut {
            after_start_ms: at.as_millis() as u64,
            aim,
            hit,
            mode: mode_name,
            sends_in_flight: in_flight.0,
            moves_in_flight: in_flight.1,
            deliveries_in_flight: pending,
            lost: report,
            recovery_ms: cut_at.elapsed().as_millis() as u64,
            documents_checked,
            moves_checked: moves_acknowledged.len(),
        });
        if let Some(failure) = load.failure.lock().expect("failure").clone() {
            bail!("the load failed: {failure}");
        }
        Ok(true)
    }

    /// Waits (briefly) for the kind of work the cut aims at; returns the deliveries not yet
    /// in their inbox.
    async fn wait_for_aim(&self, aim: Aim) -> anyhow::Result<u64> {
        let load = &self.running.load;
        let aim_until = Instant::now() + AIM_WAIT_MAX;
        loop {
            let pending = {
                let (layout, documents, load) =
                    (self.layout.clone(), self.documents.clone(), load.clone());
                tokio::task::spawn_blocking(move || {
                    deliveries_in_flight(&layout, &documents, &load)
                })
                .await?
            };
            let ready = match aim {
                Aim::Send | Aim::Payload => load.sends_in_flight.load(Ordering::SeqCst) > 0,
                Aim::Move => load.moves_in_flight.load(Ordering::SeqCst) > 0,
                Aim::Delivery => pending > 0,
                Aim::Checkpoint | Aim::Rollover => true,
            };
            if ready || Instant::now() >= aim_until {
                return Ok(pending);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Arms the switch at a request of the aim's kind and waits for it; `None` when it did
    /// not come in time and the power stopped wherever the processes were.
    async fn stop_power_at(
        &mut self,
        aim: Aim,
        rng: &mut SplitMix64,
    ) -> anyhow::Result<Option<truc_faultfs::Hit>> {
        let (operation, path_contains) = aim.trigger(rng);
        if aim == Aim::Rollover {
            // The hub stops (a crash, not yet a cut) and the cut falls while it starts again.
            self.hub.kill_9();
        }
        self.switch.arm(Trigger {
            operation,
            path_contains: path_contains.into(),
            skip: rng.below_modulo(3),
            apply_first: rng.below_modulo(2) == 1,
        });
        if aim == Aim::Rollover {
            self.hub = self.layout.start_hub()?;
        }
        let hit = {
            let switch = self.switch.clone();
            tokio::task::spawn_blocking(move || switch.wait_hit(HIT_WAIT_MAX)).await?
        };
        if hit.is_none() {
            self.switch.stop_power();
        }
        Ok(hit)
    }

    /// After the cuts: the load completes and the checks of `truc crashtest` run, then a
    /// last cut with every process stopped and the data directory is checked itself; after
    /// a refusal the load is abandoned. Returns the duplicates found, and unmounts the file
    /// system.
    async fn finish(self, args: &CrashtestArgs, findings: &mut Findings) -> anyhow::Result<usize> {
        let Machine {
            mut hub,
            running,
            layout,
            roots,
            documents,
            switch,
            mut disk,
            ..
        } = self;
        let mut duplicates = 0;
        if findings.refusals.is_empty() {
            let load = running.load.clone();
            let mut nodes = running
                .complete(
                    &layout,
                    &documents,
                    Duration::from_secs(args.settle_timeout_secs),
                )
                .await?;
            let Checked {
                problems: found,
                lost: lost_at_end,
                duplicates: repeated,
            } = check_online(&layout, &roots, &documents, &load).await?;
            findings.problems.extend(found);
            findings.lost += lost_at_end;
            duplicates += repeated;
            // A last cut with every process stopped, then the data directory itself.
            power_off(&switch, &mut hub, &mut nodes);
            disk.cut(CutMode::LoseAll)?;
            findings
                .problems
                .extend(check_stopped_store(&layout.data_dir, args)?);
        } else {
            let Running {
                nodes,
                stop,
                sender,
                movers,
                ..
            } = running;
            stop.store(true, Ordering::SeqCst);
            sender.abort();
            for mover in movers {
                mover.abort();
            }
            hub.kill_9();
            for (_, mut node) in nodes {
                node.kill_9();
            }
        }
        drop(disk);
        Ok(duplicates)
    }
}

impl Findings {
    /// The applications after a cut: every document and notice a node had told its
    /// application of is still in its inbox.
    async fn check_inboxes(
        &mut self,
        layout: &Layout,
        round: u32,
        told_before: &HashMap<&'static str, BTreeSet<String>>,
        notices_before: &HashMap<&'static str, BTreeSet<String>>,
    ) -> anyhow::Result<()> {
        for (code, ids) in told_before {
            let inbox = layout.inbox(code);
            let present = tokio::task::spawn_blocking(move || inbox_entries(&inbox)).await?;
            for id in ids {
                if !present.contains(&inbox_name(id)) {
                    self.lost += 1;
                    self.problems.push(format!(
                        "cut {}: {code} was told of {id}, and the cut took it from the inbox",
                        round + 1
                    ));
                }
            }
        }
        for (code, files) in notices_before {
            let folder = layout.inbox(code).join(".notices");
            let present = tokio::task::spawn_blocking(move || {
                std::fs::read_dir(folder)
                    .map(|entries| {
                        entries
                            .filter_map(Result::ok)
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .collect::<BTreeSet<String>>()
                    })
                    .unwrap_or_default()
            })
            .await?;
            for file in files.difference(&present) {
                self.lost += 1;
                self.problems.push(format!(
                    "cut {}: {code} was told of the notice {file}, and the cut took it",
                    round + 1
                ));
            }
            self.notices_checked += files.len();
        }
        Ok(())
    }
}

impl Figures {
    fn new(
        args: &CrashtestArgs,
        documents: &[PlannedDocument],
        load: &Load,
        started: Instant,
        findings: &mut Findings,
        duplicates: usize,
    ) -> Figures {
        let (deliveries, moves) = totals(documents);
        let cuts = std::mem::take(&mut findings.cuts);
        let mut cuts_by_aim: BTreeMap<String, usize> = BTreeMap::new();
        for cut in &cuts {
            *cuts_by_aim.entry(format!("{:?}", cut.aim)).or_default() += 1;
        }
        Figures {
            seed: args.seed,
            documents: documents.len(),
            deliveries,
            moves,
            cuts: cuts.len(),
            cuts_by_aim,
            cuts_at_their_request: cuts.iter().filter(|c| c.hit.is_some()).count(),
            writes_lost: cuts.iter().map(|c| c.lost.writes_lost).sum(),
            writes_torn: cuts.iter().map(|c| c.lost.writes_torn).sum(),
            writes_kept_unsynced: cuts.iter().map(|c| c.lost.writes_kept).sum(),
            entries_lost: cuts.iter().map(|c| c.lost.entries_lost).sum(),
            entries_kept_unsynced: cuts.iter().map(|c| c.lost.entries_kept).sum(),
            acknowledged_sends_checked: cuts.iter().map(|c| c.documents_checked).sum(),
            acknowledged_moves_checked: cuts.iter().map(|c| c.moves_checked).sum(),
            histories_checked: findings.seen.len(),
            notices_checked: findings.notices_checked,
            refusals: findings.refusals.clone(),
            lost: findings.lost,
            duplicates,
            send_retries: load.send_retries.load(Ordering::Relaxed),
            move_retries: load.move_retries.load(Ordering::Relaxed),
            seconds: started.elapsed().as_secs_f64(),
            cut_list: cuts,
        }
    }

    /// The run in one line.
    fn print(&self) {
        println!(
            "{} power cuts ({} at their aimed request; {}) over {} documents, {} deliveries, {} \
             moves in {:.1} s: {} unsynced writes lost and {} torn, {} directory entries lost; {} \
             acknowledged sends and {} acknowledged moves checked after the cuts; refusals {}, lost \
             {}, duplicates {}",
            self.cuts,
            self.cuts_at_their_request,
            self.cuts_by_aim
                .iter()
                .map(|(aim, n)| format!("{n} {aim}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.documents,
            self.deliveries,
            self.moves,
            self.seconds,
            self.writes_lost,
            self.writes_torn,
            self.entries_lost,
            self.acknowledged_sends_checked,
            self.acknowledged_moves_checked,
            self.refusals.len(),
            self.lost,
            self.duplicates
        );
    }
}

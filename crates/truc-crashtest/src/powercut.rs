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

use crate::crashtest::{
    check_online, deliveries_in_flight, inbox_entries, plan, settle, setup, start_load, Checked,
    CrashtestArgs, Layout, PlannedDocument, Process, Running, OPERATOR, RECIPIENTS,
};

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

pub async fn run(args: CrashtestArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let temporary;
    let root = match &args.keep {
        Some(path) => {
            std::fs::create_dir_all(path)?;
            if std::fs::read_dir(path)?.next().is_some() {
                bail!(
                    "{} is not empty: a crash test starts from nothing",
                    path.display()
                );
            }
            path.clone()
        }
        None => {
            temporary = tempfile::Builder::new().prefix("truc-power-").tempdir()?;
            temporary.path().to_owned()
        }
    };
    let mount = root.join("disk");
    std::fs::create_dir_all(&mount)?;
    let mut disk = FaultFs::mount(&mount).context("the power-cut file system")?;
    let switch: PowerSwitch = disk.switch();
    let mut rng = SplitMix64::new(args.seed);
    let documents = Arc::new(plan(args.documents, &mut rng));
    let deliveries: usize = documents.iter().map(|d| d.recipients.len()).sum();
    let moves: usize = documents
        .iter()
        .flat_map(|d| &d.recipients)
        .map(|(_, m)| m.len())
        .sum();
    let layout = Arc::new(setup(&root, &mount)?);
    let roots = layout.pki.trust_roots()?;
    // Sends spread over the cuts, so that every cut falls under load.
    let mean_wait_ms = (args.kill_after_min_ms + args.kill_after_max_ms) as f64 / 2.0;
    let rate = args.rate.unwrap_or_else(|| {
        (args.documents as f64 / (f64::from(args.cuts) * (mean_wait_ms + 1500.0) / 1000.0)).max(1.0)
    });

    let (mut hub, _) = start_hub(&layout, &roots).await?;
    let Running {
        mut nodes,
        load,
        stop,
        sender,
        movers,
    } = start_load(&layout, &roots, &documents, rate, args.concurrency)?;

    let mut cuts = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    let mut refusals = Vec::new();
    let mut seen: BTreeMap<(usize, &'static str), Vec<u32>> = BTreeMap::new();
    let mut lost = 0usize;
    let mut notices_checked = 0usize;
    for round in 0..args.cuts {
        let span = args
            .kill_after_max_ms
            .saturating_sub(args.kill_after_min_ms)
            + 1;
        tokio::time::sleep(Duration::from_millis(
            args.kill_after_min_ms + rng.below_modulo(span),
        ))
        .await;
        let aim = AIMS[round as usize % AIMS.len()];
        // Wait (briefly) for the kind of work the cut aims at.
        let aim_until = Instant::now() + crate::crashtest::AIM_WAIT_MAX;
        let pending = loop {
            let pending = {
                let (layout, documents, load) = (layout.clone(), documents.clone(), load.clone());
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
                break pending;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let (operation, path_contains) = aim.trigger(&mut rng);
        if aim == Aim::Rollover {
            // The hub stops (a crash, not yet a cut) and the cut falls while it starts again.
            hub.kill_9();
        }
        switch.arm(Trigger {
            operation,
            path_contains: path_contains.into(),
            skip: rng.below_modulo(3),
            apply_first: rng.below_modulo(2) == 1,
        });
        if aim == Aim::Rollover {
            hub = layout.start_hub()?;
        }
        let hit = {
            let switch = switch.clone();
            tokio::task::spawn_blocking(move || switch.wait_hit(HIT_WAIT_MAX)).await?
        };
        if hit.is_none() {
            switch.stop_power();
        }
        let at = started.elapsed();
        let in_flight = (
            load.sends_in_flight.load(Ordering::SeqCst),
            load.moves_in_flight.load(Ordering::SeqCst),
        );
        // The machine is off: every process dies where it stands.
        hub.signal_kill();
        for node in nodes.values_mut() {
            node.signal_kill();
        }
        switch.power_off();
        hub.kill_9();
        for node in nodes.values_mut() {
            node.kill_9();
        }
        // No process is left to acknowledge anything: this is what was promised.
        let sends = load.acknowledged.lock().expect("acks").clone();
        let moves_acknowledged = load.moves_acknowledged.lock().expect("moves").clone();
        let told_before = told(&layout);
        let notices_before = notices_told(&layout);
        let (mode, mode_name) = match rng.below_modulo(4) {
            0 => (CutMode::LoseAll, "lose-all"),
            1 => (CutMode::KeepNames, "keep-names"),
            _ => {
                let seed = rng.next_u64();
                (CutMode::Torn { seed }, "torn")
            }
        };
        let report = disk.cut(mode)?;
        let cut_at = Instant::now();
        // The applications: every document a node told of is still in its inbox.
        for (code, ids) in &told_before {
            let inbox = layout.inbox(code);
            let present = tokio::task::spawn_blocking(move || inbox_entries(&inbox)).await?;
            for id in ids {
                if !present.contains(&inbox_name(id)) {
                    lost += 1;
                    problems.push(format!(
                        "cut {}: {code} was told of {id}, and the cut took it from the inbox",
                        round + 1
                    ));
                }
            }
        }
        for (code, files) in &notices_before {
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
                lost += 1;
                problems.push(format!(
                    "cut {}: {code} was told of the notice {file}, and the cut took it",
                    round + 1
                ));
            }
            notices_checked += files.len();
        }
        let operator = match start_hub(&layout, &roots).await {
            Ok((started_hub, operator)) => {
                hub = started_hub;
                operator
            }
            Err(error) => {
                refusals.push(format!(
                    "cut {} ({aim:?}, {mode_name}): {error:#}",
                    round + 1
                ));
                eprintln!("cut {}: {error:#}", round + 1);
                break;
            }
        };
        let (found, documents_checked) = check_after_cut(
            &operator,
            &documents,
            &sends,
            &moves_acknowledged,
            &mut seen,
        )
        .await;
        lost += found.len();
        problems.extend(found.into_iter().map(|p| format!("cut {}: {p}", round + 1)));
        for code in RECIPIENTS {
            nodes.insert(code, layout.start_node(code)?);
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
        cuts.push(Cut {
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
    }

    let mut duplicates = 0;
    if refusals.is_empty() {
        settle(
            &layout,
            &documents,
            &load,
            Duration::from_secs(args.settle_timeout_secs),
        )
        .await?;
        stop.store(true, Ordering::SeqCst);
        sender.await?;
        for mover in movers {
            mover.await?;
        }
        let Checked {
            problems: found,
            lost: lost_at_end,
            duplicates: repeated,
        } = check_online(&layout, &roots, &documents, &load).await?;
        problems.extend(found);
        lost += lost_at_end;
        duplicates += repeated;
        // A last cut with every process stopped, then the data directory itself.
        hub.signal_kill();
        for node in nodes.values_mut() {
            node.signal_kill();
        }
        switch.power_off();
        hub.kill_9();
        for (_, mut node) in std::mem::take(&mut nodes) {
            node.kill_9();
        }
        disk.cut(CutMode::LoseAll)?;
        problems.extend(check_stopped_store(&layout.data_dir, &args)?);
    } else {
        stop.store(true, Ordering::SeqCst);
        sender.abort();
        for mover in movers {
            mover.abort();
        }
        hub.kill_9();
        for (_, mut node) in std::mem::take(&mut nodes) {
            node.kill_9();
        }
    }
    drop(disk);

    let mut cuts_by_aim: BTreeMap<String, usize> = BTreeMap::new();
    for cut in &cuts {
        *cuts_by_aim.entry(format!("{:?}", cut.aim)).or_default() += 1;
    }
    let figures = Figures {
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
        histories_checked: seen.len(),
        notices_checked,
        refusals: refusals.clone(),
        lost,
        duplicates,
        send_retries: load.send_retries.load(Ordering::Relaxed),
        move_retries: load.move_retries.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
        cut_list: cuts,
    };
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&figures)?)?;
    }
    println!(
        "{} power cuts ({} at their aimed request; {}) over {} documents, {} deliveries, {} \
         moves in {:.1} s: {} unsynced writes lost and {} torn, {} directory entries lost; {} \
         acknowledged sends and {} acknowledged moves checked after the cuts; refusals {}, lost \
         {}, duplicates {}",
        figures.cuts,
        figures.cuts_at_their_request,
        figures
            .cuts_by_aim
            .iter()
            .map(|(aim, n)| format!("{n} {aim}"))
            .collect::<Vec<_>>()
            .join(", "),
        figures.documents,
        figures.deliveries,
        figures.moves,
        figures.seconds,
        figures.writes_lost,
        figures.writes_torn,
        figures.entries_lost,
        figures.acknowledged_sends_checked,
        figures.acknowledged_moves_checked,
        figures.refusals.len(),
        figures.lost,
        figures.duplicates
    );
    for refusal in &refusals {
        eprintln!("refused: {refusal}");
    }
    if problems.is_empty() && refusals.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for problem in problems.iter().take(20) {
        eprintln!("✗ {problem}");
    }
    eprintln!("{} problems, {} refusals", problems.len(), refusals.len());
    if args.keep.is_none() {
        let kept = std::env::temp_dir().join(format!("truc-power-failed-{}", args.seed));
        let _ = std::fs::remove_dir_all(&kept);
        // The file system is unmounted: its contents are gone, the logs are kept.
        if std::fs::rename(&root, &kept).is_ok() {
            eprintln!("logs kept in {}", kept.display());
        }
    }
    Ok(ExitCode::FAILURE)
}

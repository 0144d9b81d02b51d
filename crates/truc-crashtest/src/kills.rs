//! `truc crashtest` itself: the hub and the node agents run as separate processes of this
//! binary and are killed with SIGKILL at seeded random moments while documents are sent,
//! delivered and moved; each is restarted on its own directory and the nodes reconnect on
//! their own. At the end the hub (operator API, then its stopped data directory) and the
//! inboxes must hold every acknowledged send, delivery and move exactly once.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use truc_domain::SplitMix64;
use truc_pki::TrustRoots;

use crate::check::{check_offline, check_online, report, Checked};
use crate::layout::{setup, wait_ready, Layout, Process, RunFolder};
use crate::load::{deliveries_in_flight, start_load, Load, Running, AIM_WAIT_MAX};
use crate::plan::{plan, totals, PlannedDocument, RECIPIENTS};
use crate::CrashtestArgs;

/// What was under way when the hub was killed, and how long it took to serve again.
#[derive(serde::Serialize, Clone, Copy)]
struct Kill {
    after_start_ms: u64,
    sends_in_flight: u64,
    /// Acknowledged deliveries not yet in their recipient's inbox.
    deliveries_in_flight: u64,
    moves_in_flight: u64,
    /// From SIGKILL until the restarted hub answers an operator call.
    recovery_ms: u64,
}

#[derive(serde::Serialize)]
struct Figures {
    seed: u64,
    documents: usize,
    deliveries: usize,
    moves: usize,
    hub_kills: usize,
    node_kills: u32,
    kills_mid_send: usize,
    kills_mid_delivery: usize,
    kills_mid_status: usize,
    recovery_ms_median: u64,
    recovery_ms_max: u64,
    send_retries: u64,
    move_retries: u64,
    lost: usize,
    duplicates: usize,
    seconds: f64,
    kills: Vec<Kill>,
}

/// What every step of a run reads: its flags, its files and trust roots, its plan.
struct Run<'a> {
    args: &'a CrashtestArgs,
    layout: &'a Layout,
    roots: &'a TrustRoots,
    documents: &'a [PlannedDocument],
    started: Instant,
}

pub(crate) async fn run(args: CrashtestArgs, folder: &RunFolder) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut rng = SplitMix64::new(args.seed);
    let documents = Arc::new(plan(args.documents, &mut rng));
    let layout = setup(folder.path(), folder.path())?;
    let roots = layout.pki.trust_roots()?;
    let run = Run {
        args: &args,
        layout: &layout,
        roots: &roots,
        documents: &documents,
        started,
    };

    let mut hub = layout.start_hub()?;
    wait_ready(&layout, &roots).await?;
    let mut running = start_load(
        &layout,
        &roots,
        &documents,
        args.rate.unwrap_or(80.0),
        args.concurrency,
    )?;
    let (kills, node_kills) = kill_under_load(&run, &mut rng, &mut hub, &mut running).await?;
    let load = running.load.clone();
    let checked = settle_and_check(&run, &mut hub, running).await?;

    let figures = Figures::new(&run, kills, node_kills, &load, &checked);
    let problems = checked.problems;
    if report(args.json.as_deref(), &figures, Figures::print, &problems)? {
        return Ok(ExitCode::SUCCESS);
    }
    folder.keep_failed(
        &format!("truc-crash-failed-{}", args.seed),
        "data, inboxes and logs",
    );
    eprintln!("{} problems", problems.len());
    Ok(ExitCode::FAILURE)
}

/// Kills the hub `--hub-kills` times at seeded moments, each aimed at a kind of work under
/// way, and a node agent `--node-kills` times in between; returns the hub kills and how
/// many node kills there were.
async fn kill_under_load(
    run: &Run<'_>,
    rng: &mut SplitMix64,
    hub: &mut Process,
    running: &mut Running,
) -> anyhow::Result<(Vec<Kill>, u32)> {
    let args = run.args;
    // Node kills fall in the middle of the intervals between hub kills, spread evenly.
    let node_kill_every = (args.hub_kills / args.node_kills.max(1)).max(1);
    let mut node_kills = 0;
    let mut kills = Vec::new();
    for round in 0..args.hub_kills {
        let wait = args.kill_wait(rng);
        if node_kills < args.node_kills && round.is_multiple_of(node_kill_every) {
            tokio::time::sleep(wait / 2).await;
            restart_node(run.layout, rng, &mut running.nodes)?;
            node_kills += 1;
            tokio::time::sleep(wait / 2).await;
        } else {
            tokio::time::sleep(wait).await;
        }
        let (in_flight, pending) = wait_for_aim(run, round, &running.load).await;
        let at = run.started.elapsed();
        hub.kill_9();
        let killed = Instant::now();
        *hub = run.layout.start_hub()?;
        wait_ready(run.layout, run.roots).await?;
        kills.push(Kill {
            after_start_ms: at.as_millis() as u64,
            sends_in_flight: in_flight.0,
            deliveries_in_flight: pending,
            moves_in_flight: in_flight.1,
            recovery_ms: killed.elapsed().as_millis() as u64,
        });
        eprintln!(
            "kill {}: {} sends, {} deliveries, {} moves in flight; serving again after {} ms",
            kills.len(),
            in_flight.0,
            pending,
            in_flight.1,
            killed.elapsed().as_millis()
        );
        if let Some(failure) = running.load.failure.lock().expect("failure").clone() {
            bail!("the load failed: {failure}");
        }
    }
    Ok((kills, node_kills))
}

/// Kills the node agent of a recipient drawn from `rng` and starts it again on its inbox.
fn restart_node(
    layout: &Layout,
    rng: &mut SplitMix64,
    nodes: &mut BTreeMap<&'static str, Process>,
) -> anyhow::Result<()> {
    let code = RECIPIENTS[rng.below_modulo(RECIPIENTS.len() as u64) as usize];
    if let Some(mut node) = nodes.remove(code) {
        node.kill_9();
    }
    nodes.insert(code, layout.start_node(code)?);
    Ok(())
}

/// Waits for the kind of work the hub kill of `round` aims at; returns the sends and moves
/// in flight and the deliveries not yet in their inbox.
async fn wait_for_aim(run: &Run<'_>, round: u32, load: &Load) -> ((u64, u64), u64) {
    // Kills take turns aiming at a send, a delivery and a status move under way, so that
    // each kind is cut even on a slow machine; after a short wait any moment will do.
    let aim = Instant::now() + AIM_WAIT_MAX;
    loop {
        let in_flight = (
            load.sends_in_flight.load(Ordering::SeqCst),
            load.moves_in_flight.load(Ordering::SeqCst),
        );
        let pending = deliveries_in_flight(run.layout, run.documents, load);
        let hit = match round % 3 {
            0 => in_flight.0 > 0,
            1 => pending > 0,
            _ => in_flight.1 > 0,
        };
        if hit || Instant::now() >= aim {
            return (in_flight, pending);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Lets the load complete and stops it, then checks the hub through its operator API and
/// the inboxes, stops every process, and checks the hub's data directory.
async fn settle_and_check(
    run: &Run<'_>,
    hub: &mut Process,
    running: Running,
) -> anyhow::Result<Checked> {
    let load = running.load.clone();
    let nodes = running
        .complete(
            run.layout,
            run.documents,
            Duration::from_secs(run.args.settle_timeout_secs),
        )
        .await?;
    let mut checked = check_online(run.layout, run.roots, run.documents, &load).await?;
    for (_, mut node) in nodes {
        node.kill_9();
    }
    hub.kill_9();
    checked
        .problems
        .extend(check_offline(&run.layout.data_dir, run.documents)?);
    Ok(checked)
}

impl Figures {
    fn new(
        run: &Run<'_>,
        kills: Vec<Kill>,
        node_kills: u32,
        load: &Load,
        checked: &Checked,
    ) -> Figures {
        let (deliveries, moves) = totals(run.documents);
        let mut recovery: Vec<u64> = kills.iter().map(|k| k.recovery_ms).collect();
        recovery.sort_unstable();
        Figures {
            seed: run.args.seed,
            documents: run.documents.len(),
            deliveries,
            moves,
            hub_kills: kills.len(),
            node_kills,
            kills_mid_send: kills.iter().filter(|k| k.sends_in_flight > 0).count(),
            kills_mid_delivery: kills.iter().filter(|k| k.deliveries_in_flight > 0).count(),
            kills_mid_status: kills.iter().filter(|k| k.moves_in_flight > 0).count(),
            recovery_ms_median: recovery.get(recovery.len() / 2).copied().unwrap_or(0),
            recovery_ms_max: recovery.last().copied().unwrap_or(0),
            send_retries: load.send_retries.load(Ordering::Relaxed),
            move_retries: load.move_retries.load(Ordering::Relaxed),
            lost: checked.lost,
            duplicates: checked.duplicates,
            seconds: run.started.elapsed().as_secs_f64(),
            kills,
        }
    }

    /// The run in one line.
    fn print(&self) {
        println!(
            "{} hub kills ({} mid-send, {} mid-delivery, {} mid-status) and {} node kills over {} \
             documents, {} deliveries, {} moves in {:.1} s; recovery after restart: median {} ms, \
             max {} ms; {} sends and {} move batches retried; lost {}, duplicates {}",
            self.hub_kills,
            self.kills_mid_send,
            self.kills_mid_delivery,
            self.kills_mid_status,
            self.node_kills,
            self.documents,
            self.deliveries,
            self.moves,
            self.seconds,
            self.recovery_ms_median,
            self.recovery_ms_max,
            self.send_retries,
            self.move_retries,
            self.lost,
            self.duplicates
        );
    }
}

//! `truc crashtest --cluster`: two hub processes on one PostgreSQL database
//! kept by three Patroni members in strict synchronous mode on a
//! three-member etcd, three node agents given both hubs, and the crash
//! test's load. Under load the database's primary (its Patroni and its
//! postmaster) is SIGKILLed, and hub processes are SIGKILLed, in turn; after
//! each database failover the killed member is started again and must
//! rejoin as a replica. Then the same checks as the crash test, plus the
//! database read directly: every acknowledged document stored once, every
//! delivery in its inbox once, each history exactly as moved, counters
//! equal to a recount, an audit chain that verifies.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use truc_cluster::{Cluster, ClusterOptions};
use truc_domain::SplitMix64;
use truc_node::{AxisClient, FailoverOptions};
use truc_pki::TrustRoots;

use crate::check::{check_online, check_store, report, Checked};
use crate::layout::{path_str, setup, wait_ready_at, HubSpec, Layout, Process};
use crate::load::{start_load, Load, Running};
use crate::plan::{plan, totals, PlannedDocument, OPERATOR};
use crate::CrashtestArgs;

/// Hub processes on the database.
const HUBS: usize = 2;
/// Longest wait for a database failover (Patroni's `ttl` is 20 s).
const FAILOVER_WAIT_MAX: Duration = Duration::from_secs(90);
/// Longest wait for a restarted member to rejoin and the cluster to be whole.
const REJOIN_WAIT_MAX: Duration = Duration::from_secs(120);
/// Longest wait for the load to be acknowledged again after a fault.
const SERVING_AGAIN_WAIT_MAX: Duration = Duration::from_secs(120);
/// How long a killed hub stays down before it is started again.
const HUB_DOWN: Duration = Duration::from_secs(2);

/// Runs a blocking call on the cluster on a thread of its own: its tooling
/// uses the synchronous PostgreSQL client, which must not run on the
/// runtime's threads.
async fn on_cluster<T: Send + 'static>(
    cluster: &Arc<Mutex<Cluster>>,
    call: impl FnOnce(&mut Cluster) -> Result<T, truc_cluster::ClusterError> + Send + 'static,
) -> anyhow::Result<T> {
    let cluster = cluster.clone();
    let (answer, answered) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut cluster = cluster.lock().unwrap_or_else(|p| p.into_inner());
        let _ = answer.send(call(&mut cluster));
    });
    Ok(answered
        .await
        .context("the cluster call ended without an answer")??)
}

/// What one fault was and how the axis came through it.
#[derive(serde::Serialize, Clone)]
struct Fault {
    kind: &'static str,
    /// The database member or hub killed.
    target: String,
    after_start_ms: u64,
    sends_in_flight: u64,
    moves_in_flight: u64,
    /// From the kill until a hub accepted a send again.
    serving_again_ms: u64,
    /// Database failovers: until Patroni elected a new leader, and until a
    /// probe write committed on it.
    leader_elected_ms: Option<u64>,
    writes_accepted_ms: Option<u64>,
    /// Database failovers: from the killed member's restart until it
    /// streamed again as a replica and the cluster was whole.
    rejoined_ms: Option<u64>,
}

#[derive(serde::Serialize)]
struct Figures {
    seed: u64,
    documents: usize,
    deliveries: usize,
    database_failovers: usize,
    hub_kills: usize,
    serving_again_ms_median: u64,
    serving_again_ms_max: u64,
    database_serving_again_ms_median: u64,
    database_serving_again_ms_max: u64,
    hub_serving_again_ms_median: u64,
    hub_serving_again_ms_max: u64,
    send_retries: u64,
    move_retries: u64,
    lost: usize,
    duplicates: usize,
    seconds: f64,
    faults: Vec<Fault>,
}

fn median_and_max(mut values: Vec<u64>) -> (u64, u64) {
    values.sort_unstable();
    (
        values.get(values.len() / 2).copied().unwrap_or(0),
        values.last().copied().unwrap_or(0),
    )
}

/// Writes each hub's configuration: the same PKI and directory, the store
/// on the cluster over TLS, and `extra` sections.
fn hub_configs(layout: &mut Layout, cluster: &Cluster, extra: &str) -> anyhow::Result<()> {
    let url = format!("{}&sslmode=require", cluster.url());
    let ca = cluster
        .ca_certificate_path()
        .context("the cluster serves TLS")?
        .to_owned();
    let mut hubs = Vec::with_capacity(HUBS);
    for index in 0..HUBS {
        let address = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let name = format!("hub-{}", (b'a' + index as u8) as char);
        let config = layout.root.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "listen = \"{address}\"\ndirectory = \"agencies.toml\"\n\
                 [tls]\nca_cert = \"certs/ca.crt\"\ncert = \"certs/hub.crt\"\nkey = \"certs/hub.key\"\n\
                 [observe]\nmetrics_listen = \"\"\n\
                 [store]\nbackend = \"postgres\"\nurl = \"{url}\"\nca_cert = \"{}\"\n\
                 hub_name = \"{name}\"\nconnections_max = 4\n{extra}",
                path_str(&ca)?
            ),
        )?;
        hubs.push(HubSpec {
            name,
            address,
            config,
        });
    }
    layout.address = hubs[0].address;
    layout.hubs = hubs;
    Ok(())
}

/// Measures how long after a fault sends are accepted again: the first
/// acknowledged document is sent again, through every hub in turn, until a
/// hub answers (with the original acknowledgement, as a duplicate: a send
/// that needs a writable primary and changes nothing).
async fn serving_again(
    layout: &Layout,
    roots: &truc_pki::TrustRoots,
    documents: &[PlannedDocument],
    load: &Load,
    since: Instant,
) -> anyhow::Result<u64> {
    let index = loop {
        if let Some(index) = load.acknowledged.lock().expect("acks").first().copied() {
            break index;
        }
        if Instant::now() >= since + SERVING_AGAIN_WAIT_MAX {
            bail!("no send was acknowledged before the fault, so none can be sent again");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let document = &documents[index];
    let credentials = layout.pki.agency_credentials(document.sender)?;
    let client = AxisClient::lazy(
        &layout.hub_addresses(),
        roots,
        credentials,
        FailoverOptions {
            attempts_max: 1,
            ..FailoverOptions::default()
        },
    )?;
    let draft = document.draft();
    loop {
        match client.send(&draft, vec![document.attachment()]).await {
            Ok(answer) if answer.duplicate => return Ok(since.elapsed().as_millis() as u64),
            Ok(answer) => bail!(
                "{}: sent again after the fault, it was stored anew",
                answer.document_id
            ),
            Err(_) if Instant::now() < since + SERVING_AGAIN_WAIT_MAX => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => bail!(
                "no hub accepted a send within {SERVING_AGAIN_WAIT_MAX:?} of the fault: {error}"
            ),
        }
    }
}

/// Installs (if missing) and starts the three members, with TLS.
async fn start_cluster(root: &Path) -> anyhow::Result<Arc<Mutex<Cluster>>> {
    eprintln!("installing and starting PostgreSQL, Patroni and etcd (3 members each)");
    let cluster_dir = root.join("cluster");
    let (answer, answered) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let started = truc_cluster::ensure_packages().and_then(|()| {
            Cluster::start(
                &cluster_dir,
                ClusterOptions {
                    tls: true,
                    ..ClusterOptions::default()
                },
            )
        });
        let _ = answer.send(started);
    });
    Ok(Arc::new(Mutex::new(answered.await??)))
}

/// Kills the database's primary, waits for the failover, starts the killed
/// member again and waits until it streams as a replica: (new leader's
/// election, writes accepted, rejoined), in ms.
async fn fail_over(cluster: &Arc<Mutex<Cluster>>) -> anyhow::Result<(String, u64, u64, u64)> {
    let killed = on_cluster(cluster, |cluster| cluster.kill_leader()).await?;
    let (name, index) = (killed.name.clone(), killed.index);
    let failover = on_cluster(cluster, move |cluster| {
        cluster.wait_for_failover(&killed, FAILOVER_WAIT_MAX)
    })
    .await?;
    let restarted = Instant::now();
    on_cluster(cluster, move |cluster| {
        cluster.restart_member(index)?;
        cluster.wait_healthy(REJOIN_WAIT_MAX)
    })
    .await
    .with_context(|| format!("{name} did not rejoin as a replica"))?;
    Ok((
        name,
        failover.leader_elected_after.as_millis() as u64,
        failover.writes_accepted_after.as_millis() as u64,
        restarted.elapsed().as_millis() as u64,
    ))
}

/// Starts the hub processes in turn, each answering before the next starts.
async fn start_hubs(layout: &Layout, roots: &TrustRoots) -> anyhow::Result<Vec<Process>> {
    let mut hubs: Vec<Process> = Vec::with_capacity(HUBS);
    for index in 0..HUBS {
        hubs.push(layout.start_hub_at(index)?);
        wait_ready_at(layout, roots, index).await?;
    }
    Ok(hubs)
}

/// What the faults fall on: the run's files and plan, the load, and the cluster.
struct Axis<'a> {
    layout: &'a Layout,
    roots: &'a TrustRoots,
    documents: &'a [PlannedDocument],
    load: &'a Load,
    cluster: &'a Arc<Mutex<Cluster>>,
}

/// How the final check reaches the database: as the hubs do, over TLS.
struct Database {
    url: String,
    ca_pem: Vec<u8>,
}

pub(crate) async fn run(args: CrashtestArgs, root: &Path) -> anyhow::Result<ExitCode> {
    if let Some(dataset) = args.replay {
        return replay(args.clone(), dataset, root).await;
    }
    let started = Instant::now();
    let mut rng = SplitMix64::new(args.seed);
    let documents = Arc::new(plan(args.documents, &mut rng));
    let mut layout = setup(root, root)?;
    let roots = layout.pki.trust_roots()?;
    let cluster = start_cluster(root).await?;
    hub_configs(&mut layout, &cluster.lock().expect("cluster"), "")?;
    let database = Database::of(&cluster.lock().expect("cluster"))?;

    let mut hubs = start_hubs(&layout, &roots).await?;
    eprintln!("{} hubs on the cluster: {}", HUBS, layout.hub_addresses());
    let running = start_load(
        &layout,
        &roots,
        &documents,
        args.rate.unwrap_or(10.0),
        args.concurrency,
    )?;
    let load = running.load.clone();
    let axis = Axis {
        layout: &layout,
        roots: &roots,
        documents: &documents,
        load: &load,
        cluster: &cluster,
    };
    let faults = fault_under_load(&axis, &args, &mut rng, &mut hubs, started).await?;
    let checked = settle_and_check(&axis, &args, running, &mut hubs, database).await?;

    let figures = Figures::new(&args, &documents, &load, &checked, faults, started);
    let problems = checked.problems;
    if report(args.json.as_deref(), &figures, Figures::print, &problems)? {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("{} problems", problems.len());
    Ok(ExitCode::FAILURE)
}

/// Database failovers and hub kills, spread evenly and taking turns.
fn fault_schedule(db_failovers: u32, hub_kills: u32) -> Vec<&'static str> {
    let total = db_failovers + hub_kills;
    let mut schedule: Vec<&'static str> = Vec::with_capacity(total as usize);
    for index in 0..total {
        let database_due =
            (index + 1) * db_failovers / total.max(1) > index * db_failovers / total.max(1);
        schedule.push(if database_due { "database" } else { "hub" });
    }
    schedule
}

/// The faults of `--db-failovers` and `--hub-kills` under load, each after a seeded run
/// time; returns each fault with how the axis came through it.
async fn fault_under_load(
    axis: &Axis<'_>,
    args: &CrashtestArgs,
    rng: &mut SplitMix64,
    hubs: &mut [Process],
    started: Instant,
) -> anyhow::Result<Vec<Fault>> {
    let mut faults = Vec::new();
    let mut hub_turn = 0usize;
    for kind in fault_schedule(args.db_failovers, args.hub_kills) {
        tokio::time::sleep(args.kill_wait(rng)).await;
        let in_flight = (
            axis.load.sends_in_flight.load(Ordering::SeqCst),
            axis.load.moves_in_flight.load(Ordering::SeqCst),
        );
        let at = started.elapsed();
        let fault = if kind == "database" {
            database_fault(axis, at, in_flight).await?
        } else {
            let index = hub_turn % HUBS;
            hub_turn += 1;
            hub_fault(axis, hubs, index, at, in_flight).await?
        };
        fault.print();
        faults.push(fault);
        if let Some(failure) = axis.load.failure.lock().expect("failure").clone() {
            bail!("the load failed: {failure}");
        }
    }
    Ok(faults)
}

/// Kills the database's primary and measures how long until a hub accepts sends again,
/// waits for the failover, then starts the killed member again until it streams as a
/// replica.
async fn database_fault(
    axis: &Axis<'_>,
    at: Duration,
    in_flight: (u64, u64),
) -> anyhow::Result<Fault> {
    let killed = on_cluster(axis.cluster, |cluster| cluster.kill_leader()).await?;
    let since = Instant::now();
    let name = killed.name.clone();
    let index = killed.index;
    let serving = serving_again(axis.layout, axis.roots, axis.documents, axis.load, since).await?;
    let failover = on_cluster(axis.cluster, move |cluster| {
        cluster.wait_for_failover(&killed, FAILOVER_WAIT_MAX)
    })
    .await?;
    let restarted = Instant::now();
    on_cluster(axis.cluster, move |cluster| {
        cluster.restart_member(index)?;
        cluster.wait_healthy(REJOIN_WAIT_MAX)
    })
    .await
    .with_context(|| format!("{name} did not rejoin as a replica"))?;
    Ok(Fault {
        kind: "database",
        target: name,
        after_start_ms: at.as_millis() as u64,
        sends_in_flight: in_flight.0,
        moves_in_flight: in_flight.1,
        serving_again_ms: serving,
        leader_elected_ms: Some(failover.leader_elected_after.as_millis() as u64),
        writes_accepted_ms: Some(failover.writes_accepted_after.as_millis() as u64),
        rejoined_ms: Some(restarted.elapsed().as_millis() as u64),
    })
}

/// Kills hub `index` and measures how long until the other accepts sends, then starts it
/// again after [`HUB_DOWN`].
async fn hub_fault(
    axis: &Axis<'_>,
    hubs: &mut [Process],
    index: usize,
    at: Duration,
    in_flight: (u64, u64),
) -> anyhow::Result<Fault> {
    hubs[index].kill_9();
    let since = Instant::now();
    let serving = serving_again(axis.layout, axis.roots, axis.documents, axis.load, since).await?;
    tokio::time::sleep(HUB_DOWN.saturating_sub(since.elapsed())).await;
    hubs[index] = axis.layout.start_hub_at(index)?;
    wait_ready_at(axis.layout, axis.roots, index).await?;
    Ok(Fault {
        kind: "hub",
        target: axis.layout.hubs[index].name.clone(),
        after_start_ms: at.as_millis() as u64,
        sends_in_flight: in_flight.0,
        moves_in_flight: in_flight.1,
        serving_again_ms: serving,
        leader_elected_ms: None,
        writes_accepted_ms: None,
        rejoined_ms: None,
    })
}

impl Fault {
    /// The fault in one line, as it falls.
    fn print(&self) {
        eprintln!(
            "{} {} killed at {:.1} s: {} sends and {} moves in flight; serving again after {} ms{}",
            self.kind,
            self.target,
            self.after_start_ms as f64 / 1000.0,
            self.sends_in_flight,
            self.moves_in_flight,
            self.serving_again_ms,
            self.rejoined_ms
                .map(|ms| format!("; rejoined as a replica {ms} ms after its restart"))
                .unwrap_or_default()
        );
    }
}

/// Lets the load complete and stops it, then checks the hubs through their operator API
/// and the inboxes, stops every process, and reads the database directly.
async fn settle_and_check(
    axis: &Axis<'_>,
    args: &CrashtestArgs,
    running: Running,
    hubs: &mut [Process],
    database: Database,
) -> anyhow::Result<Checked> {
    let nodes = running
        .complete(
            axis.layout,
            axis.documents,
            Duration::from_secs(args.settle_timeout_secs),
        )
        .await?;
    let mut checked = check_online(axis.layout, axis.roots, axis.documents, axis.load).await?;
    for (_, mut node) in nodes {
        node.kill_9();
    }
    for hub in hubs.iter_mut() {
        hub.kill_9();
    }
    checked
        .problems
        .extend(database.check(axis.documents).await?);
    Ok(checked)
}

impl Database {
    fn of(cluster: &Cluster) -> anyhow::Result<Database> {
        Ok(Database {
            url: format!("{}&sslmode=require", cluster.url()),
            ca_pem: std::fs::read(
                cluster
                    .ca_certificate_path()
                    .context("the cluster serves TLS")?,
            )?,
        })
    }

    /// The database read directly, as the hubs left it.
    async fn check(self, documents: &[PlannedDocument]) -> anyhow::Result<Vec<String>> {
        let Database { url, ca_pem } = self;
        let store = tokio::task::spawn_blocking(move || {
            truc_store::Store::open_postgres(
                &truc_store::PostgresOptions {
                    url,
                    ca_cert_pem: Some(ca_pem),
                    hub_name: "crashtest".into(),
                    reader_connections_max: 2,
                    ..truc_store::PostgresOptions::default()
                },
                &truc_store::StoreOptions::default(),
            )
        })
        .await??;
        let problems = check_store(&store, "database", documents)?;
        drop(store);
        Ok(problems)
    }
}

impl Figures {
    fn new(
        args: &CrashtestArgs,
        documents: &[PlannedDocument],
        load: &Load,
        checked: &Checked,
        faults: Vec<Fault>,
        started: Instant,
    ) -> Figures {
        let serving_again = |kind: &str| -> Vec<u64> {
            faults
                .iter()
                .filter(|f| f.kind == kind)
                .map(|f| f.serving_again_ms)
                .collect()
        };
        let database = serving_again("database");
        let hub = serving_again("hub");
        let (all_median, all_max) =
            median_and_max(faults.iter().map(|f| f.serving_again_ms).collect());
        let (database_median, database_max) = median_and_max(database.clone());
        let (hub_median, hub_max) = median_and_max(hub.clone());
        Figures {
            seed: args.seed,
            documents: documents.len(),
            deliveries: totals(documents).0,
            database_failovers: database.len(),
            hub_kills: hub.len(),
            serving_again_ms_median: all_median,
            serving_again_ms_max: all_max,
            database_serving_again_ms_median: database_median,
            database_serving_again_ms_max: database_max,
            hub_serving_again_ms_median: hub_median,
            hub_serving_again_ms_max: hub_max,
            send_retries: load.send_retries.load(Ordering::Relaxed),
            move_retries: load.move_retries.load(Ordering::Relaxed),
            lost: checked.lost,
            duplicates: checked.duplicates,
            seconds: started.elapsed().as_secs_f64(),
            faults,
        }
    }

    /// The run in one line.
    fn print(&self) {
        println!(
            "{} database failovers and {} hub kills over {} documents and {} deliveries in {:.1} s; \
             sends accepted again after a failover: median {} ms, max {} ms; after a hub kill: \
             median {} ms, max {} ms; {} sends and {} move batches retried; lost {}, duplicates {}",
            self.database_failovers,
            self.hub_kills,
            self.documents,
            self.deliveries,
            self.seconds,
            self.database_serving_again_ms_median,
            self.database_serving_again_ms_max,
            self.hub_serving_again_ms_median,
            self.hub_serving_again_ms_max,
            self.send_retries,
            self.move_retries,
            self.lost,
            self.duplicates
        );
    }
}

/// The hubs' settings a replay needs: months compressed into minutes, so no
/// feedback deadlines, no expiry and no per-agency quotas (as the embedded
/// replay's hub runs).
const REPLAY_HUB_SETTINGS: &str = "[deadlines]\narrived_within_minutes = 0\n\
     received_within_working_minutes = 0\ndue_date = false\n\
     [expiry]\nttl_minutes = 0\n\
     [quotas]\nsends_in_flight_max = 4294967295\nqueued_deliveries_max = 9223372036854775807\n";

/// `--cluster --replay`: a published period through the two hubs while the
/// database fails over and a hub is killed; the hubs' own report must give
/// every published (or scaled) figure.
async fn replay(
    args: CrashtestArgs,
    dataset: truc_replay::published::Dataset,
    root: &Path,
) -> anyhow::Result<ExitCode> {
    use truc_replay::driver::{self, ReplayOptions, Target};
    use truc_replay::published::Expected;
    use truc_replay::report::{FigureSource, Report};

    let started = Instant::now();
    let plan = dataset
        .plan(args.seed, args.scale)
        .with_context(|| format!("building the {dataset} plan"))?;
    let expected = Expected::for_plan(&plan, args.scale)?;
    let (documents, deliveries) = plan.totals();
    eprintln!(
        "plan {dataset}: {} units, {documents} documents, {deliveries} deliveries",
        plan.units.len()
    );
    let agencies: Vec<(String, String)> = plan
        .units
        .iter()
        .map(|unit| (unit.code.to_string(), unit.name.clone()))
        .collect();
    let pki_dir = root.join("certs");
    let pki = tokio::task::spawn_blocking(move || {
        truc_pki::init_dev_pki(
            &pki_dir,
            &agencies,
            &[OPERATOR.to_owned()],
            Duration::from_secs(7 * 86_400),
        )
    })
    .await??;
    std::fs::write(root.join("agencies.toml"), driver::directory_toml(&plan)?)?;
    let mut layout = Layout {
        root: root.to_owned(),
        pki: pki.clone(),
        address: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        hubs: Vec::new(),
        data_dir: root.join("unused"),
        inbox_root: root.join("unused"),
    };
    let roots = pki.trust_roots()?;
    let cluster = start_cluster(root).await?;
    hub_configs(
        &mut layout,
        &cluster.lock().expect("cluster"),
        REPLAY_HUB_SETTINGS,
    )?;
    let mut hubs = start_hubs(&layout, &roots).await?;
    let target = Target {
        hubs: layout.hub_addresses(),
        pki,
        operator: OPERATOR.to_owned(),
        embedded: false,
    };
    eprintln!("{HUBS} hubs on the cluster: {}", target.hubs);
    let plan = Arc::new(plan);
    let done = AtomicBool::new(false);
    let replaying = async {
        let outcome = driver::replay(plan.clone(), &target, ReplayOptions::default()).await;
        done.store(true, Ordering::SeqCst);
        outcome
    };
    // The faults fall while the replay runs: database failovers, then hub kills.
    let faulting = async {
        let mut faults = Vec::new();
        for round in 0..(args.db_failovers + args.hub_kills) {
            tokio::time::sleep(Duration::from_millis(args.kill_after_min_ms)).await;
            if done.load(Ordering::SeqCst) {
                break;
            }
            let at = started.elapsed().as_millis() as u64;
            if round < args.db_failovers {
                let (name, elected, writes, rejoined) = fail_over(&cluster).await?;
                eprintln!(
                    "database {name} killed at {:.1} s: a new leader after {elected} ms, writes \
                     after {writes} ms; rejoined as a replica {rejoined} ms after its restart",
                    at as f64 / 1000.0
                );
                faults.push(format!("database {name}"));
            } else {
                let index = (round as usize) % HUBS;
                hubs[index].kill_9();
                tokio::time::sleep(HUB_DOWN).await;
                hubs[index] = layout.start_hub_at(index)?;
                wait_ready_at(&layout, &roots, index).await?;
                eprintln!(
                    "{} killed at {:.1} s and started again",
                    layout.hubs[index].name,
                    at as f64 / 1000.0
                );
                faults.push(layout.hubs[index].name.clone());
            }
        }
        anyhow::Ok(faults)
    };
    let (outcome, faults) = tokio::join!(replaying, faulting);
    let faults = faults?;
    let outcome = outcome?;
    eprintln!("{}", outcome.summary());
    let report = Report::build(
        &outcome.figures,
        Some(&expected),
        (Some(plan.period.0), Some(plan.period.1)),
        FigureSource::Hub {
            address: target.hubs.to_string(),
            embedded: false,
        },
    );
    print!("{}", report.render_text());
    println!(
        "faults during the replay: {} ({:.1} s in all)",
        if faults.is_empty() {
            "none (the replay ended first)".to_owned()
        } else {
            faults.join(", ")
        },
        started.elapsed().as_secs_f64()
    );
    for hub in &mut hubs {
        hub.kill_9();
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.to_json())?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(
        if report.matches_published() == Some(true) && !faults.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_spreads_database_failovers_among_hub_kills() {
        let schedule = fault_schedule(10, 24);
        assert_eq!(schedule.len(), 34);
        assert_eq!(schedule.iter().filter(|k| **k == "database").count(), 10);
        // Never two failovers in a row when hub kills outnumber them.
        assert!(!schedule
            .windows(2)
            .any(|pair| pair == ["database", "database"]));
        assert_eq!(fault_schedule(1, 1), ["hub", "database"]);
        assert_eq!(fault_schedule(0, 2), ["hub", "hub"]);
        assert!(fault_schedule(0, 0).is_empty());
    }
}

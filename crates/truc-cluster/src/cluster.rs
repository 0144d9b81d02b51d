//! Three PostgreSQL servers kept highly available by Patroni (synchronous mode, strict) on a three-member etcd, and the faults to break them with.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{ClusterError, Result};
use crate::os::{self, ServiceUser};
use crate::patroni::{self, ClusterJson, LeaderJson, MemberConfig};
use crate::sql::{self, APPLICATION_ROLE, SUPERUSER};
use crate::tls::ServerCertificate;

/// Members of the cluster, and of its etcd: three, so that one may go and a
/// majority remains.
pub const CLUSTER_MEMBERS: usize = 3;

/// Patroni's documented minimums, and the defaults here: the leader key
/// lives `ttl` seconds after its holder stops renewing it, and
/// `loop_wait + 2 × retry_timeout ≤ ttl`.
pub const PATRONI_TTL_SECONDS_DEFAULT: u32 = 20;
pub const PATRONI_LOOP_WAIT_SECONDS_DEFAULT: u32 = 1;
pub const PATRONI_RETRY_TIMEOUT_SECONDS_DEFAULT: u32 = 3;

/// How long the whole cluster may take to bootstrap and become healthy.
pub const CLUSTER_STARTUP_TIMEOUT_DEFAULT: Duration = Duration::from_secs(120);

/// How long one request to Patroni's REST API or etcd's health endpoint may take.
const HTTP_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The table the write probe inserts into, in the superuser's database.
const PROBE_TABLE: &str = "truc_cluster_probe";

/// How a [`Cluster`] is started.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// Patroni's `ttl`: how long a dead leader keeps the leader key, so
    /// roughly how long a failover takes. Default:
    /// [`PATRONI_TTL_SECONDS_DEFAULT`].
    pub ttl_seconds: u32,
    /// Patroni's `loop_wait`. Default: [`PATRONI_LOOP_WAIT_SECONDS_DEFAULT`].
    pub loop_wait_seconds: u32,
    /// Patroni's `retry_timeout`. Default: [`PATRONI_RETRY_TIMEOUT_SECONDS_DEFAULT`].
    pub retry_timeout_seconds: u32,
    /// Every member serves TLS with one certificate for 127.0.0.1 from a
    /// fresh development CA ([`Cluster::ca_certificate_path`]). Default: off.
    pub tls: bool,
    /// Default: [`CLUSTER_STARTUP_TIMEOUT_DEFAULT`].
    pub startup_timeout: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            ttl_seconds: PATRONI_TTL_SECONDS_DEFAULT,
            loop_wait_seconds: PATRONI_LOOP_WAIT_SECONDS_DEFAULT,
            retry_timeout_seconds: PATRONI_RETRY_TIMEOUT_SECONDS_DEFAULT,
            tls: false,
            startup_timeout: CLUSTER_STARTUP_TIMEOUT_DEFAULT,
        }
    }
}

impl ClusterOptions {
    /// Patroni's documented minimums and its rule between the three.
    fn check(&self) -> Result<()> {
        let minimums = [
            ("ttl_seconds", self.ttl_seconds, PATRONI_TTL_SECONDS_DEFAULT),
            (
                "loop_wait_seconds",
                self.loop_wait_seconds,
                PATRONI_LOOP_WAIT_SECONDS_DEFAULT,
            ),
            (
                "retry_timeout_seconds",
                self.retry_timeout_seconds,
                PATRONI_RETRY_TIMEOUT_SECONDS_DEFAULT,
            ),
        ];
        for (field, value, minimum) in minimums {
            if value < minimum {
                return Err(ClusterError::InvalidArgument {
                    field,
                    reason: format!("{value} is below Patroni's minimum, {minimum}"),
                });
            }
        }
        let needed = self.loop_wait_seconds + 2 * self.retry_timeout_seconds;
        if needed > self.ttl_seconds {
            return Err(ClusterError::InvalidArgument {
                field: "ttl_seconds",
                reason: format!(
                    "{} is below loop_wait + 2 × retry_timeout = {needed}, which Patroni requires",
                    self.ttl_seconds
                ),
            });
        }
        Ok(())
    }
}

/// What Patroni says a member is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberRole {
    Leader,
    SynchronousStandby,
    Replica,
    /// A role this crate does not expect (`standby_leader`, …), as Patroni names it.
    Other(String),
}

/// One member in [`ClusterState`].
#[derive(Clone, Debug)]
pub struct MemberState {
    /// Patroni's name for it: `member0`, `member1`, …
    pub name: String,
    /// Its index in the cluster, for [`Cluster::kill_member`] and the like.
    pub index: usize,
    pub role: MemberRole,
    /// Patroni's state of its PostgreSQL: `running`, `starting`, `stopped`, …
    pub state: String,
    pub timeline: Option<u64>,
    /// Bytes of WAL behind the leader; `None` for the leader or when unknown.
    pub lag_bytes: Option<u64>,
    /// The leader has a WAL sender streaming to it (never for the leader itself).
    pub streaming: bool,
}

/// The cluster as Patroni's REST API reports it (`GET /cluster`, and the
/// leader's `GET /patroni` for who it streams to).
#[derive(Clone, Debug)]
pub struct ClusterState {
    pub leader: Option<String>,
    pub synchronous_standby: Option<String>,
    pub members: Vec<MemberState>,
}

impl ClusterState {
    /// Healthy: a running leader, a synchronous standby, every member
    /// listed and running on the leader's timeline, every replica streaming.
    pub fn is_healthy(&self) -> bool {
        self.unhealthy_reason().is_none()
    }

    /// Why the cluster is not healthy, if it is not.
    pub fn unhealthy_reason(&self) -> Option<String> {
        let Some(leader_name) = &self.leader else {
            return Some("no leader".to_owned());
        };
        if self.synchronous_standby.is_none() {
            return Some("no synchronous standby".to_owned());
        }
        if self.members.len() != CLUSTER_MEMBERS {
            return Some(format!(
                "{} of {CLUSTER_MEMBERS} members listed",
                self.members.len()
            ));
        }
        let leader = self.members.iter().find(|m| &m.name == leader_name)?;
        for member in &self.members {
            if member.state != "running" {
                return Some(format!("{} is {}", member.name, member.state));
            }
            if member.timeline != leader.timeline {
                return Some(format!(
                    "{} is on timeline {:?}, the leader on {:?}",
                    member.name, member.timeline, leader.timeline
                ));
            }
            if member.role != MemberRole::Leader && !member.streaming {
                return Some(format!("{} is not streaming from the leader", member.name));
            }
        }
        None
    }

    pub fn member(&self, name: &str) -> Option<&MemberState> {
        self.members.iter().find(|member| member.name == name)
    }
}

/// A member just killed by [`Cluster::kill_member`] or [`Cluster::kill_leader`].
#[derive(Clone, Debug)]
pub struct KilledMember {
    pub index: usize,
    pub name: String,
    /// It held the leader key when it was killed.
    pub was_leader: bool,
    /// When the last of its processes was gone.
    pub killed_at: Instant,
    /// Patroni's, the postmaster's and every backend's pid.
    pub killed_pids: Vec<i32>,
}

/// How a failover went, measured from the kill.
#[derive(Clone, Debug)]
pub struct Failover {
    pub new_leader: String,
    /// Until Patroni reported another member as a running leader.
    pub leader_elected_after: Duration,
    /// Until a write through [`Cluster::url`]'s hosts committed (so was on
    /// a synchronous standby too).
    pub writes_accepted_after: Duration,
}

#[derive(Debug)]
struct EtcdMember {
    dir: PathBuf,
    log_path: PathBuf,
    arguments: Vec<String>,
    process: Option<Child>,
}

#[derive(Debug)]
struct Member {
    name: String,
    dir: PathBuf,
    data_dir: PathBuf,
    config_path: PathBuf,
    patroni_log: PathBuf,
    postgres_log_dir: PathBuf,
    postgres_port: u16,
    rest_port: u16,
    patroni: Option<Child>,
}

/// Three PostgreSQL servers under Patroni in synchronous mode (strict) on
/// a three-member etcd, all on loopback ports in one directory, run as the
/// `postgres` user when this process is root, each process in a group of
/// its own. Once [`Cluster::start`] returns, the cluster is healthy and
/// holds a role `truc` with its database `truc`; [`Cluster::url`] reaches
/// whichever member is primary. Dropping it SIGKILLs every process it
/// started, even while a test panics.
///
/// ```no_run
/// use std::time::Duration;
/// let dir = tempfile::tempdir()?;
/// truc_cluster::ensure_packages()?;
/// let mut cluster = truc_cluster::Cluster::start(dir.path(), Default::default())?;
/// let mut client = postgres::Client::connect(&cluster.url(), postgres::NoTls)?;
/// let killed = cluster.kill_leader()?;
/// let failover = cluster.wait_for_failover(&killed, Duration::from_secs(60))?;
/// cluster.restart_member(killed.index)?;
/// cluster.wait_healthy(Duration::from_secs(60))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Cluster {
    user: ServiceUser,
    patroni_program: PathBuf,
    etcd_program: PathBuf,
    superuser_password: String,
    application_password: String,
    certificate: Option<ServerCertificate>,
    etcd: Vec<EtcdMember>,
    members: Vec<Member>,
    http: ureq::Agent,
}

impl Cluster {
    /// Starts etcd and Patroni in `dir` (created if missing; when this
    /// process is root it is handed to the `postgres` user, so its parents
    /// must let that user through, as `/tmp` does), waits until the cluster
    /// is healthy ([`ClusterState::is_healthy`]) and creates the role and
    /// database `truc` on the leader.
    pub fn start(dir: &Path, options: ClusterOptions) -> Result<Self> {
        options.check()?;
        let bin_dir = os::postgres_bin_dir()?;
        let patroni_program = os::find_program("patroni")?;
        let etcd_program = os::find_program("etcd")?;
        let user = ServiceUser::for_this_process()?;
        user.create_private_dir(dir)?;
        let certificate = if options.tls {
            Some(ServerCertificate::issue(&dir.join("pki"), &user)?)
        } else {
            None
        };
        let ports = os::free_loopback_ports(4 * CLUSTER_MEMBERS)?;
        let (etcd_client_ports, rest) = ports.split_at(CLUSTER_MEMBERS);
        let (etcd_peer_ports, rest) = rest.split_at(CLUSTER_MEMBERS);
        let (postgres_ports, rest_ports) = rest.split_at(CLUSTER_MEMBERS);

        let cluster_token = format!("truc-{}", os::random_password()?);
        let initial_cluster = (0..CLUSTER_MEMBERS)
            .map(|index| format!("etcd{index}=http://127.0.0.1:{}", etcd_peer_ports[index]))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Vec::with_capacity(CLUSTER_MEMBERS);
        for index in 0..CLUSTER_MEMBERS {
            let etcd_dir = dir.join(format!("etcd{index}"));
            user.create_private_dir(&etcd_dir)?;
            let client_url = format!("http://127.0.0.1:{}", etcd_client_ports[index]);
            let peer_url = format!("http://127.0.0.1:{}", etcd_peer_ports[index]);
            let data_dir = etcd_dir.join("data");
            // etcd 3.4's flags; once its data directory exists, a restarted
            // member ignores the initial-cluster ones and rejoins.
            let arguments = vec![
                format!("--name=etcd{index}"),
                format!("--data-dir={}", data_dir.display()),
                format!("--listen-client-urls={client_url}"),
                format!("--advertise-client-urls={client_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster={initial_cluster}"),
                "--initial-cluster-state=new".to_owned(),
                format!("--initial-cluster-token={cluster_token}"),
            ];
            etcd.push(EtcdMember {
                log_path: etcd_dir.join("etcd.log"),
                dir: etcd_dir,
                arguments,
                process: None,
            });
        }

        let superuser_password = os::random_password()?;
        let replication_password = os::random_password()?;
        let rewind_password = os::random_password()?;
        let scope = "truc";
        let mut members = Vec::with_capacity(CLUSTER_MEMBERS);
        for index in 0..CLUSTER_MEMBERS {
            let name = format!("member{index}");
            let member_dir = dir.join(&name);
            user.create_private_dir(&member_dir)?;
            let socket_dir = member_dir.join("socket");
            user.create_private_dir(&socket_dir)?;
            let postgres_log_dir = member_dir.join("postgres-log");
            user.create_private_dir(&postgres_log_dir)?;
            let data_dir = member_dir.join("data");
            let config_path = member_dir.join("patroni.yml");
            let config = patroni::member_config(&MemberConfig {
                scope,
                name: &name,
                rest_port: rest_ports[index],
                postgres_port: postgres_ports[index],
                etcd_client_ports,
                bin_dir: &bin_dir,
                member_dir: &member_dir,
                data_dir: &data_dir,
                postgres_log_dir: &postgres_log_dir,
                socket_dir: &socket_dir,
                superuser_password: &superuser_password,
                replication_password: &replication_password,
                rewind_password: &rewind_password,
                ttl_seconds: options.ttl_seconds,
                loop_wait_seconds: options.loop_wait_seconds,
                retry_timeout_seconds: options.retry_timeout_seconds,
                certificate: certificate.as_ref(),
            });
            user.write_private_file(&config_path, &config)?;
            members.push(Member {
                patroni_log: member_dir.join("patroni.log"),
                name,
                dir: member_dir,
                data_dir,
                config_path,
                postgres_log_dir,
                postgres_port: postgres_ports[index],
                rest_port: rest_ports[index],
                patroni: None,
            });
        }

        let http: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(HTTP_REQUEST_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        let mut cluster = Cluster {
            user,
            patroni_program,
            etcd_program,
            superuser_password,
            application_password: os::random_password()?,
            certificate,
            etcd,
            members,
            http,
        };
        let started = Instant::now();
        for index in 0..CLUSTER_MEMBERS {
            cluster.restart_etcd(index)?;
        }
        for index in 0..CLUSTER_MEMBERS {
            cluster.wait_for_etcd(
                index,
                options.startup_timeout.saturating_sub(started.elapsed()),
            )?;
        }
        for index in 0..CLUSTER_MEMBERS {
            cluster.restart_member(index)?;
        }
        let state =
            cluster.wait_healthy(options.startup_timeout.saturating_sub(started.elapsed()))?;
        cluster.create_application_role(&state)?;
        cluster.wait_for_application_database(
            options.startup_timeout.saturating_sub(started.elapsed()),
        )?;
        Ok(cluster)
    }

    /// The role `truc` on database `truc` through every member, in member
    /// order, landing on whichever is primary:
    /// `postgresql://truc:PW@127.0.0.1:P0,127.0.0.1:P1,127.0.0.1:P2/truc?target_session_attrs=read-write`.
    /// `tokio-postgres` (and so `postgres`) tries the hosts in order and
    /// keeps the first whose session is not read-only; a replica is. On
    /// loopback a dead member refuses at once; across machines, add
    /// `&connect_timeout=SECONDS` so that a silent one is passed over.
    pub fn url(&self) -> String {
        self.multi_host_url(
            APPLICATION_ROLE,
            &self.application_password,
            APPLICATION_ROLE,
        )
    }

    /// The superuser on database `postgres`, through every member, like [`Cluster::url`].
    pub fn superuser_url(&self) -> String {
        self.multi_host_url(SUPERUSER, &self.superuser_password, "postgres")
    }

    /// The role `truc` on database `truc` of one member, whatever its role.
    /// Panics if `index` is not below [`CLUSTER_MEMBERS`].
    pub fn member_url(&self, index: usize) -> String {
        format!(
            "postgresql://{APPLICATION_ROLE}:{}@127.0.0.1:{}/{APPLICATION_ROLE}",
            self.application_password, self.members[index].postgres_port
        )
    }

    /// Each member's PostgreSQL port on 127.0.0.1, in member order.
    pub fn postgres_ports(&self) -> Vec<u16> {
        self.members
            .iter()
            .map(|member| member.postgres_port)
            .collect()
    }

    /// The development CA's certificate when the members serve TLS; see
    /// [`crate::PostgresServer::ca_certificate_path`].
    pub fn ca_certificate_path(&self) -> Option<&Path> {
        self.certificate
            .as_ref()
            .map(|certificate| certificate.ca_certificate.as_path())
    }

    /// The cluster now, from the first member whose REST API answers.
    pub fn state(&self) -> Result<ClusterState> {
        let mut last_error = None;
        for member in &self.members {
            let url = format!("http://127.0.0.1:{}/cluster", member.rest_port);
            match self.get_json::<ClusterJson>(&url) {
                Ok(cluster) => return self.state_from(cluster),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| ClusterError::RestApi {
            url: "/cluster".to_owned(),
            reason: "no member".to_owned(),
        }))
    }

    /// Waits until [`ClusterState::is_healthy`]; on timeout the error says
    /// why not and carries the tail of every log.
    pub fn wait_healthy(&self, timeout: Duration) -> Result<ClusterState> {
        let started = Instant::now();
        loop {
            let reason = match self.state() {
                Ok(state) => match state.unhealthy_reason() {
                    None => return Ok(state),
                    Some(reason) => reason,
                },
                Err(error) => error.to_string(),
            };
            if started.elapsed() > timeout {
                return Err(self.timeout(
                    format!("a healthy cluster (last: {reason})"),
                    started.elapsed(),
                ));
            }
            std::thread::sleep(os::POLL_INTERVAL);
        }
    }

    /// SIGKILLs member `index`: its Patroni, its postmaster and every
    /// backend, as if its machine had lost power. Returns once all are gone.
    pub fn kill_member(&mut self, index: usize) -> Result<KilledMember> {
        self.check_index("member", index)?;
        let was_leader = self
            .state()
            .ok()
            .and_then(|state| state.leader)
            .is_some_and(|leader| leader == self.members[index].name);
        let killed_pids = self.kill_member_processes(index)?;
        Ok(KilledMember {
            index,
            name: self.members[index].name.clone(),
            was_leader,
            killed_at: Instant::now(),
            killed_pids,
        })
    }

    /// Kills whichever member holds the leader key now.
    pub fn kill_leader(&mut self) -> Result<KilledMember> {
        let state = self.state()?;
        let leader = state
            .leader
            .and_then(|leader| {
                state
                    .members
                    .iter()
                    .find(|m| m.name == leader)
                    .map(|m| m.index)
            })
            .ok_or_else(|| self.timeout("a leader to kill".to_owned(), Duration::ZERO))?;
        self.kill_member(leader)
    }

    /// Starts member `index`'s Patroni again (a no-op while it runs). On
    /// the data it left, Patroni rewinds it if need be and it rejoins as a
    /// replica; [`Cluster::wait_healthy`] says when it streams again.
    pub fn restart_member(&mut self, index: usize) -> Result<()> {
        self.check_index("member", index)?;
        let member = &mut self.members[index];
        if let Some(process) = member.patroni.as_mut() {
            if let Ok(None) = process.try_wait() {
                return Ok(());
            }
        }
        let mut command = self.user.command(&self.patroni_program, &member.dir);
        command.arg(&member.config_path);
        member.patroni = Some(os::spawn_logged(
            command,
            &member.patroni_log,
            &format!("patroni {}", member.name),
        )?);
        Ok(())
    }

    /// SIGKILLs etcd member `index`.
    pub fn kill_etcd(&mut self, index: usize) -> Result<()> {
        self.check_index("etcd member", index)?;
        if let Some(mut process) = self.etcd[index].process.take() {
            os::kill_group_and_reap(&mut process);
        }
        Ok(())
    }

    /// Starts etcd member `index` again on its data (a no-op while it runs).
    pub fn restart_etcd(&mut self, index: usize) -> Result<()> {
        self.check_index("etcd member", index)?;
        let etcd = &mut self.etcd[index];
        if let Some(process) = etcd.process.as_mut() {
            if let Ok(None) = process.try_wait() {
                return Ok(());
            }
        }
        let mut command = self.user.command(&self.etcd_program, &etcd.dir);
        command.args(&etcd.arguments);
        etcd.process = Some(os::spawn_logged(
            command,
            &etcd.log_path,
            &format!("etcd{index}"),
        )?);
        Ok(())
    }

    /// Waits until another member leads and then until a write through
    /// every member's address commits, and says how long each took from
    /// the kill. Writes may wait (strict synchronous mode holds commits
    /// until a standby has them); each attempt is bounded by what is left
    /// of `timeout`.
    pub fn wait_for_failover(&self, killed: &KilledMember, timeout: Duration) -> Result<Failover> {
        let deadline = killed.killed_at + timeout;
        let new_leader = loop {
            let elected = self.state().ok().and_then(|state| {
                let leader = state.leader.clone()?;
                let running = state.member(&leader)?.state == "running";
                (leader != killed.name && running).then_some(leader)
            });
            if let Some(leader) = elected {
                break leader;
            }
            if Instant::now() > deadline {
                return Err(self.timeout(
                    format!("a leader other than {}", killed.name),
                    killed.killed_at.elapsed(),
                ));
            }
            std::thread::sleep(os::POLL_INTERVAL);
        };
        let leader_elected_after = killed.killed_at.elapsed();
        self.wait_writable(deadline)?;
        Ok(Failover {
            new_leader,
            leader_elected_after,
            writes_accepted_after: killed.killed_at.elapsed(),
        })
    }

    /// Waits until a write through every member's address commits (on the
    /// primary and a synchronous standby), and says how long that took.
    pub fn wait_for_writes(&self, timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        self.wait_writable(started + timeout)?;
        Ok(started.elapsed())
    }

    /// Every process this cluster has started that is alive now: etcd,
    /// Patroni, postmasters and their backends.
    pub fn process_ids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        let children = self
            .etcd
            .iter()
            .filter_map(|etcd| etcd.process.as_ref())
            .chain(
                self.members
                    .iter()
                    .filter_map(|member| member.patroni.as_ref()),
            );
        pids.extend(children.map(|child| child.id() as i32));
        for member in &self.members {
            for postmaster in os::postmasters_of(&member.data_dir) {
                pids.push(postmaster);
                pids.extend(os::children_of(postmaster));
            }
        }
        pids.retain(|&pid| !os::is_gone_or_zombie(pid));
        pids
    }

    /// Every log of the cluster: each member's Patroni and PostgreSQL log,
    /// and each etcd member's.
    pub fn log_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self
            .members
            .iter()
            .flat_map(|member| patroni::member_logs(&member.patroni_log, &member.postgres_log_dir))
            .collect();
        paths.extend(self.etcd.iter().map(|etcd| etcd.log_path.clone()));
        paths
    }

    fn multi_host_url(&self, user: &str, password: &str, database: &str) -> String {
        let hosts = self
            .members
            .iter()
            .map(|member| format!("127.0.0.1:{}", member.postgres_port))
            .collect::<Vec<_>>()
            .join(",");
        format!("postgresql://{user}:{password}@{hosts}/{database}?target_session_attrs=read-write")
    }

    fn check_index(&self, field: &'static str, index: usize) -> Result<()> {
        if index < CLUSTER_MEMBERS {
            return Ok(());
        }
        Err(ClusterError::InvalidArgument {
            field,
            reason: format!("{index} is not below {CLUSTER_MEMBERS}"),
        })
    }

    fn kill_member_processes(&mut self, index: usize) -> Result<Vec<i32>> {
        let member = &mut self.members[index];
        let what = format!("member {}", member.name);
        let mut killed = Vec::new();
        // Patroni first, with any helper it forked, so that nothing starts
        // the postmaster again; then the postmaster and its backends,
        // which live in sessions of their own.
        if let Some(mut patroni) = member.patroni.take() {
            killed.extend(os::kill_process_tree(patroni.id() as i32, &what)?);
            let _ = patroni.wait();
        }
        for postmaster in os::postmasters_of(&member.data_dir) {
            killed.extend(os::kill_process_tree(postmaster, &what)?);
        }
        Ok(killed)
    }

    /// Waits until etcd member `index` says it is healthy (it has a leader
    /// and answers reads), as after [`Cluster::restart_etcd`].
    pub fn wait_for_etcd(&self, index: usize, timeout: Duration) -> Result<()> {
        self.check_index("etcd member", index)?;
        let started = Instant::now();
        let client_url = self.etcd[index]
            .arguments
            .iter()
            .find_map(|argument| argument.strip_prefix("--advertise-client-urls="))
            .unwrap_or_default()
            .to_owned();
        #[derive(serde::Deserialize)]
        struct Health {
            health: String,
        }
        loop {
            let health = self.get_json::<Health>(&format!("{client_url}/health"));
            if health.is_ok_and(|health| health.health == "true") {
                return Ok(());
            }
            if started.elapsed() > timeout {
                return Err(self.timeout(format!("etcd{index} to be healthy"), started.elapsed()));
            }
            std::thread::sleep(os::POLL_INTERVAL);
        }
    }

    fn state_from(&self, cluster: ClusterJson) -> Result<ClusterState> {
        let leader_name = cluster
            .members
            .iter()
            .find(|member| member.role == "leader")
            .map(|member| member.name.clone());
        // Who the leader streams to, from the leader itself.
        let replication = match leader_name
            .as_ref()
            .and_then(|name| self.members.iter().find(|member| &member.name == name))
        {
            Some(leader) => self
                .get_json::<LeaderJson>(&format!("http://127.0.0.1:{}/patroni", leader.rest_port))
                .map(|leader| leader.replication)
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let mut members = Vec::with_capacity(cluster.members.len());
        for member in cluster.members {
            let Some(index) = self.members.iter().position(|m| m.name == member.name) else {
                continue;
            };
            let role = match member.role.as_str() {
                "leader" => MemberRole::Leader,
                "sync_standby" => MemberRole::SynchronousStandby,
                "replica" => MemberRole::Replica,
                other => MemberRole::Other(other.to_owned()),
            };
            let streaming = replication.iter().any(|sender| {
                sender.application_name == member.name && sender.state == "streaming"
            }) && (role != MemberRole::SynchronousStandby
                || replication.iter().any(|sender| {
                    sender.application_name == member.name && sender.sync_state == "sync"
                }));
            members.push(MemberState {
                index,
                role,
                state: member.state,
                timeline: member.timeline,
                lag_bytes: member.lag.as_ref().and_then(|lag| lag.as_u64()),
                streaming,
                name: member.name,
            });
        }
        let synchronous_standby = members
            .iter()
            .find(|member| member.role == MemberRole::SynchronousStandby)
            .map(|member| member.name.clone());
        Ok(ClusterState {
            leader: leader_name,
            synchronous_standby,
            members,
        })
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T> {
        let rest_error = |reason: String| ClusterError::RestApi {
            url: url.to_owned(),
            reason,
        };
        let mut response = self
            .http
            .get(url)
            .call()
            .map_err(|error| rest_error(error.to_string()))?;
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|error| rest_error(error.to_string()))?;
        serde_json::from_str(&body).map_err(|error| rest_error(format!("{error} in {body:?}")))
    }

    fn create_application_role(&self, state: &ClusterState) -> Result<()> {
        let leader = state
            .leader
            .as_ref()
            .and_then(|leader| self.members.iter().find(|member| &member.name == leader))
            .ok_or_else(|| ClusterError::NoLeader {
                state: format!("{state:?}"),
            })?;
        let what = format!("the leader {}", leader.name);
        let mut superuser = sql::connect(
            &format!(
                "postgresql://{SUPERUSER}:{}@127.0.0.1:{}/postgres",
                self.superuser_password, leader.postgres_port
            ),
            &what,
        )?;
        sql::create_application_role(&mut superuser, &self.application_password, &what)?;
        superuser
            .batch_execute(&format!(
                "CREATE TABLE {PROBE_TABLE} (id bigserial PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT now())"
            ))
            .map_err(|source| ClusterError::Sql { what, source })
    }

    /// Waits until every member has replayed the role and database `truc`
    /// (a synchronous standby has the commit on disk before it returns, but
    /// replays it a moment later).
    fn wait_for_application_database(&self, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        for index in 0..CLUSTER_MEMBERS {
            loop {
                match sql::connect(&self.member_url(index), &self.members[index].name) {
                    Ok(_) => break,
                    Err(error) if started.elapsed() > timeout => {
                        return Err(self.timeout(
                            format!("database {APPLICATION_ROLE} on every member (last: {error})"),
                            started.elapsed(),
                        ))
                    }
                    Err(_) => std::thread::sleep(os::POLL_INTERVAL),
                }
            }
        }
        Ok(())
    }

    /// Writes a row through [`Cluster::superuser_url`] until one commits or
    /// `deadline` passes. Each attempt runs on a thread of its own, since a
    /// commit waiting for a synchronous standby cannot be cut short without
    /// committing locally anyway.
    fn wait_writable(&self, deadline: Instant) -> Result<()> {
        let url = self.superuser_url();
        let started = Instant::now();
        let mut last_error = String::new();
        while Instant::now() < deadline {
            let (sender, receiver) = mpsc::channel();
            let attempt_url = url.clone();
            std::thread::spawn(move || {
                let result =
                    sql::connect(&attempt_url, "the cluster's primary").and_then(|mut client| {
                        client
                            .execute(&format!("INSERT INTO {PROBE_TABLE} DEFAULT VALUES"), &[])
                            .map_err(|source| ClusterError::Sql {
                                what: "the cluster's primary".to_owned(),
                                source,
                            })
                    });
                // The waiter may have given up; nobody is left to tell then.
                let _ = sender.send(result);
            });
            match receiver.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(error)) => last_error = error.to_string(),
                Err(_) => break,
            }
            std::thread::sleep(os::POLL_INTERVAL);
        }
        Err(self.timeout(
            format!("a write through every member to commit (last error: {last_error})"),
            started.elapsed(),
        ))
    }

    fn timeout(&self, what: String, waited: Duration) -> ClusterError {
        ClusterError::Timeout {
            what,
            waited,
            logs: os::log_tails(&self.log_paths()),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A test failing on its own assertion gets no timeout error with
        // the logs in it: show them here, before the directory goes.
        if std::thread::panicking() {
            eprintln!("{}", os::log_tails(&self.log_paths()));
        }
        for index in 0..self.members.len() {
            // Best effort: a failure to kill one member must not spare the rest.
            let _ = self.kill_member_processes(index);
        }
        for etcd in &mut self.etcd {
            if let Some(mut process) = etcd.process.take() {
                os::kill_group_and_reap(&mut process);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ClusterOptions;

    #[test]
    fn options_below_patronis_minimums_or_breaking_its_rule_are_refused_with_the_field_named() {
        assert!(ClusterOptions::default().check().is_ok());
        for (options, field) in [
            (
                ClusterOptions {
                    ttl_seconds: 10,
                    ..ClusterOptions::default()
                },
                "ttl_seconds: ",
            ),
            (
                ClusterOptions {
                    loop_wait_seconds: 0,
                    ..ClusterOptions::default()
                },
                "loop_wait_seconds: ",
            ),
            (
                ClusterOptions {
                    retry_timeout_seconds: 12,
                    ..ClusterOptions::default()
                },
                "ttl_seconds: ",
            ),
        ] {
            let error = options.check().unwrap_err().to_string();
            assert!(error.starts_with(field), "{error}");
        }
    }
}

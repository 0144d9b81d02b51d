//! Test helpers: a development PKI and a real hub on 127.0.0.1:0 over mutual
//! TLS, with sled in a temporary directory. Nothing here is a mock.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use truc_domain::Limits;
use truc_hub::config::{ConnectionsConfig, DeliveryConfig};
use truc_hub::{
    AgencyEntry, Clock, CrlSetup, Directory, DirectoryReload, HubSetup, Observe, SecuritySetup,
    WatchSetup,
};
use truc_node::{AxisClient, HubAddresses, NodeConfig};
use truc_pki::{KeyAlgorithm, PkiPaths};
use truc_store::{Store, StoreOptions};

pub const OPERATOR: &str = "ops";
/// The administrator: reads like the operator, and resends and cancels dead letters.
pub const ADMINISTRATOR: &str = "admin";
/// Government Office, Finance, Nghệ An, Construction, Home Affairs.
pub const AGENCIES: [&str; 5] = [
    "000.00.00.G22",
    "000.00.00.G12",
    "000.00.00.H41",
    "000.00.00.G17",
    "000.00.00.G09",
];
/// Registered in the PKI but not in the hub's directory.
pub const UNREGISTERED: &str = "000.00.00.H01";

/// How a test hub differs from the default one.
#[derive(Clone, Debug, Default)]
pub struct TestHubOptions {
    pub limits: Limits,
    /// Agencies registered and certified besides [`AGENCIES`]. Metrics are
    /// process-wide, so a test that counts an agency's traffic exactly gives
    /// it an agency no other test uses.
    pub extra_agencies: Vec<String>,
    /// Serve Prometheus metrics on a port of 127.0.0.1 (see [`TestHub::metrics_address`]).
    pub metrics: bool,
    /// Serve the operator dashboard on a port of 127.0.0.1 (see
    /// [`TestHub::dashboard_address`] and [`TestHub::dashboard_token`]).
    pub dashboard: bool,
    /// Directory entries as given (relays, units without a node of their
    /// own), registered and certified besides the others; an entry for one
    /// of [`AGENCIES`] replaces its plain one.
    pub entries: Vec<AgencyEntry>,
    /// The key algorithm of the CA, the hub, the operator and every agency
    /// not named in `agency_key_algorithms`.
    pub key_algorithm: KeyAlgorithm,
    /// Agencies whose keys use another algorithm than the CA's, for PKIs
    /// that mix Ed25519 and ECDSA P-256 agencies.
    pub agency_key_algorithms: Vec<(String, KeyAlgorithm)>,
    /// Deadlines, expiry, quotas and the clock (`Clock::manual_now()` lets
    /// a test advance time; the clock survives restarts).
    pub watch: WatchSetup,
    /// Connection limits; `None` keeps the hub's defaults except a limit per
    /// identity far above what tests open (they drop and open clients faster
    /// than the hub sees connections close).
    pub connections: Option<ConnectionsConfig>,
    /// Starts the hub with an empty revocation list at `pki.crl()`, looked at
    /// this often; a test revokes with `truc_pki::write_crl`.
    pub crl_reload: Option<Duration>,
    /// Where sled lives instead of the temporary folder (a small file system).
    pub data_dir: Option<PathBuf>,
    /// The store's free-space reserve (`StoreOptions::free_bytes_min`).
    pub free_bytes_min: u64,
    /// Serves the directory from a file ([`TestHub::directory_path`]) that
    /// the hub reads again this often; a test changes it with
    /// [`TestHub::write_directory`].
    pub directory_reload: Option<Duration>,
    /// Runs the hub on this PostgreSQL database instead of the embedded
    /// store (see [`TestDatabase`]).
    pub postgres_url: Option<String>,
    /// How long the PKI's certificates are valid; `None`: a day. A test
    /// that moves a manual clock far ahead needs them valid that far.
    pub certificate_validity: Option<Duration>,
}

/// A PostgreSQL server of a test's own, in a temporary folder, started on a
/// thread of its own (its tooling uses the synchronous client, which must
/// not run inside the test's runtime).
pub struct TestDatabase {
    server: std::sync::Arc<truc_cluster::PostgresServer>,
    _dir: tempfile::TempDir,
}

impl TestDatabase {
    pub fn start() -> TestDatabase {
        std::thread::spawn(|| {
            truc_cluster::ensure_packages().expect("PostgreSQL is installed");
            let dir = tempfile::tempdir().expect("temp dir");
            let server = truc_cluster::PostgresServer::start(dir.path())
                .expect("the PostgreSQL server starts");
            TestDatabase {
                server: std::sync::Arc::new(server),
                _dir: dir,
            }
        })
        .join()
        .expect("the PostgreSQL server starts")
    }

    /// A new, empty database on the server: its URL.
    pub fn database(&self, name: &str) -> String {
        let server = self.server.clone();
        let name = name.to_owned();
        std::thread::spawn(move || server.create_database(&name).expect("database created"))
            .join()
            .expect("database created")
    }
}

/// The directory file of a hub started with `directory_reload`, in its folder.
const DIRECTORY_FILE: &str = "agencies.toml";

/// Connections per identity when a test sets no limit of its own.
const TEST_CONNECTIONS_PER_IDENTITY_MAX: u32 = 10_000;

pub struct TestHub {
    pub root: tempfile::TempDir,
    pub pki: PkiPaths,
    pub address: SocketAddr,
    pub limits: Limits,
    /// Where the hub serves `GET /metrics`, when started with metrics.
    pub metrics_address: Option<SocketAddr>,
    /// Where the hub serves its dashboard, when started with one.
    pub dashboard_address: Option<SocketAddr>,
    /// The dashboard's token (in `pki/dashboard.token`), when started with one.
    pub dashboard_token: Option<String>,
    registered: Vec<String>,
    entries: Vec<AgencyEntry>,
    watch: WatchSetup,
    security: SecuritySetup,
    data_dir: Option<PathBuf>,
    free_bytes_min: u64,
    postgres_url: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestHub {
    /// A hub with the five [`AGENCIES`] registered and the default limits.
    pub async fn start() -> TestHub {
        Self::start_with(Limits::default()).await
    }

    pub async fn start_with(limits: Limits) -> TestHub {
        Self::start_with_options(TestHubOptions {
            limits,
            ..TestHubOptions::default()
        })
        .await
    }

    pub async fn start_with_options(options: TestHubOptions) -> TestHub {
        let root = tempfile::tempdir().expect("temp dir");
        let mut registered: Vec<String> = AGENCIES
            .iter()
            .map(|code| code.to_string())
            .chain(options.extra_agencies)
            .collect();
        for entry in &options.entries {
            let code = entry.code.to_string();
            if !registered.contains(&code) {
                registered.push(code);
            }
        }
        let mut certified: Vec<(String, String)> = registered
            .iter()
            .map(|code| (code.clone(), format!("Agency {code}")))
            .collect();
        certified.push((UNREGISTERED.to_string(), "Unregistered".into()));
        let validity = options
            .certificate_validity
            .unwrap_or(Duration::from_secs(86_400));
        let pki = truc_pki::init_dev_pki_with_key_algorithm(
            &root.path().join("pki"),
            &certified,
            &[OPERATOR.to_string()],
            validity,
            options.key_algorithm,
        )
        .expect("development PKI");
        truc_pki::issue_administrators(&pki, &[ADMINISTRATOR.to_string()], validity)
            .expect("administrator credentials");
        for (code, key_algorithm) in &options.agency_key_algorithms {
            truc_pki::issue_agencies_with_key_algorithm(
                &pki,
                &[(code.clone(), format!("Agency {code}"))],
                validity,
                *key_algorithm,
            )
            .expect("agency credentials of another algorithm");
        }
        let security = SecuritySetup {
            crl: options.crl_reload.map(|reload_interval| CrlSetup {
                path: pki.crl(),
                reload_interval,
            }),
            connections: options.connections.unwrap_or(ConnectionsConfig {
                per_identity_max: TEST_CONNECTIONS_PER_IDENTITY_MAX,
                ..ConnectionsConfig::default()
            }),
            directory_reload: options.directory_reload.map(|interval| DirectoryReload {
                path: root.path().join(DIRECTORY_FILE),
                interval,
                on_sighup: false,
            }),
        };
        if options.crl_reload.is_some() {
            truc_pki::write_crl(&pki, &[], 1).expect("an empty revocation list");
        }
        let mut hub = TestHub {
            root,
            pki,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            limits: options.limits,
            metrics_address: options
                .metrics
                .then_some(SocketAddr::from(([127, 0, 0, 1], 0))),
            dashboard_address: options
                .dashboard
                .then_some(SocketAddr::from(([127, 0, 0, 1], 0))),
            dashboard_token: None,
            registered,
            entries: options.entries,
            watch: options.watch,
            security,
            data_dir: options.data_dir,
            free_bytes_min: options.free_bytes_min,
            postgres_url: options.postgres_url,
            stop: None,
            task: None,
        };
        if options.dashboard {
            let path = hub.root.path().join("pki").join("dashboard.token");
            hub.dashboard_token = Some(
                truc_hub::dashboard::DashboardToken::write_new(&path).expect("dashboard token"),
            );
        }
        if hub.security.directory_reload.is_some() {
            hub.write_directory(&hub.initial_entries());
        }
        hub.launch().await;
        hub
    }

    /// Where the directory file is, for a hub started with `directory_reload`.
    pub fn directory_path(&self) -> PathBuf {
        self.root.path().join(DIRECTORY_FILE)
    }

    /// The entries the hub starts with: every registered agency with a node
    /// of its own, then the given entries (which replace plain ones).
    pub fn initial_entries(&self) -> Vec<AgencyEntry> {
        let mut entries: Vec<AgencyEntry> = self
            .registered
            .iter()
            .filter(|code| !self.entries.iter().any(|e| e.code.to_string() == **code))
            .map(|code| {
                AgencyEntry::direct(
                    code.parse().expect("test agency codes are well formed"),
                    format!("Agency {code}"),
                )
            })
            .collect();
        entries.extend(self.entries.iter().cloned());
        entries
    }

    /// Writes the directory file whole (written aside, then renamed, as an
    /// operator's tools would), for the hub to read at its next look.
    pub fn write_directory(&self, entries: &[AgencyEntry]) {
        let mut text = String::new();
        for entry in entries {
            let connection = match entry.connection {
                truc_hub::ConnectionMode::Direct => "direct",
                truc_hub::ConnectionMode::Lgsp => "lgsp",
            };
            text.push_str(&format!(
                "[[agency]]\ncode = \"{}\"\nname = \"{}\"\nconnection = \"{connection}\"\nrelay = {}\nown_node = {}\n\n",
                entry.code, entry.name, entry.relay, entry.own_node
            ));
        }
        let aside = self.root.path().join(format!("{DIRECTORY_FILE}.new"));
        std::fs::write(&aside, text).expect("write the directory");
        std::fs::rename(&aside, self.directory_path()).expect("put the directory in place");
    }

    /// A second, independent hub beside this one: the same PKI (CA, hub
    /// certificate, agencies, operator) and directory, its own store in a
    /// temporary folder of its own, its own port. Two such hubs share
    /// nothing stored: what is sent to one is unknown to the other.
    pub async fn start_beside(&self) -> TestHub {
        let mut hub = TestHub {
            root: tempfile::tempdir().expect("temp dir"),
            pki: self.pki.clone(),
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            limits: self.limits.clone(),
            metrics_address: None,
            dashboard_address: None,
            dashboard_token: None,
            registered: self.registered.clone(),
            entries: self.entries.clone(),
            watch: self.watch.clone(),
            security: self.security.clone(),
            data_dir: None,
            free_bytes_min: self.free_bytes_min,
            postgres_url: None,
            stop: None,
            task: None,
        };
        hub.launch().await;
        hub
    }

    /// The hub's clock: advance it when it is manual.
    pub fn clock(&self) -> &Clock {
        &self.watch.clock
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| self.root.path().join("data"))
    }

    /// Opens the store, retrying while a just-stopped hub still holds its
    /// lock: the lock goes once the hub's last tasks have dropped the store
    /// and its writer thread has made its last flush. The wait yields to the
    /// runtime, since those tasks may need this very thread to finish.
    async fn open_store(&self) -> Store {
        let mut last_error = None;
        let options = StoreOptions {
            free_bytes_min: self.free_bytes_min,
            ..StoreOptions::default()
        };
        if let Some(url) = &self.postgres_url {
            return Store::open_postgres(
                &truc_store::PostgresOptions {
                    url: url.clone(),
                    hub_name: format!("test hub {}", self.address.port()),
                    reader_connections_max: 4,
                    ..truc_store::PostgresOptions::default()
                },
                &options,
            )
            .expect("the hub's database opens");
        }
        for _ in 0..1200 {
            match Store::open(&self.data_dir(), &options) {
                Ok(store) => return store,
                Err(error) => {
                    last_error = Some(error);
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
        }
        panic!("store did not open: {last_error:?}");
    }

    async fn launch(&mut self) {
        let store = self.open_store().await;
        // A hub that reloads its directory starts from the file, as written last.
        let directory = match &self.security.directory_reload {
            Some(reload) => Directory::load(&reload.path).expect("the test directory loads"),
            None => Directory::new(self.initial_entries()),
        };
        let setup = HubSetup {
            store,
            directory,
            trust: self.pki.trust_roots().expect("trust roots"),
            credentials: self.pki.hub_credentials().expect("hub credentials"),
            limits: self.limits.clone(),
            delivery: DeliveryConfig::default(),
            watch: self.watch.clone(),
            security: self.security.clone(),
        };
        // Bound before serving, so clients can connect as soon as this returns.
        let listener = TcpListener::bind(self.address).await.expect("bind");
        self.address = listener.local_addr().expect("local address");
        let mut observe = Observe::default();
        if let Some(address) = self.metrics_address {
            let listener = TcpListener::bind(address).await.expect("bind metrics");
            self.metrics_address = Some(listener.local_addr().expect("metrics address"));
            observe.metrics_listener = Some(listener);
        }
        if let (Some(address), Some(token)) = (self.dashboard_address, &self.dashboard_token) {
            let listener = TcpListener::bind(address).await.expect("bind dashboard");
            self.dashboard_address = Some(listener.local_addr().expect("dashboard address"));
            observe.dashboard = Some(truc_hub::dashboard::DashboardSetup {
                listener,
                token: truc_hub::dashboard::DashboardToken::new(token).expect("dashboard token"),
            });
        }
        let (stop, stopped) = oneshot::channel::<()>();
        self.stop = Some(stop);
        self.task = Some(tokio::spawn(async move {
            truc_hub::run_observed(listener, setup, observe, async {
                let _ = stopped.await;
            })
            .await
            .expect("hub runs");
        }));
    }

    /// Stops the hub and waits until it has let go of its port and store.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Stops and starts again on the same port and data directory.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch().await;
    }

    /// Stops and starts again on the same data directory but another port,
    /// as another hub of the same store would answer.
    pub async fn restart_elsewhere(&mut self) {
        self.stop().await;
        self.address = SocketAddr::from(([127, 0, 0, 1], 0));
        self.launch().await;
    }

    /// The store of a stopped hub, for checks.
    pub async fn stopped_store(&self) -> Store {
        assert!(self.task.is_none(), "stop the hub first");
        self.open_store().await
    }

    pub async fn client(&self, agency: &str) -> AxisClient {
        AxisClient::connect(
            self.address,
            &self.pki.trust_roots().expect("trust roots"),
            self.pki
                .agency_credentials(agency)
                .expect("agency credentials"),
        )
        .await
        .expect("client connects")
    }

    pub async fn operator(&self) -> AxisClient {
        AxisClient::connect(
            self.address,
            &self.pki.trust_roots().expect("trust roots"),
            self.pki
                .operator_credentials(OPERATOR)
                .expect("operator credentials"),
        )
        .await
        .expect("operator connects")
    }

    pub async fn administrator(&self) -> AxisClient {
        AxisClient::connect(
            self.address,
            &self.pki.trust_roots().expect("trust roots"),
            self.pki
                .administrator_credentials(ADMINISTRATOR)
                .expect("administrator credentials"),
        )
        .await
        .expect("administrator connects")
    }

    /// A raw mutual-TLS channel as `agency`, for services other than the Axis.
    pub async fn channel(&self, agency: &str) -> tonic::transport::Channel {
        truc_node::connect_channel(
            self.address,
            &self.pki.trust_roots().expect("trust roots"),
            &self
                .pki
                .agency_credentials(agency)
                .expect("agency credentials"),
        )
        .await
        .expect("channel connects")
    }

    pub fn node_config(&self, agency: &str, inbox: Option<PathBuf>) -> NodeConfig {
        NodeConfig {
            hubs: HubAddresses::one(self.address),
            roots: self.pki.trust_roots().expect("trust roots"),
            credentials: self
                .pki
                .agency_credentials(agency)
                .expect("agency credentials"),
            inbox,
            window: 32,
            events: None,
            backoff_max: Duration::from_millis(200),
            edxml: false,
            outbox: None,
        }
    }
}

/// A document's status once `operator` sees it in an archive; panics at
/// `deadline`, naming `case`.
pub async fn archived_status(
    operator: &AxisClient,
    document_id: &str,
    deadline: std::time::Instant,
    case: &str,
) -> truc_domain::views::DocumentStatus {
    loop {
        let status = operator.get_status(document_id).await.unwrap();
        if !status.archive.is_empty() {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{case}: {document_id} was not archived in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A draft from `from` to `to` with today's date and a given number.
pub fn draft(from: &str, to: &[&str], number: u32) -> truc_node::Draft {
    let today = time::OffsetDateTime::now_utc()
        .to_offset(time::UtcOffset::from_hms(7, 0, 0).expect("UTC+7"))
        .date();
    truc_node::Draft {
        from: from.to_owned(),
        from_name: format!("Agency {from}"),
        to: to.iter().map(|s| s.to_string()).collect(),
        number: number.to_string(),
        notation: "VPCP-TTĐT".into(),
        place: "Hà Nội".into(),
        date: format!(
            "{:04}-{:02}-{:02}",
            today.year(),
            today.month() as u8,
            today.day()
        ),
        subject: format!("Văn bản số {number} về việc thử nghiệm trục liên thông"),
        ..Default::default()
    }
}

pub fn pdf(name: &str, seed: u32, bytes: usize) -> truc_node::Attachment {
    let data: Vec<u8> = (0..bytes)
        .map(|i| (i as u32).wrapping_mul(2654435761).wrapping_add(seed) as u8)
        .collect();
    truc_node::Attachment::bytes(name, "application/pdf", data)
}

/// GET over a plain TCP connection, the way Prometheus scrapes the metrics
/// endpoint: the status line and the body.
pub async fn http_get(address: SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut tcp = tokio::net::TcpStream::connect(address)
        .await
        .expect("the metrics port accepts");
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("the request is written");
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(30), tcp.read_to_string(&mut response))
        .await
        .expect("the metrics endpoint answers")
        .expect("the response is read");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

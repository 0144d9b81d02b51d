//! What a hub that cannot start says: `RunError` names the setting as the
//! config file writes it and keeps the error underneath. A test binary of
//! its own: one test installs a metrics recorder that no hub in the same
//! process could replace.

use std::error::Error as _;
use std::path::Path;
use std::time::Duration;

use tokio::net::TcpListener;
use truc_hub::{AgencyEntry, CrlSetup, Directory, HubSetup, Observe, RunError, SecuritySetup};
use truc_store::{Store, StoreOptions};

const AGENCY: &str = "000.00.00.G22";

/// Everything a hub needs, in `dir`, with the given security settings.
fn setup(dir: &Path, security: SecuritySetup) -> HubSetup {
    let pki = truc_pki::init_dev_pki(
        &dir.join("pki"),
        &[(AGENCY.to_owned(), "Agency".to_owned())],
        &[],
        Duration::from_secs(86_400),
    )
    .expect("a development PKI");
    HubSetup {
        store: Store::open(&dir.join("data"), &StoreOptions::default()).expect("a store"),
        directory: Directory::new([AgencyEntry::direct(AGENCY.parse().unwrap(), "Agency")]),
        trust: pki.trust_roots().expect("trust roots"),
        credentials: pki.hub_credentials().expect("hub credentials"),
        limits: truc_domain::Limits::default(),
        delivery: truc_hub::config::DeliveryConfig::default(),
        watch: truc_hub::WatchSetup::default(),
        security,
    }
}

async fn loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

#[tokio::test]
async fn a_revocation_list_that_does_not_load_is_a_tls_error_naming_tls_crl() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.crl");
    let garbage = dir.path().join("garbage.crl");
    std::fs::write(&garbage, "not a revocation list\n").unwrap();
    for (path, kind) in [
        (&missing, Some(std::io::ErrorKind::NotFound)),
        (&garbage, None),
    ] {
        let security = SecuritySetup {
            crl: Some(CrlSetup {
                path: path.clone(),
                reload_interval: Duration::from_secs(60),
            }),
            ..SecuritySetup::default()
        };
        let data = dir
            .path()
            .join(path.file_name().unwrap())
            .with_extension("hub");
        let refused = truc_hub::run(loopback().await, setup(&data, security), async {})
            .await
            .expect_err("no hub starts without its revocation list");
        let RunError::Tls(tls) = &refused else {
            panic!("not a TLS error: {refused:?}");
        };
        assert_eq!(tls.field, "tls.crl");
        let said = refused.to_string();
        assert!(
            said.starts_with("the hub's TLS cannot be set up: tls.crl: "),
            "{said}"
        );
        assert!(said.contains(&path.display().to_string()), "{said}");
        // The system's error is kept, not only its text.
        let io_kind = match &tls.source {
            truc_pki::PkiError::Io { source, .. } => Some(source.kind()),
            _ => None,
        };
        assert_eq!(io_kind, kind, "{:?}", tls.source);
    }
}

#[tokio::test]
async fn metrics_that_would_go_to_another_recorder_stop_the_hub_naming_the_setting() {
    // Whatever recorder came first would receive the hub's figures.
    metrics::set_global_recorder(metrics::NoopRecorder).expect("the first recorder");
    let dir = tempfile::tempdir().unwrap();
    let observe = Observe {
        metrics_listener: Some(loopback().await),
        ..Observe::default()
    };
    let refused = truc_hub::run_observed(
        loopback().await,
        setup(dir.path(), SecuritySetup::default()),
        observe,
        async {},
    )
    .await
    .expect_err("the hub does not count into another recorder");
    assert!(
        matches!(
            refused,
            RunError::Setting {
                field: "observe.metrics_listen",
                ..
            }
        ),
        "{refused:?}"
    );
    assert!(
        refused.to_string().starts_with(
            "observe.metrics_listen: another metrics recorder is already installed in this process"
        ),
        "{refused}"
    );
    let source = refused.source().expect("the recorder's refusal is kept");
    assert!(
        matches!(
            source.downcast_ref::<truc_hub::metrics::InstallError>(),
            Some(truc_hub::metrics::InstallError::OtherRecorder(_))
        ),
        "{source:?}"
    );
}

//! The attack suite: one row per attack on a real hub over loopback with
//! real mutual TLS, each stating how the hub must answer (the handshake
//! refused, or a gRPC code naming the field), and checked to be logged as a
//! security event (`truc::security`) naming the identity and counted in
//! `truc_security_events_total{kind}`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use truc_domain::Status;
use truc_hub::config::ConnectionsConfig;
use truc_hub::{AgencyEntry, ConnectionMode};
use truc_node::compose::Prepared;
use truc_node::AxisClient;
use truc_pki::{Credentials, TrustRoots};
use truc_testkit::{draft, pdf, TestHub, TestHubOptions, AGENCIES, OPERATOR};

const G22: &str = AGENCIES[0];
const G12: &str = AGENCIES[1];
const H41: &str = AGENCIES[2];
/// Revoked while the hub runs.
const REVOKED: &str = "000.00.00.G40";
/// Opens more connections than its identity may hold.
const FLOODER: &str = "000.00.00.G41";
/// Certified by the axis CA, not in the hub's directory.
const UNREGISTERED: &str = truc_testkit::UNREGISTERED;
/// A district of Nghệ An with no node of its own: H41 relays for it.
const NODELESS_UNIT: &str = "000.00.05.H41";
/// A district of Nghệ An with a node of its own.
const OWN_NODE_UNIT: &str = "000.00.06.H41";
/// Under H41, but in no directory.
const UNLISTED_UNIT: &str = "000.00.09.H41";
/// Connections one identity may hold in this suite.
const CONNECTIONS_PER_IDENTITY_MAX: u32 = 3;
/// A bound on each wait, so that a broken hub fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(30);

/// What the hub must do with an attack.
#[derive(Clone, Debug)]
enum Expected {
    /// The TLS handshake fails; logged and counted as `kind`.
    HandshakeRefused { kind: &'static str },
    /// A gRPC refusal whose message starts with `field` and contains
    /// `names` (when not empty); logged as `kind`.
    Refused {
        code: Code,
        field: &'static str,
        names: &'static str,
        kind: &'static str,
    },
    /// Answered with the original acknowledgement, nothing stored again.
    OriginalAnswer,
    /// Not refused, and nothing changed.
    NoEffect,
}

/// How the hub answered.
#[derive(Debug)]
enum Outcome {
    HandshakeRefused(String),
    Refused(tonic::Status),
    /// Anything else, described (the description is for failure messages).
    Answered(#[allow(dead_code)] String),
    Duplicate {
        accepted_at_unix_ms: i64,
    },
    NoEffect,
}

/// The attacks. Each names who attacks, so that the log can be checked for
/// that identity.
#[derive(Clone, Debug)]
enum Attack {
    /// A certificate for a registered code, issued by another CA.
    AnotherCa,
    Expired,
    NotYetValid,
    /// A certificate on the revocation list, on a new connection.
    RevokedNewConnection,
    /// The same certificate on a connection opened before it was revoked.
    RevokedOpenConnection,
    /// A client that offers only TLS 1.2 (a downgrade).
    Tls12Only,
    /// A client with no certificate at all.
    NoCertificate,
    /// A valid G12 certificate, an envelope claiming G22.
    ClaimsAnotherCode,
    /// G22's envelope signed with G12's key.
    SignedByAnotherKey,
    /// G22's captured envelope sent again by G12.
    ReplayByAnotherAgency,
    /// G22's captured envelope sent again by G22.
    ReplayBySender,
    /// G12 reads the status of a document between G22 and H41.
    ReadsAnothersStatus,
    /// G12 fetches its attachment.
    FetchesAnothersAttachment,
    /// G12 moves H41's delivery.
    MovesAnothersDelivery,
    /// G12 opens a delivery stream and acknowledges H41's queue item.
    AcknowledgesAnothersQueue,
    /// An agency asks for the operators' report, node list and dead-letter actions.
    AgencyReport,
    AgencyListNodes,
    AgencyResendsDeadLetter,
    AgencyCancelsDeadLetter,
    /// An operator's certificate sends a document.
    OperatorSends,
    /// An operator's certificate (read-only) resends or cancels a dead
    /// letter, which only an administrator may.
    OperatorResendsDeadLetter,
    OperatorCancelsDeadLetter,
    /// One identity opens one connection more than it may.
    ConnectionFlood,
    /// A certificate of the axis CA for a code not in the directory sends,
    /// opens a delivery stream, moves a status, reads its counts.
    UnregisteredSends,
    UnregisteredOpensDeliveries,
    UnregisteredMoves,
    UnregisteredReads,
    /// A unit reached only through its relay acts as a node of its own.
    NodelessUnitSends,
    NodelessUnitOpensDeliveries,
    NodelessUnitMoves,
    /// The relay moves a delivery of a unit of its subtree that has a node
    /// of its own, and of a unit that is not registered.
    RelayActsForUnitWithOwnNode,
    RelayActsForUnlistedUnit,
}

fn table() -> Vec<(Attack, Expected, &'static str)> {
    use Attack::*;
    use Expected::*;
    let refused = |code, field, kind| Refused {
        code,
        field,
        names: "",
        kind,
    };
    let denied_naming = |field, names| Refused {
        code: Code::PermissionDenied,
        field,
        names,
        kind: "permission_denied",
    };
    vec![
        (
            AnotherCa,
            HandshakeRefused {
                kind: "certificate_unknown_issuer",
            },
            "urn:truc:agency:000.00.00.G22",
        ),
        (
            Expired,
            HandshakeRefused {
                kind: "certificate_expired",
            },
            "urn:truc:agency:000.00.00.G22",
        ),
        (
            NotYetValid,
            HandshakeRefused {
                kind: "certificate_not_yet_valid",
            },
            "urn:truc:agency:000.00.00.G22",
        ),
        (
            RevokedNewConnection,
            HandshakeRefused {
                kind: "certificate_revoked",
            },
            "urn:truc:agency:000.00.00.G40",
        ),
        (
            RevokedOpenConnection,
            refused(Code::Unauthenticated, "certificate", "certificate_revoked"),
            "urn:truc:agency:000.00.00.G40",
        ),
        (
            Tls12Only,
            HandshakeRefused {
                kind: "tls_incompatible",
            },
            "peer 127.0.0.1",
        ),
        (
            NoCertificate,
            HandshakeRefused {
                kind: "certificate_missing",
            },
            "peer 127.0.0.1",
        ),
        (
            ClaimsAnotherCode,
            refused(Code::PermissionDenied, "from.organ_id", "permission_denied"),
            "urn:truc:agency:000.00.00.G12",
        ),
        (
            SignedByAnotherKey,
            refused(
                Code::Unauthenticated,
                "envelope.signature",
                "unauthenticated",
            ),
            "urn:truc:agency:000.00.00.G22",
        ),
        (
            ReplayByAnotherAgency,
            refused(
                Code::Unauthenticated,
                "envelope.signature",
                "unauthenticated",
            ),
            "urn:truc:agency:000.00.00.G12",
        ),
        (ReplayBySender, OriginalAnswer, ""),
        (
            ReadsAnothersStatus,
            refused(Code::PermissionDenied, "document_id", "permission_denied"),
            "urn:truc:agency:000.00.00.G12",
        ),
        (
            FetchesAnothersAttachment,
            refused(Code::PermissionDenied, "document_id", "permission_denied"),
            "urn:truc:agency:000.00.00.G12",
        ),
        (
            MovesAnothersDelivery,
            refused(Code::PermissionDenied, "recipient", "permission_denied"),
            "urn:truc:agency:000.00.00.G12",
        ),
        (
            AgencyReport,
            refused(Code::PermissionDenied, "certificate", "permission_denied"),
            "urn:truc:agency:000.00.00.G22",
        ),
        (
            AgencyListNodes,
            refused(Code::PermissionDenied, "certificate", "permission_denied"),
            "urn:truc:agency:000.00.00.G22",
        ),
        (
            AgencyResendsDeadLetter,
            refused(Code::PermissionDenied, "certificate", "permission_denied"),
            "urn:truc:agency:000.00.00.G22",
        ),
        (
            AgencyCancelsDeadLetter,
            refused(Code::PermissionDenied, "certificate", "permission_denied"),
            "urn:truc:agency:000.00.00.G22",
        ),
        (
            OperatorSends,
            refused(Code::PermissionDenied, "certificate", "permission_denied"),
            "urn:truc:operator:ops",
        ),
        (
            OperatorResendsDeadLetter,
            refused(Code::PermissionDenied, "certificate", "permission_denied"),
            "urn:truc:operator:ops",
        ),
        (
            OperatorCancelsDeadLetter,
            refused(Code::PermissionDenied, "certificate", "permission_denied"),
            "urn:truc:operator:ops",
        ),
        (
            ConnectionFlood,
            HandshakeRefused {
                kind: "connection_limit",
            },
            "urn:truc:agency:000.00.00.G41",
        ),
        // Acknowledging someone else's queue item is not refused: an agency's
        // acknowledgements name items of its own queue only, so the attempt
        // finds nothing and changes nothing (checked in the row itself).
        (AcknowledgesAnothersQueue, NoEffect, ""),
        (
            UnregisteredSends,
            denied_naming("certificate", UNREGISTERED),
            "urn:truc:agency:000.00.00.H01",
        ),
        (
            UnregisteredOpensDeliveries,
            denied_naming("certificate", UNREGISTERED),
            "urn:truc:agency:000.00.00.H01",
        ),
        (
            UnregisteredMoves,
            denied_naming("certificate", UNREGISTERED),
            "urn:truc:agency:000.00.00.H01",
        ),
        (
            UnregisteredReads,
            denied_naming("certificate", UNREGISTERED),
            "urn:truc:agency:000.00.00.H01",
        ),
        (
            NodelessUnitSends,
            denied_naming("certificate", NODELESS_UNIT),
            "urn:truc:agency:000.00.05.H41",
        ),
        (
            NodelessUnitOpensDeliveries,
            denied_naming("certificate", NODELESS_UNIT),
            "urn:truc:agency:000.00.05.H41",
        ),
        (
            NodelessUnitMoves,
            denied_naming("certificate", NODELESS_UNIT),
            "urn:truc:agency:000.00.05.H41",
        ),
        (
            RelayActsForUnitWithOwnNode,
            denied_naming("recipient", OWN_NODE_UNIT),
            "urn:truc:agency:000.00.00.H41",
        ),
        (
            RelayActsForUnlistedUnit,
            denied_naming("recipient", UNLISTED_UNIT),
            "urn:truc:agency:000.00.00.H41",
        ),
    ]
}

/// Everything the rows share: the hub, one client per party, a document
/// between G22 and H41 with its signed envelope, and captured logs.
struct Context {
    hub: TestHub,
    roots: TrustRoots,
    g22: AxisClient,
    g12: AxisClient,
    operator: AxisClient,
    /// Connected before [`REVOKED`] is revoked.
    revoked_early: AxisClient,
    /// The fixture document's signed envelope, as a network observer would capture it.
    captured: Prepared,
    document_id: String,
    accepted_at_unix_ms: i64,
    /// H41's queue item for the fixture document.
    h41_queue_seq: u64,
    /// G22's document to [`NODELESS_UNIT`] and [`OWN_NODE_UNIT`].
    units_document_id: String,
    foreign_pki: tempfile::TempDir,
}

/// A plain TLS connection with `config`, then the HTTP/2 preface: the hub
/// answers a good connection with its SETTINGS; a refused handshake ends in
/// an alert or a closed connection. TLS 1.3 lets a client finish its side of
/// the handshake before the server has checked its certificate, so the
/// refusal shows on the first read.
async fn probe(address: SocketAddr, config: rustls::ClientConfig) -> Outcome {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from(truc_pki::HUB_SERVER_NAME).unwrap();
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut tls = match connector.connect(name, tcp).await {
        Ok(tls) => tls,
        Err(error) => return Outcome::HandshakeRefused(error.to_string()),
    };
    if let Err(error) = tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await {
        return Outcome::HandshakeRefused(error.to_string());
    }
    let mut buffer = [0u8; 64];
    match tokio::time::timeout(PATIENCE, tls.read(&mut buffer)).await {
        Err(_) => Outcome::Answered("nothing, for 30 s".into()),
        Ok(Ok(0)) => Outcome::HandshakeRefused("closed".into()),
        Ok(Ok(read)) => Outcome::Answered(format!("{read} bytes of HTTP/2")),
        Ok(Err(error)) => Outcome::HandshakeRefused(error.to_string()),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration like a node's, with the given versions and certificate.
fn client_config(
    roots: &TrustRoots,
    credentials: Option<&Credentials>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ClientConfig {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots.root_store());
    let mut config = match credentials {
        Some(credentials) => builder
            .with_client_auth_cert(
                credentials
                    .cert_chain_der
                    .iter()
                    .map(|der| der.clone().into())
                    .collect(),
                rustls::pki_types::PrivateKeyDer::Pkcs8(credentials.key_pkcs8_der.clone().into()),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

/// Credentials for `code` with a validity window of the hub's CA, from files.
fn windowed(
    hub: &TestHub,
    code: &str,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
    folder: &Path,
) -> Credentials {
    let (cert, key) =
        truc_pki::issue_agency_pem_with_window(&hub.pki, code, not_before, not_after).unwrap();
    std::fs::create_dir_all(folder).unwrap();
    let (cert_path, key_path) = (folder.join("agency.crt"), folder.join("agency.key"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    Credentials::load(&cert_path, &key_path).unwrap()
}

fn refusal<T: std::fmt::Debug>(result: Result<T, truc_node::ClientError>) -> Outcome {
    match result {
        Ok(answer) => Outcome::Answered(format!("{answer:?}")),
        Err(truc_node::ClientError::Refused(status)) => Outcome::Refused(status),
        Err(other) => Outcome::Answered(format!("an error that is not a refusal: {other}")),
    }
}

async fn run(attack: &Attack, context: &Context) -> Outcome {
    let hub = &context.hub;
    let now = time::OffsetDateTime::now_utc();
    match attack {
        Attack::AnotherCa => {
            let foreign = truc_pki::init_dev_pki(
                context.foreign_pki.path(),
                &[(G22.to_string(), "Impostor".to_string())],
                &[],
                Duration::from_secs(3600),
            )
            .unwrap();
            let impostor = foreign.agency_credentials(G22).unwrap();
            let config = client_config(&context.roots, Some(&impostor), &[&rustls::version::TLS13]);
            probe(hub.address, config).await
        }
        Attack::Expired | Attack::NotYetValid => {
            let (not_before, not_after, folder) = match attack {
                Attack::Expired => (
                    now - time::Duration::days(10),
                    now - time::Duration::days(1),
                    "expired",
                ),
                _ => (
                    now + time::Duration::days(1),
                    now + time::Duration::days(10),
                    "future",
                ),
            };
            let credentials = windowed(
                hub,
                G22,
                not_before,
                not_after,
                &hub.root.path().join(folder),
            );
            let config = client_config(
                &context.roots,
                Some(&credentials),
                &[&rustls::version::TLS13],
            );
            probe(hub.address, config).await
        }
        Attack::RevokedNewConnection => {
            let credentials = hub.pki.agency_credentials(REVOKED).unwrap();
            let config = client_config(
                &context.roots,
                Some(&credentials),
                &[&rustls::version::TLS13],
            );
            probe(hub.address, config).await
        }
        Attack::RevokedOpenConnection => refusal(context.revoked_early.counts("", "").await),
        Attack::Tls12Only => {
            let credentials = hub.pki.agency_credentials(G22).unwrap();
            let config = client_config(
                &context.roots,
                Some(&credentials),
                &[&rustls::version::TLS12],
            );
            probe(hub.address, config).await
        }
        Attack::NoCertificate => {
            let config = client_config(&context.roots, None, &[&rustls::version::TLS13]);
            probe(hub.address, config).await
        }
        Attack::ClaimsAnotherCode => refusal(
            context
                .g12
                .send(&draft(G22, &[H41], 101), vec![pdf("a.pdf", 1, 10)])
                .await,
        ),
        Attack::SignedByAnotherKey => {
            let forged = Prepared::new(
                &draft(G22, &[H41], 102),
                vec![pdf("a.pdf", 1, 10)],
                context.g12.credentials(),
            )
            .await
            .unwrap();
            refusal(context.g22.send_prepared(forged).await)
        }
        Attack::ReplayByAnotherAgency => {
            refusal(context.g12.send_prepared(context.captured.clone()).await)
        }
        Attack::ReplayBySender => match context.g22.send_prepared(context.captured.clone()).await {
            Ok(response) if response.duplicate => Outcome::Duplicate {
                accepted_at_unix_ms: response.accepted_at_unix_ms,
            },
            other => refusal(other),
        },
        Attack::ReadsAnothersStatus => refusal(context.g12.get_status(&context.document_id).await),
        Attack::FetchesAnothersAttachment => refusal(
            context
                .g12
                .fetch_attachment(&context.document_id, 0)
                .await
                .map(|_| "an attachment stream"),
        ),
        Attack::MovesAnothersDelivery => refusal(
            context
                .g12
                .move_status(&context.document_id, Some(H41), Status::Received, "")
                .await,
        ),
        Attack::AcknowledgesAnothersQueue => {
            let (acks, stream) = context.g12.deliveries(8).await.unwrap();
            acks.ack(vec![context.h41_queue_seq]).await.unwrap();
            drop(acks);
            drop(stream);
            // Whatever G12 acknowledged, H41's delivery is still waiting.
            let status = context
                .operator
                .get_status(&context.document_id)
                .await
                .unwrap();
            let h41 = status.recipients.iter().find(|r| r.recipient == H41);
            match h41 {
                Some(row) if row.history.is_empty() => Outcome::NoEffect,
                other => Outcome::Answered(format!("H41's delivery changed: {other:?}")),
            }
        }
        Attack::AgencyReport => refusal(context.g22.report("", "", "").await),
        Attack::AgencyListNodes => refusal(context.g22.list_nodes().await),
        Attack::AgencyResendsDeadLetter => refusal(
            context
                .g22
                .resend_dead_letter(&context.document_id, H41)
                .await,
        ),
        Attack::AgencyCancelsDeadLetter => refusal(
            context
                .g22
                .cancel_dead_letter(&context.document_id, H41, "không cần")
                .await,
        ),
        Attack::OperatorResendsDeadLetter => refusal(
            context
                .operator
                .resend_dead_letter(&context.document_id, H41)
                .await,
        ),
        Attack::OperatorCancelsDeadLetter => refusal(
            context
                .operator
                .cancel_dead_letter(&context.document_id, H41, "không cần")
                .await,
        ),
        Attack::OperatorSends => refusal(
            context
                .operator
                .send(&draft(G22, &[H41], 103), vec![pdf("a.pdf", 1, 10)])
                .await,
        ),
        Attack::UnregisteredSends => refusal(
            hub.client(UNREGISTERED)
                .await
                .send(&draft(UNREGISTERED, &[H41], 104), vec![pdf("a.pdf", 1, 10)])
                .await,
        ),
        Attack::UnregisteredOpensDeliveries => refusal(
            hub.client(UNREGISTERED)
                .await
                .deliveries(8)
                .await
                .map(|_| "a stream"),
        ),
        Attack::UnregisteredMoves => refusal(
            hub.client(UNREGISTERED)
                .await
                .move_status(&context.document_id, None, Status::Received, "")
                .await,
        ),
        Attack::UnregisteredReads => refusal(hub.client(UNREGISTERED).await.counts("", "").await),
        Attack::NodelessUnitSends => refusal(
            hub.client(NODELESS_UNIT)
                .await
                .send(
                    &draft(NODELESS_UNIT, &[G22], 105),
                    vec![pdf("a.pdf", 1, 10)],
                )
                .await,
        ),
        Attack::NodelessUnitOpensDeliveries => refusal(
            hub.client(NODELESS_UNIT)
                .await
                .deliveries(8)
                .await
                .map(|_| "a stream"),
        ),
        Attack::NodelessUnitMoves => refusal(
            hub.client(NODELESS_UNIT)
                .await
                .move_status(&context.units_document_id, None, Status::Received, "")
                .await,
        ),
        Attack::RelayActsForUnitWithOwnNode | Attack::RelayActsForUnlistedUnit => {
            let unit = match attack {
                Attack::RelayActsForUnitWithOwnNode => OWN_NODE_UNIT,
                _ => UNLISTED_UNIT,
            };
            refusal(
                hub.client(H41)
                    .await
                    .move_status(&context.units_document_id, Some(unit), Status::Received, "")
                    .await,
            )
        }
        Attack::ConnectionFlood => {
            let credentials = hub.pki.agency_credentials(FLOODER).unwrap();
            let mut held = Vec::new();
            for _ in 0..CONNECTIONS_PER_IDENTITY_MAX {
                let client = AxisClient::connect(hub.address, &context.roots, credentials.clone())
                    .await
                    .unwrap();
                client.counts("", "").await.expect("within the limit");
                held.push(client);
            }
            let config = client_config(
                &context.roots,
                Some(&credentials),
                &[&rustls::version::TLS13],
            );
            let outcome = probe(hub.address, config.clone()).await;
            // Others are not affected, and a slot given back is usable again.
            context.g12.counts("", "").await.expect("another identity");
            drop(held.pop());
            eventually_answered(hub.address, config).await;
            outcome
        }
    }
}

/// Waits until a connection with `config` is served (a slot was freed).
async fn eventually_answered(address: SocketAddr, config: rustls::ClientConfig) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Outcome::Answered(_) = probe(address, config.clone()).await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a freed connection slot was never given back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until new connections with `config` are refused as revoked (the
/// list reloaded), not merely closed for some other reason.
async fn eventually_revoked(address: SocketAddr, config: rustls::ClientConfig, log: &Captured) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let outcome = probe(address, config.clone()).await;
        if let Outcome::HandshakeRefused(reason) = &outcome {
            if reason.contains("Revoked") {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the revocation list was never reloaded: {outcome:?}; log:\n{}",
            log.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The lines the hub logged, shared with a writer the subscriber uses.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `truc_security_events_total` per kind, from the hub's metrics endpoint.
async fn security_events(hub: &TestHub) -> BTreeMap<String, f64> {
    let (_, body) =
        truc_testkit::http_get(hub.metrics_address.expect("metrics are on"), "/metrics").await;
    body.lines()
        .filter_map(|line| line.strip_prefix("truc_security_events_total{kind=\""))
        .filter_map(|rest| {
            let (kind, value) = rest.split_once("\"} ")?;
            Some((kind.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Every attack of the table, each answered as the row says, logged with the
/// identity and counted; then the same hub still serves a good document. The
/// table runs against a hub on the embedded store, then against one on
/// PostgreSQL, one after the other (the security counters are process-wide).
#[tokio::test]
async fn every_attack_is_refused_logged_and_counted() {
    attack_table(None).await;
    let database = truc_testkit::TestDatabase::start();
    attack_table(Some(database.database("attacks"))).await;
}

async fn attack_table(postgres_url: Option<String>) {
    let captured = Captured::default();
    let writer = captured.clone();
    // This test's runtime runs on this thread only, hub tasks included, so a
    // subscriber for this thread sees every event the hub logs here.
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let hub = TestHub::start_with_options(TestHubOptions {
        postgres_url,
        extra_agencies: vec![REVOKED.into(), FLOODER.into()],
        entries: units_of_nghe_an(),
        metrics: true,
        connections: Some(ConnectionsConfig {
            per_identity_max: CONNECTIONS_PER_IDENTITY_MAX,
            ..ConnectionsConfig::default()
        }),
        crl_reload: Some(Duration::from_millis(100)),
        ..TestHubOptions::default()
    })
    .await;
    let roots = hub.pki.trust_roots().unwrap();
    let g22 = hub.client(G22).await;
    let h41 = hub.client(H41).await;
    let captured_envelope = Prepared::new(
        &draft(G22, &[H41], 1),
        vec![pdf("a.pdf", 1, 1000)],
        g22.credentials(),
    )
    .await
    .unwrap();
    let accepted = g22.send_prepared(captured_envelope.clone()).await.unwrap();
    let (_h41_acks, mut h41_stream) = h41.deliveries(8).await.unwrap();
    let h41_queue_seq = loop {
        let message = tokio::time::timeout(PATIENCE, h41_stream.message())
            .await
            .expect("H41 gets its delivery")
            .unwrap()
            .unwrap();
        if let truc_domain::views::HubItem::Delivery(delivery) = message {
            break delivery.queue_seq;
        }
    };
    // H41 keeps the delivery unacknowledged, so its queue item stays.
    drop(h41_stream);
    let units_document_id = g22
        .send(
            &draft(G22, &[NODELESS_UNIT, OWN_NODE_UNIT], 3),
            vec![pdf("c.pdf", 3, 100)],
        )
        .await
        .unwrap()
        .document_id;

    // Revoke while the hub runs, with a connection already open.
    let revoked_early = hub.client(REVOKED).await;
    revoked_early
        .counts("", "")
        .await
        .expect("served before the revocation");
    let revoked_credentials = hub.pki.agency_credentials(REVOKED).unwrap();
    truc_pki::write_crl(
        &hub.pki,
        &[revoked_credentials.certificate_der().to_vec()],
        2,
    )
    .unwrap();
    eventually_revoked(
        hub.address,
        client_config(
            &roots,
            Some(&revoked_credentials),
            &[&rustls::version::TLS13],
        ),
        &captured,
    )
    .await;

    let context = Context {
        g12: hub.client(G12).await,
        operator: AxisClient::connect(
            hub.address,
            &roots,
            hub.pki.operator_credentials(OPERATOR).unwrap(),
        )
        .await
        .unwrap(),
        roots,
        g22,
        revoked_early,
        captured: captured_envelope,
        document_id: accepted.document_id.clone(),
        accepted_at_unix_ms: accepted.accepted_at_unix_ms,
        h41_queue_seq,
        units_document_id,
        foreign_pki: tempfile::tempdir().unwrap(),
        hub,
    };
    let counts_before = context.operator.counts("", "").await.unwrap();

    let mut failures = Vec::new();
    let rows = table();
    for (attack, expected, identity) in &rows {
        captured.clear();
        let before = security_events(&context.hub).await;
        let outcome = run(attack, &context).await;
        let kind = match (expected, &outcome) {
            (Expected::HandshakeRefused { kind }, Outcome::HandshakeRefused(_)) => Some(*kind),
            (
                Expected::Refused {
                    code,
                    field,
                    names,
                    kind,
                },
                Outcome::Refused(status),
            ) if status.code() == *code
                && status.message().starts_with(&format!("{field}:"))
                && status.message().contains(names) =>
            {
                Some(*kind)
            }
            (
                Expected::OriginalAnswer,
                Outcome::Duplicate {
                    accepted_at_unix_ms,
                },
            ) if *accepted_at_unix_ms == context.accepted_at_unix_ms => None,
            (Expected::NoEffect, Outcome::NoEffect) => None,
            _ => {
                failures.push(format!(
                    "{attack:?}: expected {expected:?}, got {outcome:?}"
                ));
                continue;
            }
        };
        let Some(kind) = kind else { continue };
        // The counter and the log line may trail the answer by a moment
        // (the hub reports a handshake after the client has seen it fail).
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let after = security_events(&context.hub).await;
            let counted =
                after.get(kind).copied().unwrap_or(0.0) > before.get(kind).copied().unwrap_or(0.0);
            let text = captured.text();
            let logged = text.lines().any(|line| {
                line.contains("truc::security") && line.contains(kind) && line.contains(identity)
            });
            if counted && logged {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                failures.push(format!(
                    "{attack:?}: counted {counted}, logged {logged} as {kind} for {identity}; log:\n{text}"
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} attacks not handled as expected:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );

    // Nothing the attacks did was stored, and the hub still serves.
    let counts_after = context.operator.counts("", "").await.unwrap();
    assert_eq!(counts_before, counts_after);
    let good = context
        .g22
        .send(&draft(G22, &[G12], 2), vec![pdf("b.pdf", 2, 100)])
        .await
        .unwrap();
    assert!(!good.duplicate);
    eprintln!("{} attacks tried, all handled as expected", rows.len());
}

/// Nghệ An relays for a district without a node; another district has its own.
fn units_of_nghe_an() -> Vec<AgencyEntry> {
    let entry = |code: &str, connection, relay, own_node| AgencyEntry {
        code: code.parse().unwrap(),
        name: format!("Agency {code}"),
        connection,
        relay,
        own_node,
    };
    vec![
        entry(H41, ConnectionMode::Lgsp, true, true),
        entry(NODELESS_UNIT, ConnectionMode::Lgsp, false, false),
        entry(OWN_NODE_UNIT, ConnectionMode::Direct, false, true),
    ]
}

/// Registered at the start of the reload test, then removed.
const REMOVED: &str = "000.00.00.G43";

/// Polls `check` until it holds, failing with `what` after [`PATIENCE`].
async fn eventually<F, Fut>(what: &str, log: &Captured, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}, not within {PATIENCE:?}; log:\n{}",
            log.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn denied_naming(result: Result<impl std::fmt::Debug, truc_node::ClientError>, code: &str) -> bool {
    matches!(
        refusal(result),
        Outcome::Refused(status) if status.code() == Code::PermissionDenied
            && status.message().starts_with("certificate:")
            && status.message().contains(code)
    )
}

/// The directory is read again while the hub runs: a code taken out of it
/// can no longer send, move, read or receive (its open delivery stream
/// ends), a file that does not load leaves the one in force, and a code put
/// back may act again.
#[tokio::test]
async fn a_code_removed_from_the_directory_stops_acting_without_a_restart() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);
    let hub = TestHub::start_with_options(TestHubOptions {
        extra_agencies: vec![REMOVED.into()],
        directory_reload: Some(Duration::from_millis(50)),
        ..TestHubOptions::default()
    })
    .await;
    let removed = hub.client(REMOVED).await;
    let g22 = hub.client(G22).await;
    let sent = removed
        .send(&draft(REMOVED, &[H41], 1), vec![pdf("a.pdf", 1, 10)])
        .await
        .expect("registered: it sends");
    let (_acks, mut stream) = removed.deliveries(8).await.expect("and receives");
    let to_removed = g22
        .send(&draft(G22, &[REMOVED], 2), vec![pdf("b.pdf", 2, 10)])
        .await
        .expect("and is a recipient");

    let everyone = hub.initial_entries();
    let without: Vec<AgencyEntry> = everyone
        .iter()
        .filter(|entry| entry.code.to_string() != REMOVED)
        .cloned()
        .collect();
    hub.write_directory(&without);
    eventually("the removed code is refused", &captured, || async {
        denied_naming(removed.counts("", "").await, REMOVED)
    })
    .await;
    // Its open delivery stream ends with the refusal, not at its next reconnection.
    let ended = loop {
        match tokio::time::timeout(PATIENCE, stream.message()).await {
            Err(_) => panic!("the removed code's stream is still open"),
            Ok(Ok(Some(_))) => continue,
            Ok(other) => break other,
        }
    };
    assert!(
        matches!(&ended, Err(truc_node::ClientError::Refused(status)) if status.code() == Code::PermissionDenied && status.message().contains(REMOVED)),
        "{ended:?}"
    );
    assert!(denied_naming(
        removed
            .send(&draft(REMOVED, &[H41], 3), vec![pdf("c.pdf", 3, 10)])
            .await,
        REMOVED
    ));
    assert!(denied_naming(
        removed
            .move_status(&to_removed.document_id, None, Status::Received, "")
            .await,
        REMOVED
    ));
    assert!(denied_naming(
        removed.get_status(&sent.document_id).await,
        REMOVED
    ));
    assert!(denied_naming(
        removed.deliveries(8).await.map(|_| ()),
        REMOVED
    ));
    // Nor is it a recipient any more: a send only to it is refused whole.
    let refused = g22
        .send(&draft(G22, &[REMOVED], 4), vec![pdf("d.pdf", 4, 10)])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(Code::InvalidArgument), "{refused}");
    assert!(refused.to_string().contains("not registered"), "{refused}");

    // A file that does not load leaves the directory in force.
    captured.clear();
    std::fs::write(hub.directory_path(), "[[agency]]\ncode = \"nonsense\"\n").unwrap();
    eventually("the broken file is reported", &captured, || async {
        captured.text().contains("directory not reloaded")
    })
    .await;
    g22.counts("", "").await.expect("G22 is still registered");
    assert!(denied_naming(removed.counts("", "").await, REMOVED));

    // Put back, it acts again.
    hub.write_directory(&everyone);
    eventually("the code put back may act", &captured, || async {
        removed.counts("", "").await.is_ok()
    })
    .await;
    removed
        .send(&draft(REMOVED, &[H41], 5), vec![pdf("e.pdf", 5, 10)])
        .await
        .expect("sends again");
}

/// A client's text that would forge a log line, in a notation.
const FORGED_LINE: &str =
    "\n2026-12-06T00:00:00.000000Z  WARN truc::security: security event kind=\"forged\"";

/// Whether a line of the human format starts as the hub writes one: a
/// timestamp of this run (RFC 3339, UTC), never the forged one.
fn starts_as_a_log_line(line: &str) -> bool {
    let bytes = line.as_bytes();
    bytes.len() > 20
        && bytes[..4].iter().all(u8::is_ascii_digit)
        && bytes[4] == b'-'
        && bytes[10] == b'T'
        && !line.starts_with("2026-12-06T00:00:00.000000Z")
}

/// What a client writes never breaks or forges a line, in either format:
/// refusals repeat it quoted with escapes, the human format escapes every
/// field, and JSON lines stay one object each.
#[tokio::test]
async fn refusals_and_log_lines_escape_what_clients_wrote() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let (human, json) = (Captured::default(), Captured::default());
    let (human_writer, json_writer) = (human.clone(), json.clone());
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(truc_hub::logs::layer(
            truc_hub::logs::LogFormat::Human,
            move || human_writer.clone(),
            false,
        ))
        .with(truc_hub::logs::layer(
            truc_hub::logs::LogFormat::Json,
            move || json_writer.clone(),
            false,
        ));
    let _logging = tracing::subscriber::set_default(subscriber);
    let hub = TestHub::start().await;
    let g22 = hub.client(G22).await;

    let mut forged = draft(G22, &[H41], 1);
    forged.notation = format!("VPCP{FORGED_LINE}");
    let mut with_nul = draft(G22, &[H41], 2);
    with_nul.notation = "VPCP\0\u{1b}[2J".into();
    let mut overridden = draft(G22, &[H41], 3);
    overridden.notation = "VPCP\u{202e}TTĐT".into();
    let attempts = [
        (forged, pdf("a.pdf", 1, 10), "code"),
        (with_nul, pdf("a.pdf", 2, 10), "code"),
        (overridden, pdf("a.pdf", 3, 10), "code"),
        (
            draft(G22, &[H41], 4),
            pdf("hoadon\u{202e}fdp.exe", 4, 10),
            "attachments[0].name",
        ),
        (
            draft(G22, &[H41], 5),
            pdf(&format!("vanban{FORGED_LINE}.pdf"), 5, 10),
            "attachments[0].name",
        ),
    ];
    let refused_sends = attempts.len();
    for (draft, attachment, field) in attempts {
        let refusal = g22.send(&draft, vec![attachment]).await.unwrap_err();
        let message = refusal.to_string();
        assert_eq!(refusal.code(), Some(Code::InvalidArgument), "{message}");
        assert!(message.contains(&format!("{field}:")), "{message}");
        assert!(
            !message.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "the refusal repeats the client's text raw: {message:?}"
        );
    }
    // A move naming a recipient with a forged line is refused the same way.
    let refusal = g22
        .move_status(
            "000.00.00.G22,2026/12/06,1/VPCP",
            Some(&format!("000.00.00.H41{FORGED_LINE}")),
            Status::Received,
            "",
        )
        .await
        .unwrap_err();
    assert!(!refusal.to_string().contains('\n'), "{refusal}");

    let deadline = tokio::time::Instant::now() + PATIENCE;
    while human.text().matches("send refused").count() < refused_sends
        || json.text().matches("send refused").count() < refused_sends
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the refusals were not logged; human log:\n{}\njson log:\n{}",
            human.text(),
            json.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let human_text = human.text();
    for line in human_text.lines() {
        assert!(
            starts_as_a_log_line(line),
            "a line the hub did not write: {line:?}\nin:\n{human_text}"
        );
        assert!(
            !line.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "a raw control or override character: {line:?}"
        );
    }
    // The forged line is there, escaped inside the refusal's own line.
    assert!(
        human_text.contains("VPCP\\n2026-12-06T00:00:00.000000Z"),
        "{human_text}"
    );
    let json_text = json.text();
    let mut events = 0;
    for line in json_text.lines() {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|error| panic!("not one JSON object per line ({error}): {line:?}"));
        assert!(event.is_object(), "{line}");
        events += 1;
    }
    assert!(events >= refused_sends, "{json_text}");
}

/// The hub's TLS configuration holds only TLS 1.3's AEAD suites.
#[test]
fn the_hub_offers_only_tls_1_3_with_strong_suites() {
    let dir = tempfile::tempdir().unwrap();
    let pki = truc_pki::init_dev_pki(dir.path(), &[], &[], Duration::from_secs(3600)).unwrap();
    let config =
        truc_pki::server_tls_config(&pki.trust_roots().unwrap(), &pki.hub_credentials().unwrap())
            .unwrap();
    // The versions are not readable from a built configuration; the table's
    // TLS 1.2 client shows the hub refuses it, and no TLS 1.2 suite is left.
    let suites: Vec<String> = config
        .crypto_provider()
        .cipher_suites
        .iter()
        .map(|suite| format!("{:?}", suite.suite()))
        .collect();
    assert_eq!(
        suites,
        [
            "TLS13_AES_256_GCM_SHA384",
            "TLS13_AES_128_GCM_SHA256",
            "TLS13_CHACHA20_POLY1305_SHA256"
        ],
        "only TLS 1.3's AEAD suites"
    );
    // A resumed session would skip the certificate check (and so revocation).
    assert_eq!(config.send_tls13_tickets, 0);
}

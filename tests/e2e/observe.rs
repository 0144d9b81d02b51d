//! What operators' tooling sees of a running hub: server reflection and
//! gRPC health over the Axis port's mutual TLS, and the Prometheus endpoint
//! counting real traffic.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_reflection::pb::v1 as reflection;
use tonic_reflection::pb::v1alpha as reflection_alpha;
use truc_domain::Status;
use truc_testkit::{draft, http_get, pdf, TestHub, TestHubOptions, AGENCIES};

const G22: &str = AGENCIES[0];
const H41: &str = AGENCIES[2];
/// Only the metrics test uses these, and they are in no published directory
/// that a replay test loads: the recorder is shared by every hub in the test
/// process, so their series count this test's traffic alone.
const METERED_SENDER: &str = "000.00.00.G98";
const METERED_RECIPIENT: &str = "000.00.00.G99";

/// A bound on each wait, so that a broken hub fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(30);

async fn health_of(hub: &TestHub, service: &str) -> Result<ServingStatus, tonic::Status> {
    let mut health = HealthClient::new(hub.channel(G22).await);
    let response = health
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await?;
    Ok(response.into_inner().status())
}

#[tokio::test]
async fn reflection_lists_and_describes_the_axis_and_health_says_serving() {
    let hub = TestHub::start().await;

    assert_eq!(
        health_of(&hub, truc_hub::AXIS_SERVICE).await.unwrap(),
        ServingStatus::Serving
    );
    assert_eq!(health_of(&hub, "").await.unwrap(), ServingStatus::Serving);
    assert_eq!(
        health_of(&hub, "truc.v1.NoSuchService")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    let mut client =
        reflection::server_reflection_client::ServerReflectionClient::new(hub.channel(G22).await);
    let ask = |request| reflection::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let requests = tokio_stream::iter([
        ask(reflection::server_reflection_request::MessageRequest::ListServices(String::new())),
        ask(
            reflection::server_reflection_request::MessageRequest::FileContainingSymbol(
                "truc.v1.Axis".into(),
            ),
        ),
    ]);
    let mut answers = client
        .server_reflection_info(requests)
        .await
        .expect("reflection answers")
        .into_inner();

    let listed = match answers.next().await.unwrap().unwrap().message_response {
        Some(reflection::server_reflection_response::MessageResponse::ListServicesResponse(
            list,
        )) => list
            .service
            .into_iter()
            .map(|service| service.name)
            .collect::<Vec<_>>(),
        other => panic!("expected the list of services, got {other:?}"),
    };
    // Each protocol lists both: a tool that asks one learns the other is there too.
    for service in [
        "truc.v1.Axis",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            listed.iter().any(|name| name == service),
            "{service} is not in {listed:?}"
        );
    }

    let files = match answers.next().await.unwrap().unwrap().message_response {
        Some(reflection::server_reflection_response::MessageResponse::FileDescriptorResponse(
            files,
        )) => files.file_descriptor_proto,
        other => panic!("expected the file describing truc.v1.Axis, got {other:?}"),
    };
    let axis = files
        .iter()
        .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap())
        .filter(|file| file.package() == "truc.v1")
        .flat_map(|file| file.service)
        .find(|service| service.name() == "Axis")
        .expect("the Axis service is described");
    let mut methods: Vec<&str> = axis.method.iter().map(|method| method.name()).collect();
    methods.sort_unstable();
    assert_eq!(
        methods,
        [
            "CancelDeadLetter",
            "Counts",
            "Deliveries",
            "ExplainRoute",
            "ExportAudit",
            "FetchAttachment",
            "GetStatus",
            "ListDeadLetters",
            "ListDocuments",
            "ListNodes",
            "ListOverdue",
            "MoveStatus",
            "MoveStatuses",
            "Report",
            "ResendDeadLetter",
            "Send",
        ]
    );
    let send = axis.method.iter().find(|m| m.name() == "Send").unwrap();
    assert_eq!(send.input_type(), ".truc.v1.SendRequest");
    assert!(send.client_streaming() && !send.server_streaming());

    // Older tools speak v1alpha; the same services are there.
    let mut alpha = reflection_alpha::server_reflection_client::ServerReflectionClient::new(
        hub.channel(G22).await,
    );
    let mut alpha_answers = alpha
        .server_reflection_info(tokio_stream::iter([
            reflection_alpha::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(
                    reflection_alpha::server_reflection_request::MessageRequest::ListServices(
                        String::new(),
                    ),
                ),
            },
        ]))
        .await
        .expect("v1alpha reflection answers")
        .into_inner();
    match alpha_answers
        .next()
        .await
        .unwrap()
        .unwrap()
        .message_response
    {
        Some(
            reflection_alpha::server_reflection_response::MessageResponse::ListServicesResponse(
                list,
            ),
        ) => {
            for service in [
                "truc.v1.Axis",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            ] {
                assert!(
                    list.service.iter().any(|s| s.name == service),
                    "{service} is not in {list:?}"
                );
            }
        }
        other => panic!("expected the list of services, got {other:?}"),
    }
}

#[tokio::test]
async fn a_health_watch_sees_not_serving_and_ends_when_the_hub_stops() {
    let mut hub = TestHub::start().await;
    let mut health = HealthClient::new(hub.channel(G22).await);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: truc_hub::AXIS_SERVICE.into(),
        })
        .await
        .expect("watch starts")
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);

    // The open watch must not hold the hub's graceful shutdown.
    tokio::time::timeout(PATIENCE, hub.stop())
        .await
        .expect("the hub stops while a health watch is open");
    let last = tokio::time::timeout(PATIENCE, watch.next())
        .await
        .expect("the watch reports the stop")
        .expect("a last status")
        .expect("not an error");
    assert_eq!(last.status(), ServingStatus::NotServing);
    let end = tokio::time::timeout(PATIENCE, watch.next())
        .await
        .expect("the watch ends");
    assert!(end.is_none(), "the watch should end, got {end:?}");
}

/// One scrape: each series (`name{label="value",...}`) and its value.
struct Scrape {
    text: String,
    series: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    /// The value of the one series of `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .series
            .iter()
            .filter(|(series, series_labels, _)| {
                series == name
                    && labels.iter().all(|(key, value)| {
                        series_labels.get(*key).map(String::as_str) == Some(*value)
                    })
            })
            .map(|(_, _, value)| *value)
            .collect();
        assert!(
            matching.len() <= 1,
            "{name} {labels:?} matches several series"
        );
        matching.first().copied()
    }
}

async fn scrape(hub: &TestHub) -> Scrape {
    let (status_line, text) = http_get(hub.metrics_address.unwrap(), "/metrics").await;
    assert_eq!(status_line, "HTTP/1.1 200 OK", "{text}");
    let series = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("series and value");
            let value: f64 = value.parse().expect("a number");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, parse_labels(labels)),
                None => (series, BTreeMap::new()),
            };
            (name.to_owned(), labels, value)
        })
        .collect();
    Scrape { text, series }
}

/// `key="value",key="value"}`, where values may hold commas, `=` and `\"`.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("a closed label value") {
                (_, '\\') => value.push(chars.next().expect("an escaped character").1),
                (at, '"') => break at,
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.trim_start_matches(',').to_owned(), value);
        rest = &after[end + 1..];
    }
    assert_eq!(rest, "}", "labels end with a brace");
    labels
}

fn unix_now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test]
async fn metrics_count_sends_moves_and_refusals_as_they_happen() {
    let mut hub = TestHub::start_with_options(TestHubOptions {
        extra_agencies: vec![METERED_SENDER.into(), METERED_RECIPIENT.into()],
        metrics: true,
        ..TestHubOptions::default()
    })
    .await;
    let sends = |scrape: &Scrape, outcome: &str| {
        scrape.value(
            "truc_sends_total",
            &[("agency", METERED_SENDER), ("outcome", outcome)],
        )
    };
    let before = scrape(&hub).await;
    assert_eq!(sends(&before, "accepted"), None, "nothing sent yet");

    let sender = hub.client(METERED_SENDER).await;
    let document = draft(METERED_SENDER, &[METERED_RECIPIENT], 1);
    let accepted = sender
        .send(&document, vec![pdf("a.pdf", 1, 100)])
        .await
        .expect("accepted");
    assert!(!accepted.duplicate);
    let again = sender
        .send(&document, vec![pdf("a.pdf", 1, 100)])
        .await
        .expect("a resend answers with the original");
    assert!(again.duplicate);
    sender
        .send(
            &draft(METERED_SENDER, &[METERED_RECIPIENT], 2),
            vec![pdf("b.pdf", 2, 100)],
        )
        .await
        .expect("accepted");
    // Signed by the metered sender, claiming to be another agency: refused.
    let refusal = sender
        .send(&draft(G22, &[H41], 3), vec![pdf("c.pdf", 3, 100)])
        .await
        .expect_err("a send in another agency's name is refused");
    assert_eq!(refusal.code(), Some(Code::PermissionDenied), "{refusal}");

    // Both wait in the recipient's queue, published within the gauges' period.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let scraped = scrape(&hub).await;
        let depth = scraped.value(
            "truc_queue_depth",
            &[("agency", METERED_RECIPIENT), ("kind", "documents")],
        );
        let age = scraped.value(
            "truc_queue_oldest_unacked_age_seconds",
            &[("agency", METERED_RECIPIENT)],
        );
        if depth == Some(2.0) && age.is_some_and(|age| age >= 0.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "queue gauges never showed the two deliveries: depth {depth:?}, age {age:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The recipient takes one delivery, acknowledges it and reports "received".
    let recipient = hub.client(METERED_RECIPIENT).await;
    let (acks, mut deliveries) = recipient.deliveries(8).await.unwrap();
    let mut delivered = Vec::new();
    while delivered.len() < 2 {
        let message = tokio::time::timeout(PATIENCE, deliveries.next())
            .await
            .expect("deliveries arrive")
            .unwrap()
            .unwrap();
        if let truc_domain::views::HubItem::Delivery(delivery) = message {
            delivered.push(delivery);
        }
    }
    let first = delivered
        .iter()
        .find(|d| d.document_id == accepted.document_id)
        .expect("the first document is delivered");
    acks.ack(vec![first.queue_seq]).await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let status = recipient.get_status(&accepted.document_id).await.unwrap();
        if status.recipients.iter().any(|r| r.current.code() == 1) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the arrival was never stored"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    recipient
        .move_status(&accepted.document_id, None, Status::Received, "")
        .await
        .expect("received");

    let after = scrape(&hub).await;
    assert_eq!(sends(&after, "accepted"), Some(2.0), "{}", after.text);
    assert_eq!(sends(&after, "duplicate"), Some(1.0));
    assert_eq!(sends(&after, "refused"), Some(1.0));
    assert_eq!(
        after.value(
            "truc_status_moves_total",
            &[("agency", METERED_RECIPIENT), ("status", "received")]
        ),
        Some(1.0)
    );
    assert_eq!(
        after.value(
            "truc_deliveries_sent_total",
            &[("agency", METERED_RECIPIENT)]
        ),
        Some(2.0)
    );
    // Other tests' hubs may refuse at the same time, so these only grow by at least ours.
    let grew_by_at_least = |name: &str, labels: &[(&str, &str)], ours: f64| {
        let was = before.value(name, labels).unwrap_or(0.0);
        let is = after.value(name, labels).unwrap_or(0.0);
        assert!(
            is >= was + ours,
            "{name} {labels:?} went from {was} to {is}"
        );
    };
    grew_by_at_least("truc_refusals_total", &[("code", "permission_denied")], 1.0);
    grew_by_at_least("truc_requests_total", &[("method", "send")], 4.0);
    grew_by_at_least("truc_requests_total", &[("method", "move_status")], 1.0);

    // The test PKI issues certificates for one day.
    let expires = after
        .value(
            "truc_certificate_expiry_timestamp_seconds",
            &[("identity", "hub")],
        )
        .expect("the hub certificate's expiry");
    let in_a_day = unix_now_seconds() + 86_400.0;
    assert!(
        (expires - in_a_day).abs() < 300.0,
        "{expires} vs {in_a_day}"
    );
    assert!(
        after.text.contains("# HELP truc_sends_total "),
        "{}",
        after.text
    );

    // No store call site records group commits yet; one recorded by hand
    // shows the hub's recorder gives the store's names their buckets.
    truc_store::metrics::group_commit(3, Duration::from_millis(2));
    let with_commit = scrape(&hub).await;
    assert!(
        with_commit
            .text
            .contains("# TYPE truc_group_commit_flush_seconds histogram\n"),
        "{}",
        with_commit.text
    );
    assert!(
        with_commit
            .value(
                "truc_group_commit_flush_seconds_bucket",
                &[("le", "0.0025")]
            )
            .unwrap()
            >= 1.0
    );

    let (status_line, _) = http_get(hub.metrics_address.unwrap(), "/").await;
    assert_eq!(status_line, "HTTP/1.1 404 Not Found");

    drop((acks, deliveries));
    let metrics_address = hub.metrics_address.unwrap();
    hub.stop().await;
    assert!(
        tokio::net::TcpStream::connect(metrics_address)
            .await
            .is_err(),
        "a stopped hub lets go of its metrics port"
    );
}

//! Every refusal a real hub answers over mutual TLS is counted once in
//! `truc_refusals_total`, whatever made it: the `HubError` mapping, a
//! service's own status, or a stream's trailers. A test binary of its own:
//! the metrics recorder is process-wide, so no other hub may refuse anything
//! while this one is counted.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use truc_proto::v1 as pb;
use truc_testkit::{http_get, TestHub, TestHubOptions, AGENCIES};

/// A bound on each wait, so that a broken hub fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(30);

/// `truc_refusals_total` per `code` label, as the metrics endpoint shows it.
async fn refusals(hub: &TestHub) -> BTreeMap<String, f64> {
    let address = hub.metrics_address.expect("the hub serves metrics");
    let (status, body) = http_get(address, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    body.lines()
        .filter_map(|line| line.strip_prefix("truc_refusals_total{code=\""))
        .filter_map(|rest| {
            let (code, value) = rest.split_once("\"} ")?;
            Some((code.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn each_refusal_is_counted_once_whatever_made_it() {
    let hub = TestHub::start_with_options(TestHubOptions {
        metrics: true,
        ..TestHubOptions::default()
    })
    .await;
    let client = hub.client(AGENCIES[0]).await;
    // An answer that is not a refusal counts nothing.
    client.counts("", "").await.expect("counts are answered");
    let before = refusals(&hub).await;

    // A handler's refusal through the HubError mapping: trailers-only.
    let refused = client
        .get_status("not a document id")
        .await
        .expect_err("an ill-formed id is refused");
    assert_eq!(refused.code(), Some(Code::InvalidArgument), "{refused}");

    // A status the health service builds itself, not from a HubError.
    let unknown = HealthClient::new(hub.channel(AGENCIES[0]).await)
        .check(HealthCheckRequest {
            service: "truc.v1.NoSuchService".into(),
        })
        .await
        .expect_err("an unknown service has no health");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");

    // A delivery stream that opened, then ends on a refusal in its trailers:
    // a second hello where only acknowledgements may follow.
    let recipient = hub.client(AGENCIES[2]).await;
    let (outbound, mut deliveries) = recipient.deliveries_as_sent(8).await.unwrap();
    outbound
        .send(pb::NodeMessage {
            kind: Some(pb::node_message::Kind::Hello(pb::Hello { window: 8 })),
        })
        .await
        .unwrap();
    let ended = loop {
        match tokio::time::timeout(PATIENCE, deliveries.next())
            .await
            .expect("the stream ends")
        {
            Some(Ok(_)) => continue,
            Some(Err(status)) => break status,
            None => panic!("the stream ended without a refusal"),
        }
    };
    assert_eq!(ended.code(), Code::InvalidArgument, "{ended:?}");
    assert!(ended.message().starts_with("kind: "), "{ended:?}");

    let after = refusals(&hub).await;
    let grew = |code: &str| after.get(code).unwrap_or(&0.0) - before.get(code).unwrap_or(&0.0);
    assert_eq!(grew("invalid_argument"), 2.0, "{before:?} → {after:?}");
    assert_eq!(grew("not_found"), 1.0, "{before:?} → {after:?}");
    for code in after.keys().chain(before.keys()) {
        if code != "invalid_argument" && code != "not_found" {
            assert_eq!(grew(code), 0.0, "{code}: {before:?} → {after:?}");
        }
    }
}

//! LGSP relays: a document to a unit without a node of its own goes to the
//! nearest registered ancestor that relays for it; the relay passes it down
//! and moves statuses for the units of its subtree, and only for those.

use tokio::sync::mpsc;
use tonic::Code;
use truc_domain::Status;
use truc_hub::{AgencyEntry, ConnectionMode};
use truc_node::NodeEvent;
use truc_testkit::{draft, pdf, TestHub, TestHubOptions, AGENCIES};

use crate::{inbox_documents, wait_for};

const G22: &str = AGENCIES[0];
const G12: &str = AGENCIES[1];
/// Nghệ An: its node is the province's LGSP.
pub const RELAY: &str = AGENCIES[2];
/// A district of Nghệ An without a node of its own.
pub const DISTRICT: &str = "000.00.05.H41";
/// A commune under that district, also without a node: the district does not
/// relay, so the province does.
pub const COMMUNE: &str = "000.07.05.H41";
/// A district of Nghệ An with a node of its own.
pub const OWN_DISTRICT: &str = "000.00.06.H41";
/// A unit without a node under a province that relays for no one.
pub const STRANDED: &str = "000.00.03.H42";

fn entry(code: &str, connection: ConnectionMode, relay: bool, own_node: bool) -> AgencyEntry {
    AgencyEntry {
        code: code.parse().unwrap(),
        name: format!("Agency {code}"),
        connection,
        relay,
        own_node,
    }
}

/// A hub whose directory has the province of Nghệ An as an LGSP relay.
pub async fn relay_hub() -> TestHub {
    use ConnectionMode::{Direct, Lgsp};
    TestHub::start_with_options(TestHubOptions {
        entries: vec![
            entry(RELAY, Lgsp, true, true),
            entry(DISTRICT, Lgsp, false, false),
            entry(COMMUNE, Lgsp, false, false),
            entry(OWN_DISTRICT, Direct, false, true),
            entry("000.00.00.H42", Direct, false, true),
            entry(STRANDED, Lgsp, false, false),
        ],
        ..TestHubOptions::default()
    })
    .await
}

#[tokio::test]
async fn a_relay_receives_for_its_units_passes_them_down_and_moves_their_statuses() {
    let hub = relay_hub().await;
    let (events, mut receiver) = mpsc::channel(64);
    let inbox = hub.root.path().join("inbox").join(RELAY);
    let mut config = hub.node_config(RELAY, Some(inbox.clone()));
    config.events = Some(events);
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let node = tokio::spawn(truc_node::run_node(config, async move {
        let _ = stopped.changed().await;
    }));

    let sender = hub.client(G22).await;
    let sent = sender
        .send(
            &draft(G22, &[DISTRICT, COMMUNE, OWN_DISTRICT, STRANDED, G12], 1),
            vec![pdf("vb.pdf", 1, 5_000)],
        )
        .await
        .unwrap();
    let id = sent.document_id.clone();
    let outcome = |code: &str| {
        sent.recipients
            .iter()
            .find(|r| r.organ_id == code)
            .unwrap()
            .clone()
    };
    for code in [DISTRICT, COMMUNE, OWN_DISTRICT, G12] {
        assert!(outcome(code).accepted, "{code}");
    }
    // No route is a refusal with its reason, not a silent queue.
    let stranded = outcome(STRANDED);
    assert!(!stranded.accepted);
    assert!(stranded.reason.contains("no route"), "{}", stranded.reason);

    // The relay's node receives both units' deliveries, each naming its unit.
    let mut delivered_for = Vec::new();
    wait_for(&mut receiver, |event| {
        if let NodeEvent::Delivered { recipient, .. } = event {
            delivered_for.push(recipient.clone());
        }
        delivered_for.len() == 2
    })
    .await;
    delivered_for.sort();
    assert_eq!(
        delivered_for,
        vec![DISTRICT.to_string(), COMMUNE.to_string()],
        "sorted: 000.00.05 before 000.07.05"
    );
    // Passed down: each unit's folder holds the document, the relay's own top level only those folders.
    for unit in [DISTRICT, COMMUNE] {
        assert_eq!(
            inbox_documents(&inbox.join(unit)),
            vec![truc_node::agent::inbox_name(&id)]
        );
    }
    assert_eq!(
        inbox_documents(&inbox),
        vec![DISTRICT.to_string(), COMMUNE.to_string()]
    );

    // Arrivals are recorded for the units, made by the relay; the third waits in its own queue.
    let operator = hub.operator().await;
    let arrived = loop {
        let status = operator.get_status(&id).await.unwrap();
        if status
            .recipients
            .iter()
            .filter(|r| r.current.code() == Status::Arrived.code() as i32)
            .count()
            == 2
        {
            break status;
        }
        tokio::task::yield_now().await;
    };
    for row in &arrived.recipients {
        match row.recipient.as_str() {
            DISTRICT | COMMUNE => assert_eq!(row.history[0].actor, RELAY),
            OWN_DISTRICT | G12 => assert!(row.history.is_empty()),
            other => panic!("unexpected recipient {other}"),
        }
    }
    // Counted for the units that received it, not for the relay that carried it.
    let counts = operator.counts("", "").await.unwrap();
    let received = |code: &str| {
        counts
            .agencies
            .iter()
            .find(|a| a.organ_id == code)
            .map_or(0, |a| a.received)
    };
    assert_eq!(
        (received(DISTRICT), received(COMMUNE), received(RELAY)),
        (1, 1, 0)
    );

    // Status moves come back up: the relay acts for its unit, and the sender hears it.
    let relay = hub.client(RELAY).await;
    let moved = relay
        .move_status(&id, Some(COMMUNE), Status::Received, "")
        .await
        .unwrap();
    assert_eq!(moved.actor, RELAY);
    relay
        .move_status(
            &id,
            Some(DISTRICT),
            Status::Rejected,
            "Không thuộc thẩm quyền",
        )
        .await
        .unwrap();
    let status = sender.get_status(&id).await.unwrap();
    let commune = status
        .recipients
        .iter()
        .find(|r| r.recipient == COMMUNE)
        .unwrap();
    assert_eq!(commune.current.code(), Status::Received.code() as i32);
    assert_eq!(commune.history.last().unwrap().actor, RELAY);
    // The relay reads the rows of its subtree (a district with its own node
    // included: the province's LGSP may act for any unit below it), not the sender's others.
    let seen_by_relay: Vec<String> = relay
        .get_status(&id)
        .await
        .unwrap()
        .recipients
        .into_iter()
        .map(|r| r.recipient)
        .collect();
    assert_eq!(
        seen_by_relay,
        vec![
            DISTRICT.to_string(),
            OWN_DISTRICT.to_string(),
            COMMUNE.to_string()
        ]
    );
    let _ = stop.send(true);
    node.await.unwrap();

    // The sender's node hears the relay's moves under the unit's code.
    let (_acks, mut stream) = sender.deliveries(64).await.unwrap();
    let mut heard = Vec::new();
    while heard.len() < 4 {
        use tokio_stream::StreamExt;
        if let truc_domain::views::HubItem::Notice(notice) = stream.next().await.unwrap().unwrap() {
            for entry in notice.entries {
                heard.push((notice.recipient.clone(), entry.status.code(), entry.actor));
            }
        }
    }
    assert!(heard.contains(&(COMMUNE.to_string(), 3, RELAY.to_string())));
    assert!(heard.contains(&(DISTRICT.to_string(), 2, RELAY.to_string())));
}

#[tokio::test]
async fn a_relay_may_not_act_outside_its_subtree_nor_a_unit_for_another() {
    let hub = relay_hub().await;
    let sender = hub.client(G22).await;
    let id = sender
        .send(
            &draft(G22, &[G12, DISTRICT, OWN_DISTRICT], 1),
            vec![pdf("vb.pdf", 1, 10)],
        )
        .await
        .unwrap()
        .document_id;
    let relay = hub.client(RELAY).await;
    let outside = relay
        .move_status(&id, Some(G12), Status::Received, "")
        .await
        .unwrap_err();
    assert_eq!(outside.code(), Some(Code::PermissionDenied));
    let message = outside.to_string();
    assert!(message.contains("recipient:"), "{message}");
    assert!(message.contains("subtree"), "{message}");
    // A district with its own node does not relay for the rest of the province.
    let district = hub.client(OWN_DISTRICT).await;
    let sideways = district
        .move_status(&id, Some(DISTRICT), Status::Received, "")
        .await
        .unwrap_err();
    assert_eq!(sideways.code(), Some(Code::PermissionDenied));
    assert!(sideways.to_string().contains("recipient:"), "{sideways}");
    // Nothing was recorded by the refusals.
    let status = sender.get_status(&id).await.unwrap();
    assert!(status.recipients.iter().all(|r| r.history.is_empty()));
    // The relay's node cannot read a document outside its subtree either.
    let other = sender
        .send(&draft(G22, &[G12], 2), vec![pdf("vb.pdf", 2, 10)])
        .await
        .unwrap()
        .document_id;
    assert_eq!(
        relay.get_status(&other).await.unwrap_err().code(),
        Some(Code::PermissionDenied)
    );
}

#[tokio::test]
async fn the_directory_says_where_each_code_is_delivered_and_why() {
    let hub = relay_hub().await;
    let operator = hub.operator().await;
    let route = operator.explain_route(DISTRICT).await.unwrap();
    assert_eq!(route.kind, truc_domain::views::RouteKind::Relay);
    assert_eq!(route.node, RELAY);
    assert_eq!(
        route.explanation,
        "000.00.05.H41 → delivered to 000.00.00.H41 (LGSP relay for its subtree)"
    );
    assert_eq!(
        operator.explain_route(COMMUNE).await.unwrap().node,
        RELAY,
        "the nearest relaying ancestor, past a district that does not relay"
    );
    let own = operator.explain_route(OWN_DISTRICT).await.unwrap();
    assert_eq!(
        (own.kind, own.node.as_str()),
        (truc_domain::views::RouteKind::OwnNode, OWN_DISTRICT)
    );
    let none = operator.explain_route(STRANDED).await.unwrap();
    assert_eq!(
        (none.kind, none.node.as_str()),
        (truc_domain::views::RouteKind::None, "")
    );
    assert_eq!(
        operator.explain_route("000.00.09.H41").await.unwrap().kind,
        truc_domain::views::RouteKind::Unregistered
    );
    let bad = operator.explain_route("000.09.00.H41").await.unwrap_err();
    assert_eq!(bad.code(), Some(Code::InvalidArgument));
    assert!(bad.to_string().contains("organ_id:"), "{bad}");

    // A document only to units with no route is refused whole, naming `to`.
    let sender = hub.client(G22).await;
    let refused = sender
        .send(&draft(G22, &[STRANDED], 1), vec![pdf("vb.pdf", 1, 10)])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(Code::InvalidArgument));
    assert!(refused.to_string().contains("to:"), "{refused}");
    assert!(refused.to_string().contains("no route"), "{refused}");
}

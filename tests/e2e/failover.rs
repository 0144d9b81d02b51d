//! Clients given several hubs: a dead address is skipped, a hub that stops
//! is left for the next, a send or a move whose answer was lost gets the
//! original answer from the same store, a refusal is never asked again, and
//! a node agent whose hub stops goes on at the next and still writes each
//! document into its inbox exactly once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use truc_node::compose::Prepared;
use truc_node::{AxisClient, HubAddresses, NodeEvent};
use truc_testkit::{draft, pdf, TestHub, AGENCIES};

use crate::{inbox_documents, wait_for};

const G22: &str = AGENCIES[0];
const G12: &str = AGENCIES[1];
const H41: &str = AGENCIES[2];

/// Longest wait for anything a test polls for.
const PATIENCE: Duration = Duration::from_secs(30);

/// An address nothing listens on: bound, then let go.
async fn dead_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

async fn client_of(hub: &TestHub, hubs: &[SocketAddr], agency: &str) -> AxisClient {
    AxisClient::connect_hubs(
        &HubAddresses::new(hubs.iter().copied()).unwrap(),
        &hub.pki.trust_roots().unwrap(),
        hub.pki.agency_credentials(agency).unwrap(),
    )
    .await
    .expect("one of the hubs accepts")
}

#[tokio::test]
async fn a_client_skips_a_dead_address_and_says_which_hub_answered() {
    let hub = TestHub::start().await;
    let dead = dead_address().await;
    let client = client_of(&hub, &[dead, hub.address], G22).await;
    assert_eq!(client.hubs().as_slice(), &[dead, hub.address]);
    assert_eq!(client.current_hub(), hub.address);
    let response = client
        .send(&draft(G22, &[H41], 1), vec![pdf("a.pdf", 1, 500)])
        .await
        .unwrap();
    assert!(!response.duplicate);
    assert_eq!(client.current_hub(), hub.address);
    let status = hub
        .operator()
        .await
        .get_status(&response.document_id)
        .await
        .unwrap();
    assert_eq!(status.sender, G22);

    // With every address dead, the client says so for each.
    let other_dead = dead_address().await;
    let refused = AxisClient::connect_hubs(
        &HubAddresses::new([dead, other_dead]).unwrap(),
        &hub.pki.trust_roots().unwrap(),
        hub.pki.agency_credentials(G22).unwrap(),
    )
    .await
    .err()
    .expect("nothing listens");
    assert!(refused.is_unreachable());
    let message = refused.to_string();
    assert!(
        message.contains(&dead.to_string()) && message.contains(&other_dead.to_string()),
        "{message}"
    );
}

#[tokio::test]
async fn a_client_moves_on_when_its_hub_stops_and_never_asks_again_what_a_hub_refused() {
    let mut first = TestHub::start().await;
    let second = first.start_beside().await;
    let client = client_of(&first, &[first.address, second.address], G22).await;
    let on_first = client
        .send(&draft(G22, &[H41], 1), vec![pdf("a.pdf", 1, 500)])
        .await
        .unwrap();
    assert_eq!(client.current_hub(), first.address);

    // A document only the second hub has: the first answers NOT_FOUND, and
    // that answer stands; the call does not go looking elsewhere.
    let only_on_second = second
        .client(G22)
        .await
        .send(&draft(G22, &[H41], 2), vec![pdf("b.pdf", 2, 500)])
        .await
        .unwrap();
    let refused = client
        .get_status(&only_on_second.document_id)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(tonic::Code::NotFound), "{refused}");
    assert!(!refused.is_unreachable());
    assert_eq!(client.current_hub(), first.address);

    // The first hub stops: the same client's next calls go to the second.
    first.stop().await;
    let moved = client
        .send(&draft(G22, &[H41], 3), vec![pdf("c.pdf", 3, 500)])
        .await
        .unwrap();
    assert!(!moved.duplicate);
    assert_eq!(client.current_hub(), second.address);
    let second_operator = second.operator().await;
    second_operator
        .get_status(&moved.document_id)
        .await
        .expect("stored by the second hub");
    let unknown = second_operator
        .get_status(&on_first.document_id)
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Some(tonic::Code::NotFound));
}

/// A TCP relay to a hub that can lose the hub's answers: told to, it drops
/// every byte from the hub (the request still reaches the hub and is acted
/// on), and when cut, closes every connection it holds and takes no more.
struct LossyRelay {
    address: SocketAddr,
    losing: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<bool>,
}

impl LossyRelay {
    async fn start(hub: SocketAddr) -> LossyRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let losing = Arc::new(AtomicBool::new(false));
        let (cut, cut_seen) = tokio::sync::watch::channel(false);
        let relay_losing = losing.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, hub, relay_losing.clone(), cut_seen.clone()));
            }
        });
        LossyRelay {
            address,
            losing,
            cut,
        }
    }

    fn lose_answers(&self) {
        self.losing.store(true, Ordering::SeqCst);
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }
}

async fn relay(
    client: TcpStream,
    hub: SocketAddr,
    losing: Arc<AtomicBool>,
    mut cut: tokio::sync::watch::Receiver<bool>,
) {
    let Ok(upstream) = TcpStream::connect(hub).await else {
        return;
    };
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_hub, mut to_hub) = upstream.into_split();
    let requests = tokio::io::copy(&mut from_client, &mut to_hub);
    let answers = async {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = from_hub.read(&mut buffer).await?;
            if read == 0 {
                return Ok::<_, std::io::Error>(());
            }
            if !losing.load(Ordering::SeqCst) {
                to_client.write_all(&buffer[..read]).await?;
            }
        }
    };
    // Whichever ends first, both connections close with this task.
    tokio::select! {
        _ = requests => {}
        _ = answers => {}
        _ = cut.wait_for(|cut| *cut) => {}
    }
}

/// Polls until `done` holds, failing after [`PATIENCE`].
async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_send_whose_acknowledgement_was_lost_gets_the_original_from_the_next_address() {
    let hub = TestHub::start().await;
    let relay = LossyRelay::start(hub.address).await;
    // The relay first, then the hub itself: two ways to one store.
    let client = client_of(&hub, &[relay.address, hub.address], G22).await;
    assert_eq!(client.current_hub(), relay.address);
    let draft = draft(G22, &[H41, G12], 1);
    relay.lose_answers();
    let sending = tokio::spawn({
        let (client, draft) = (client.clone(), draft.clone());
        async move { client.send(&draft, vec![pdf("a.pdf", 1, 3_000)]).await }
    });
    // The hub stored it and answered into the void; then the way breaks.
    let operator = hub.operator().await;
    eventually("the hub never stored the send", || async {
        operator.get_status(&draft.document_id()).await.is_ok()
    })
    .await;
    relay.cut();
    let response = sending
        .await
        .unwrap()
        .expect("the send is answered by the next address");
    assert_eq!(client.current_hub(), hub.address);
    // The retry is the stored document's duplicate, answered with the
    // original acknowledgement.
    assert!(response.duplicate, "{response:?}");
    assert_eq!(response.document_id, draft.document_id());
    assert_eq!(response.recipients.len(), 2);
    let status = operator.get_status(&response.document_id).await.unwrap();
    assert_eq!(status.accepted_at_unix_ms, response.accepted_at_unix_ms);
    let counts = operator.counts("", "").await.unwrap();
    assert_eq!(counts.total_sent, 1, "stored once");
}

/// The statuses `agency`'s delivery of `document_id` went through.
async fn history(operator: &AxisClient, document_id: &str, agency: &str) -> Vec<i32> {
    operator
        .get_status(document_id)
        .await
        .unwrap()
        .recipients
        .iter()
        .find(|row| row.recipient == agency)
        .map(|row| {
            row.history
                .iter()
                .map(|entry| entry.status.code())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_move_whose_answer_was_lost_returns_the_entry_recorded_once() {
    let hub = TestHub::start().await;
    let operator = hub.operator().await;
    let sent = hub
        .client(G22)
        .await
        .send(&draft(G22, &[H41], 1), vec![pdf("a.pdf", 1, 500)])
        .await
        .unwrap();
    let id = sent.document_id.clone();
    let code = |status: truc_domain::Status| status.code() as i32;

    let relay = LossyRelay::start(hub.address).await;
    let recipient = client_of(&hub, &[relay.address, hub.address], H41).await;
    relay.lose_answers();
    let moving = tokio::spawn({
        let (recipient, id) = (recipient.clone(), id.clone());
        async move {
            recipient
                .move_status(&id, None, truc_domain::Status::Received, "")
                .await
        }
    });
    eventually("the move was never recorded", || async {
        history(&operator, &id, H41).await.len() == 2
    })
    .await;
    relay.cut();
    let entry = moving
        .await
        .unwrap()
        .expect("the move recorded before its answer was lost");
    assert_eq!(entry.status.code(), code(truc_domain::Status::Received));
    assert_eq!(entry.actor, H41);
    assert_eq!(recipient.current_hub(), hub.address);

    // A batch the same way: each move the lost write made comes back as its
    // entry; a move the hub refused for itself stays refused.
    let relay = LossyRelay::start(hub.address).await;
    let recipient = client_of(&hub, &[relay.address, hub.address], H41).await;
    let moves = [
        truc_domain::Status::Assigned,
        truc_domain::Status::Processing,
        truc_domain::Status::Assigned,
    ]
    .map(|status| truc_domain::views::MoveRequest {
        document_id: id.clone(),
        recipient: String::new(),
        status,
        reason: String::new(),
    });
    relay.lose_answers();
    let moving = tokio::spawn({
        let recipient = recipient.clone();
        async move { recipient.move_statuses(moves.to_vec()).await }
    });
    eventually("the batch was never recorded", || async {
        history(&operator, &id, H41).await.len() == 4
    })
    .await;
    relay.cut();
    let results = moving.await.unwrap().unwrap();
    assert_eq!(recipient.current_hub(), hub.address);
    assert_eq!(
        results[0].as_ref().map(|entry| entry.status.code()).ok(),
        Some(code(truc_domain::Status::Assigned))
    );
    assert_eq!(
        results[1].as_ref().map(|entry| entry.status.code()).ok(),
        Some(code(truc_domain::Status::Processing))
    );
    assert_eq!(
        results[2].as_ref().map_err(tonic::Status::code).err(),
        Some(tonic::Code::FailedPrecondition),
        "assigned after processing is backward, however often it is asked"
    );
    assert_eq!(
        history(&operator, &id, H41).await,
        [
            truc_domain::Status::Arrived,
            truc_domain::Status::Received,
            truc_domain::Status::Assigned,
            truc_domain::Status::Processing,
        ]
        .map(code),
        "each move recorded once"
    );
}

#[tokio::test]
async fn the_same_envelope_sent_again_to_the_store_under_another_address_gets_the_original_acknowledgement(
) {
    let mut hub = TestHub::start().await;
    let credentials = hub.pki.agency_credentials(G22).unwrap();
    let prepared = Prepared::new(
        &draft(G22, &[H41], 1),
        vec![pdf("a.pdf", 1, 3_000)],
        &credentials,
    )
    .await
    .unwrap();
    let before = hub.address;
    let first = hub
        .client(G22)
        .await
        .send_prepared(prepared.clone())
        .await
        .unwrap();
    assert!(!first.duplicate);

    // The hub stops before its answer is read, and the store comes back
    // under another address: the client, given both, resends the very
    // envelope it signed.
    hub.restart_elsewhere().await;
    assert_ne!(hub.address, before);
    let client = client_of(&hub, &[before, hub.address], G22).await;
    let again = client.send_prepared(prepared.clone()).await.unwrap();
    assert_eq!(client.current_hub(), hub.address);
    assert!(again.duplicate);
    assert_eq!(again.document_id, first.document_id);
    assert_eq!(again.accepted_at_unix_ms, first.accepted_at_unix_ms);
    assert_eq!(again.recipients, first.recipients);

    // Stored once, with the signature of the first send.
    let operator = hub.operator().await;
    assert_eq!(operator.counts("", "").await.unwrap().total_sent, 1);
    let recipient = hub.client(H41).await;
    let (_acks, mut stream) = recipient.deliveries(8).await.unwrap();
    let delivery = loop {
        let message = tokio::time::timeout(PATIENCE, stream.next())
            .await
            .expect("a delivery within the bound")
            .expect("stream open")
            .unwrap();
        if let truc_domain::views::HubItem::Delivery(delivery) = message {
            break delivery;
        }
    };
    assert_eq!(delivery.document_id, first.document_id);
    assert_eq!(delivery.envelope, Some(prepared.envelope));
}

#[tokio::test]
async fn a_node_agent_goes_on_at_the_next_hub_and_writes_each_document_once() {
    let mut first = TestHub::start().await;
    let second = first.start_beside().await;
    let first_address = first.address;
    // One document both hubs hold, as two hubs of one store would: the
    // first delivers it, the second has no acknowledgement of it yet.
    let credentials = first.pki.agency_credentials(G22).unwrap();
    let both = Prepared::new(
        &draft(G22, &[H41], 1),
        vec![pdf("a.pdf", 1, 2_000)],
        &credentials,
    )
    .await
    .unwrap();
    first
        .client(G22)
        .await
        .send_prepared(both.clone())
        .await
        .unwrap();
    second
        .client(G22)
        .await
        .send_prepared(both.clone())
        .await
        .unwrap();

    let inbox = first.root.path().join("inbox-h41");
    let (events, mut receiver) = mpsc::channel(256);
    let mut config = first.node_config(H41, Some(inbox.clone()));
    config.hubs = HubAddresses::new([first.address, second.address]).unwrap();
    config.events = Some(events);
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let node = tokio::spawn(truc_node::run_node(config, async move {
        let _ = stopped.changed().await;
    }));
    let mut connected = Vec::new();
    let mut delivered: BTreeMap<String, usize> = BTreeMap::new();
    let mut record = |event: &NodeEvent| match event {
        NodeEvent::Connected { hub } => connected.push(*hub),
        NodeEvent::Delivered { document_id, .. } => {
            *delivered.entry(document_id.clone()).or_default() += 1
        }
        _ => {}
    };
    wait_for(&mut receiver, |event| {
        record(event);
        matches!(event, NodeEvent::Delivered { document_id, .. } if *document_id == both.document_id)
    })
    .await;

    // The first hub stops under the open stream; the node goes to the second.
    first.stop().await;
    wait_for(&mut receiver, |event| {
        record(event);
        matches!(event, NodeEvent::Connected { hub } if *hub == second.address)
    })
    .await;
    let after = second
        .client(G22)
        .await
        .send(&draft(G22, &[H41], 2), vec![pdf("b.pdf", 2, 2_000)])
        .await
        .unwrap();
    wait_for(&mut receiver, |event| {
        record(event);
        matches!(event, NodeEvent::Delivered { document_id, .. } if *document_id == after.document_id)
    })
    .await;

    // The second hub delivered the shared document again and the node
    // acknowledged it there without writing it again.
    let operator = second.operator().await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    for id in [&both.document_id, &after.document_id] {
        loop {
            let status = operator.get_status(id).await.unwrap();
            if status.recipients[0].current.code() == truc_domain::Status::Arrived.code() as i32 {
                assert_eq!(status.recipients[0].history.len(), 1, "arrived once");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id} never arrived at the second hub"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let nodes = operator.list_nodes().await.unwrap().nodes;
    let h41 = nodes.iter().find(|node| node.organ_id == H41).unwrap();
    assert!(h41.online, "the node's stream is on the second hub");
    let _ = stop.send(true);
    node.await.unwrap();
    while let Ok(event) = receiver.try_recv() {
        record(&event);
    }

    assert_eq!(connected.first(), Some(&first_address));
    assert_eq!(connected.last(), Some(&second.address));
    assert_eq!(
        delivered,
        BTreeMap::from([
            (both.document_id.clone(), 1),
            (after.document_id.clone(), 1)
        ]),
        "each document written once"
    );
    let mut expected = vec![
        truc_node::agent::inbox_name(&both.document_id),
        truc_node::agent::inbox_name(&after.document_id),
    ];
    expected.sort();
    assert_eq!(inbox_documents(&inbox), expected);
}

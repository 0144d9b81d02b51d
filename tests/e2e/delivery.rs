//! Delivery: fan-out to running nodes, redelivery of what was not
//! acknowledged, restarts with queued documents, and exactly-once inboxes.

use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use truc_node::NodeEvent;
use truc_proto::v1 as pb;
use truc_testkit::{draft, pdf, TestHub, AGENCIES};

use crate::{inbox_documents, wait_for};

const G22: &str = AGENCIES[0];
const G12: &str = AGENCIES[1];
const H41: &str = AGENCIES[2];
const G17: &str = AGENCIES[3];

#[tokio::test]
async fn fan_out_reaches_every_recipient_inbox_and_the_sender_hears_arrivals() {
    let hub = TestHub::start().await;
    let (events, mut receiver) = mpsc::channel(256);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut nodes = Vec::new();
    for agency in [G22, G12, H41, G17] {
        let mut config = hub.node_config(agency, Some(hub.root.path().join("inbox").join(agency)));
        config.events = Some(events.clone());
        let mut stopped = stopped.clone();
        nodes.push(tokio::spawn(truc_node::run_node(config, async move {
            let _ = stopped.changed().await;
        })));
    }
    let sender = hub.client(G22).await;
    let mut ids = Vec::new();
    for number in 1..=3 {
        let response = sender
            .send(
                &draft(G22, &[G12, H41, G17], number),
                vec![pdf("vb.pdf", number, 70_000)],
            )
            .await
            .unwrap();
        ids.push(response.document_id);
    }
    let mut delivered = 0;
    let mut arrival_notices = 0;
    wait_for(&mut receiver, |event| {
        match event {
            NodeEvent::Delivered { .. } => delivered += 1,
            NodeEvent::Notice(notice) if notice.entries.iter().any(|e| e.status.code() == 1) => {
                arrival_notices += 1
            }
            _ => {}
        }
        delivered == 9 && arrival_notices == 9
    })
    .await;
    for agency in [G12, H41, G17] {
        let inbox = hub.root.path().join("inbox").join(agency);
        let documents = inbox_documents(&inbox);
        assert_eq!(documents.len(), 3, "{agency}: {documents:?}");
        let folder = inbox.join(truc_node::agent::inbox_name(&ids[0]));
        assert_eq!(
            std::fs::read(folder.join("attachments").join("vb.pdf"))
                .unwrap()
                .len(),
            70_000
        );
        let header: serde_json::Value =
            serde_json::from_slice(&std::fs::read(folder.join("header.json")).unwrap()).unwrap();
        assert_eq!(header["document_id"], ids[0].as_str());
    }
    assert!(inbox_documents(&hub.root.path().join("inbox").join(G22)).is_empty());
    let status = sender.get_status(&ids[2]).await.unwrap();
    for recipient in &status.recipients {
        assert_eq!(
            recipient.current.code(),
            1,
            "{} arrived",
            recipient.recipient
        );
        assert_eq!(recipient.history[0].actor, recipient.recipient);
    }
    let _ = stop.send(true);
    for node in nodes {
        node.await.unwrap();
    }
}

/// Reads the next delivery from a node's stream.
async fn next_delivery(stream: &mut truc_node::Deliveries) -> truc_domain::views::Delivery {
    let message = tokio::time::timeout(std::time::Duration::from_secs(30), stream.next())
        .await
        .expect("a delivery within the bound")
        .expect("stream open")
        .expect("no error");
    match message {
        truc_domain::views::HubItem::Delivery(delivery) => *delivery,
        other => panic!("expected a delivery, got {other:?}"),
    }
}

/// Reads the next delivery from a stream of wire messages.
async fn next_wire_delivery(stream: &mut tonic::Streaming<pb::HubMessage>) -> pb::Delivery {
    let message = tokio::time::timeout(std::time::Duration::from_secs(30), stream.next())
        .await
        .expect("a delivery within the bound")
        .expect("stream open")
        .expect("no error");
    match message.kind {
        Some(pb::hub_message::Kind::Delivery(delivery)) => delivery,
        other => panic!("expected a delivery, got {other:?}"),
    }
}

#[tokio::test]
async fn unacknowledged_deliveries_come_again_after_reconnect_and_restart() {
    let mut hub = TestHub::start().await;
    let sender = hub.client(G22).await;
    let first = sender
        .send(&draft(G22, &[H41], 1), vec![pdf("a.pdf", 1, 100)])
        .await
        .unwrap();

    // Receive without acknowledging, then drop the stream.
    let recipient = hub.client(H41).await;
    let (acks, mut stream) = recipient.deliveries(8).await.unwrap();
    let delivery = next_delivery(&mut stream).await;
    assert_eq!(delivery.document_id, first.document_id);
    drop((acks, stream));

    // Same delivery again on a new stream; a second document queues behind it.
    let second = sender
        .send(&draft(G22, &[H41], 2), vec![pdf("b.pdf", 2, 100)])
        .await
        .unwrap();
    let (acks, mut stream) = recipient.deliveries(8).await.unwrap();
    let again = next_delivery(&mut stream).await;
    assert_eq!(again.document_id, first.document_id);
    assert_eq!(again.queue_seq, delivery.queue_seq);
    let next = next_delivery(&mut stream).await;
    assert_eq!(next.document_id, second.document_id);
    acks.ack(vec![again.queue_seq]).await.unwrap();
    // The acknowledgement is durable once the status shows it.
    loop {
        let status = sender.get_status(&first.document_id).await.unwrap();
        if status.recipients[0].current.code() == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    drop((acks, stream, recipient, sender));

    // After a restart only the unacknowledged second document is delivered.
    hub.restart().await;
    let recipient = hub.client(H41).await;
    let (_acks, mut stream) = recipient.deliveries(8).await.unwrap();
    let after_restart = next_delivery(&mut stream).await;
    assert_eq!(after_restart.document_id, second.document_id);
    let pending = tokio::time::timeout(std::time::Duration::from_millis(300), stream.next()).await;
    assert!(pending.is_err(), "nothing else is queued: {pending:?}");
}

/// A node may acknowledge and end its side of the stream in the same breath
/// (clients that close as soon as they are done do): the hub must record the
/// acknowledgement before it lets the stream go.
#[tokio::test]
async fn acknowledgements_followed_at_once_by_the_end_of_the_stream_are_recorded() {
    let hub = TestHub::start().await;
    let sender = hub.client(G22).await;
    let mut ids = Vec::new();
    for number in 1..=3 {
        let response = sender
            .send(&draft(G22, &[H41], number), vec![pdf("a.pdf", number, 100)])
            .await
            .unwrap();
        ids.push(response.document_id);
    }
    let recipient = hub.client(H41).await;
    let (acks, mut stream) = recipient.deliveries(8).await.unwrap();
    let mut seqs = Vec::new();
    for _ in &ids {
        seqs.push(next_delivery(&mut stream).await.queue_seq);
    }
    acks.ack(seqs).await.unwrap();
    drop(acks);
    // The hub ends its side once it has read the end of the node's.
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while stream.next().await.is_some() {}
    })
    .await
    .expect("the hub ends the stream");
    // Recorded without an answer on the stream: GetStatus shows it once durable.
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        for id in &ids {
            while sender.get_status(id).await.unwrap().recipients[0]
                .current
                .code()
                != 1
            {
                tokio::task::yield_now().await;
            }
        }
    })
    .await
    .expect("every acknowledged delivery arrived");
}

#[tokio::test]
async fn acknowledgements_waiting_together_beyond_the_limit_are_written_in_turn() {
    // Two messages of two each, read together, exceed a limit of three per write.
    let hub = TestHub::start_with(truc_domain::Limits {
        acks_per_message_max: 3,
        ..truc_domain::Limits::default()
    })
    .await;
    let sender = hub.client(G22).await;
    let mut ids = Vec::new();
    for number in 1..=4 {
        let response = sender
            .send(&draft(G22, &[H41], number), vec![pdf("a.pdf", number, 100)])
            .await
            .unwrap();
        ids.push(response.document_id);
    }
    let recipient = hub.client(H41).await;
    let (acks, mut stream) = recipient.deliveries_as_sent(8).await.unwrap();
    let mut seqs = Vec::new();
    for _ in &ids {
        seqs.push(next_wire_delivery(&mut stream).await.queue_seq);
    }
    acks.send(truc_node::ack_message(seqs[..2].to_vec()))
        .await
        .unwrap();
    acks.send(truc_node::ack_message(seqs[2..].to_vec()))
        .await
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        for id in &ids {
            while sender.get_status(id).await.unwrap().recipients[0]
                .current
                .code()
                != 1
            {
                tokio::task::yield_now().await;
            }
        }
    })
    .await
    .expect("every acknowledged delivery arrived");
    // The stream is still open and serving: a new document comes on it.
    let next = sender
        .send(&draft(G22, &[H41], 5), vec![pdf("a.pdf", 5, 100)])
        .await
        .unwrap();
    assert_eq!(
        next_wire_delivery(&mut stream).await.document_id,
        next.document_id
    );
    // One message over the limit ends the stream with the field named.
    acks.send(truc_node::ack_message(vec![1, 2, 3, 4]))
        .await
        .unwrap();
    let refused = loop {
        match stream.next().await {
            Some(Ok(_)) => continue,
            Some(Err(status)) => break status,
            None => panic!("the stream ended without saying why"),
        }
    };
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(refused.message().starts_with("queue_seqs"), "{refused}");
}

#[tokio::test]
async fn queued_documents_survive_restarts_and_reach_the_inbox_exactly_once() {
    let mut hub = TestHub::start().await;
    let sender = hub.client(G22).await;
    let mut ids = Vec::new();
    for number in 1..=20 {
        let response = sender
            .send(
                &draft(G22, &[G12, H41], number),
                vec![pdf("vb.pdf", number, 2_000)],
            )
            .await
            .unwrap();
        ids.push(response.document_id);
    }
    drop(sender);
    hub.restart().await;

    let inbox = hub.root.path().join("inbox-h41");
    let (events, mut receiver) = mpsc::channel(256);
    let mut config = hub.node_config(H41, Some(inbox.clone()));
    config.events = Some(events);
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let node = tokio::spawn(truc_node::run_node(config, async move {
        let _ = stopped.changed().await;
    }));
    let mut delivered = 0;
    wait_for(&mut receiver, |event| {
        if matches!(event, NodeEvent::Delivered { .. }) {
            delivered += 1;
        }
        delivered == 10
    })
    .await;
    // Restart mid-stream: the node reconnects by itself and finishes.
    hub.restart().await;
    wait_for(&mut receiver, |event| {
        if matches!(event, NodeEvent::Delivered { .. }) {
            delivered += 1;
        }
        delivered == 20
    })
    .await;
    let operator = hub.operator().await;
    for id in &ids {
        loop {
            let status = operator.get_status(id).await.unwrap();
            let h41 = status
                .recipients
                .iter()
                .find(|r| r.recipient == H41)
                .unwrap();
            if h41.current.code() == 1 {
                assert_eq!(h41.history.len(), 1, "arrived exactly once");
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    let _ = stop.send(true);
    node.await.unwrap();
    let mut names: Vec<String> = ids
        .iter()
        .map(|id| truc_node::agent::inbox_name(id))
        .collect();
    names.sort();
    assert_eq!(inbox_documents(&inbox), names);

    // Counters are exact: equal to a rebuild from the stored documents.
    drop(operator);
    hub.stop().await;
    let store = hub.stopped_store().await;
    let live = store.counter_entries().unwrap();
    assert_eq!(live, store.rebuild_counters().unwrap());
    let totals: (u64, u64) = live
        .values()
        .fold((0, 0), |acc, v| (acc.0 + v.0, acc.1 + v.1));
    assert_eq!(
        totals,
        (20, 20),
        "20 sent; 20 arrived at H41 (G12 never connected)"
    );
}

//! Recall, update and replace by the original sender: withdrawn at once where
//! not yet fetched, asked of the recipient where held, answered with 15 or 16;
//! chains of updates and replaces linked both ways.

use tokio_stream::StreamExt;
use tonic::Code;
use truc_domain::{BusinessType, Status};
use truc_node::Draft;
use truc_testkit::{draft, pdf, TestHub, AGENCIES};

const G22: &str = AGENCIES[0];
const G12: &str = AGENCIES[1];
const H41: &str = AGENCIES[2];
const G17: &str = AGENCIES[3];

/// Has `agency`'s node fetch and acknowledge `document_id`, and waits until
/// the arrival is on record.
pub async fn fetch(hub: &TestHub, agency: &str, document_id: &str) {
    let client = hub.client(agency).await;
    let (acks, mut stream) = client.deliveries(64).await.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let message = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| panic!("{document_id} was not delivered to {agency} within 30 s"))
            .unwrap()
            .unwrap();
        match message {
            truc_domain::views::HubItem::Delivery(delivery)
                if delivery.document_id == document_id =>
            {
                acks.ack(vec![delivery.queue_seq]).await.unwrap();
                break;
            }
            _ => {}
        }
    }
    fetch_done(hub, agency, document_id).await;
}

pub fn business(from: &str, to: &[&str], number: u32, kind: BusinessType, of: &str) -> Draft {
    Draft {
        business_type: kind,
        business_refs: vec![of.to_owned()],
        subject: format!("{kind:?} {of}"),
        ..draft(from, to, number)
    }
}

fn history(status: &truc_domain::views::DocumentStatus, recipient: &str) -> Vec<i32> {
    status
        .recipients
        .iter()
        .find(|r| r.recipient == recipient)
        .map(|r| r.history.iter().map(|e| e.status.code()).collect())
        .unwrap_or_default()
}

fn outcome<'a>(
    response: &'a truc_domain::views::SendReceipt,
    recipient: &str,
) -> &'a truc_domain::views::RecipientOutcome {
    response
        .recipients
        .iter()
        .find(|r| r.organ_id == recipient)
        .unwrap()
}

#[tokio::test]
async fn a_recall_withdraws_what_was_not_fetched_and_asks_who_holds_it() {
    let mut hub = TestHub::start().await;
    let sender = hub.client(G22).await;
    let original = sender
        .send(&draft(G22, &[H41, G12], 1), vec![pdf("a.pdf", 1, 10)])
        .await
        .unwrap()
        .document_id;
    fetch(&hub, H41, &original).await;

    let recall = sender
        .send(
            &business(G22, &[H41, G12], 2, BusinessType::Revoke, &original),
            Vec::new(),
        )
        .await
        .unwrap();
    assert!(outcome(&recall, G12).accepted);
    assert!(
        outcome(&recall, G12).reason.contains("withdrawn at once"),
        "{:?}",
        outcome(&recall, G12)
    );
    assert!(outcome(&recall, H41).reason.contains("asked to agree"));

    let status = sender.get_status(&original).await.unwrap();
    assert_eq!(history(&status, G12), vec![13, 15]);
    assert_eq!(history(&status, H41), vec![1, 13]);
    // Nothing is delivered to G12, neither the document nor the recall: its
    // node is only told, in case the document was on its way to it.
    let operator = hub.operator().await;
    let nodes = operator.list_nodes().await.unwrap();
    let g12 = nodes.nodes.iter().find(|n| n.organ_id == G12).unwrap();
    assert_eq!((g12.queued_documents, g12.queued_notices), (0, 1));
    assert!(g12.oldest_unacked_document_id.is_empty());
    assert_eq!(
        hub.client(G12)
            .await
            .get_status(&recall.document_id)
            .await
            .unwrap_err()
            .code(),
        Some(Code::PermissionDenied),
        "G12 never had the document, so the recall is not its business"
    );

    // The holder gets the recall and agrees; that is final.
    fetch(&hub, H41, &recall.document_id).await;
    let h41 = hub.client(H41).await;
    h41.move_status(&original, None, Status::RecallAgreed, "")
        .await
        .unwrap();
    let after = h41
        .move_status(&original, None, Status::Processing, "")
        .await
        .unwrap_err();
    assert_eq!(after.code(), Some(Code::FailedPrecondition));
    let status = sender.get_status(&original).await.unwrap();
    assert_eq!(history(&status, H41), vec![1, 13, 15]);
    assert_eq!(
        status.chain,
        vec![truc_domain::views::DocumentLink {
            earlier: original.clone(),
            later: recall.document_id.clone(),
            business_type: truc_domain::BusinessType::Revoke
        }]
    );

    // Counters: G12 received nothing; the live counters match a rebuild.
    let counts = operator.counts("", "").await.unwrap();
    let received = |code: &str| {
        counts
            .agencies
            .iter()
            .find(|a| a.organ_id == code)
            .map_or(0, |a| a.received)
    };
    assert_eq!((received(G12), received(H41)), (0, 2));
    hub.stop().await;
    let store = hub.stopped_store().await;
    assert_eq!(
        store.counter_entries().unwrap(),
        store.rebuild_counters().unwrap()
    );
}

#[tokio::test]
async fn a_refused_recall_needs_a_reason_and_the_delivery_goes_on() {
    let hub = TestHub::start().await;
    let sender = hub.client(G22).await;
    let original = sender
        .send(&draft(G22, &[H41], 1), vec![pdf("a.pdf", 1, 10)])
        .await
        .unwrap()
        .document_id;
    fetch(&hub, H41, &original).await;
    let h41 = hub.client(H41).await;
    h41.move_status(&original, None, Status::Received, "")
        .await
        .unwrap();
    // No recall waits: agreeing is refused.
    let early = h41
        .move_status(&original, None, Status::RecallAgreed, "")
        .await
        .unwrap_err();
    assert_eq!(early.code(), Some(Code::FailedPrecondition));
    sender
        .send(
            &business(G22, &[H41], 2, BusinessType::Revoke, &original),
            Vec::new(),
        )
        .await
        .unwrap();
    // While the request waits, only an answer may follow.
    let pending = h41
        .move_status(&original, None, Status::Processing, "")
        .await
        .unwrap_err();
    assert_eq!(pending.code(), Some(Code::FailedPrecondition));
    let no_reason = h41
        .move_status(&original, None, Status::RecallRefused, " ")
        .await
        .unwrap_err();
    assert_eq!(no_reason.code(), Some(Code::InvalidArgument));
    assert!(no_reason.to_string().contains("reason:"), "{no_reason}");
    let refused = h41
        .move_status(
            &original,
            None,
            Status::RecallRefused,
            "Đã ban hành thực hiện",
        )
        .await
        .unwrap();
    assert_eq!(refused.reason, "Đã ban hành thực hiện");
    // Back where it stood: received, so processing may follow but received may not.
    assert_eq!(
        h41.move_status(&original, None, Status::Received, "")
            .await
            .unwrap_err()
            .code(),
        Some(Code::FailedPrecondition)
    );
    h41.move_status(&original, None, Status::Processing, "")
        .await
        .unwrap();
    let status = sender.get_status(&original).await.unwrap();
    assert_eq!(history(&status, H41), vec![1, 3, 13, 16, 5]);
    assert_eq!(
        status.recipients[0].history[3].reason,
        "Đã ban hành thực hiện"
    );
    // The sender hears the refusal with its reason on its stream.
    let (_acks, mut stream) = sender.deliveries(64).await.unwrap();
    loop {
        if let truc_domain::views::HubItem::Notice(notice) = stream.next().await.unwrap().unwrap() {
            if let Some(entry) = notice.entries.iter().find(|e| e.status.code() == 16) {
                assert_eq!(entry.actor, H41);
                assert_eq!(entry.reason, "Đã ban hành thực hiện");
                break;
            }
        }
    }
}

#[tokio::test]
async fn only_the_original_sender_may_recall_update_or_replace() {
    let hub = TestHub::start().await;
    let sender = hub.client(G22).await;
    let original = sender
        .send(&draft(G22, &[H41], 1), vec![pdf("a.pdf", 1, 10)])
        .await
        .unwrap()
        .document_id;
    // Another agency, even a recipient, may not.
    for (who, kind) in [
        (H41, BusinessType::Revoke),
        (G12, BusinessType::Update),
        (G12, BusinessType::Replace),
    ] {
        let attachments = if kind == BusinessType::Revoke {
            Vec::new()
        } else {
            vec![pdf("b.pdf", 2, 10)]
        };
        let error = hub
            .client(who)
            .await
            .send(&business(who, &[G17], 9, kind, &original), attachments)
            .await
            .unwrap_err();
        assert_eq!(error.code(), Some(Code::PermissionDenied), "{who} {kind:?}");
        assert!(error.to_string().contains("business_refs[0]:"), "{error}");
    }
    // An id of the sender's that is not on the axis.
    let unknown = "000.00.00.G22,2020/01/01,404/VPCP-TTĐT";
    let error = sender
        .send(
            &business(G22, &[H41], 3, BusinessType::Revoke, unknown),
            Vec::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(Code::NotFound));
    assert!(error.to_string().contains("business_refs[0]:"), "{error}");
    // A recall to someone who never got the document is refused for that recipient.
    let recall = sender
        .send(
            &business(G22, &[H41, G17], 4, BusinessType::Revoke, &original),
            Vec::new(),
        )
        .await
        .unwrap();
    assert!(!outcome(&recall, G17).accepted);
    assert!(outcome(&recall, G17).reason.contains("not a recipient"));
    // A recipient may not record a request itself.
    let error = hub
        .client(H41)
        .await
        .move_status(&original, None, Status::RecallRequested, "")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(Code::InvalidArgument));
    assert!(
        error.to_string().starts_with("the hub refused: status:"),
        "{error}"
    );
    // The refused sends left nothing: the original has one request on record, the accepted recall's.
    let status = sender.get_status(&original).await.unwrap();
    assert_eq!(history(&status, H41), vec![13, 15]);
    assert_eq!(status.chain.len(), 1);
}

#[tokio::test]
async fn updates_and_replaces_carry_new_content_and_link_both_ways() {
    let hub = TestHub::start().await;
    let sender = hub.client(G22).await;
    let first = sender
        .send(&draft(G22, &[H41], 1), vec![pdf("v1.pdf", 1, 10)])
        .await
        .unwrap()
        .document_id;
    fetch(&hub, H41, &first).await;
    let update = sender
        .send(
            &business(G22, &[H41], 2, BusinessType::Update, &first),
            vec![pdf("v2.pdf", 2, 20)],
        )
        .await
        .unwrap();
    assert!(outcome(&update, H41).reason.contains("asked to agree"));
    // The update was not fetched yet when it is replaced: withdrawn at once.
    let replace = sender
        .send(
            &business(G22, &[H41], 3, BusinessType::Replace, &update.document_id),
            vec![pdf("v3.pdf", 3, 30)],
        )
        .await
        .unwrap();
    assert!(
        outcome(&replace, H41).reason.contains("withdrawn at once"),
        "{:?}",
        outcome(&replace, H41)
    );
    // The holder gets the replacement, with its new content; the update never reaches it.
    let h41 = hub.client(H41).await;
    let (acks, mut stream) = h41.deliveries(64).await.unwrap();
    let delivered = loop {
        if let truc_domain::views::HubItem::Delivery(delivery) =
            stream.next().await.unwrap().unwrap()
        {
            break delivery;
        }
    };
    assert_eq!(delivered.document_id, replace.document_id);
    assert_eq!(delivered.inline_attachments, vec![pdf_bytes(3, 30)]);
    drop(acks);
    assert_eq!(
        history(&sender.get_status(&update.document_id).await.unwrap(), H41),
        vec![13, 15]
    );
    assert_eq!(
        history(&sender.get_status(&first).await.unwrap(), H41),
        vec![1, 13]
    );

    // Every document of the chain shows the whole chain, earliest first.
    let expected = vec![
        truc_domain::views::DocumentLink {
            earlier: first.clone(),
            later: update.document_id.clone(),
            business_type: truc_domain::BusinessType::Update,
        },
        truc_domain::views::DocumentLink {
            earlier: update.document_id.clone(),
            later: replace.document_id.clone(),
            business_type: truc_domain::BusinessType::Replace,
        },
    ];
    for id in [&first, &update.document_id, &replace.document_id] {
        let status = sender.get_status(id).await.unwrap();
        assert_eq!(status.chain, expected, "{id}");
    }
    assert_eq!(
        sender
            .get_status(&replace.document_id)
            .await
            .unwrap()
            .business_type,
        truc_domain::BusinessType::Replace
    );
}

fn pdf_bytes(seed: u32, bytes: usize) -> Vec<u8> {
    (0..bytes)
        .map(|i| (i as u32).wrapping_mul(2654435761).wrapping_add(seed) as u8)
        .collect()
}

/// The recall race: a recipient whose node never fetched a document moves
/// it (the hub records "arrived" with the move), then agrees to its recall.
/// Its node, started afterwards, never writes the document into its inbox
/// and hears of the recall instead. A node that already holds a document
/// marks it recalled in its inbox once the recall is agreed.
#[tokio::test]
async fn a_recalled_document_never_reaches_the_inbox_and_one_held_is_marked() {
    use tokio::sync::mpsc;
    use truc_node::NodeEvent;

    let hub = TestHub::start().await;
    let sender = hub.client(G22).await;
    let h41 = hub.client(H41).await;
    let unseen = sender
        .send(&draft(G22, &[H41], 31), vec![pdf("a.pdf", 31, 10)])
        .await
        .unwrap()
        .document_id;
    h41.move_status(&unseen, None, Status::Received, "")
        .await
        .unwrap();
    let recall = sender
        .send(
            &business(G22, &[H41], 32, BusinessType::Revoke, &unseen),
            Vec::new(),
        )
        .await
        .unwrap();
    assert!(
        outcome(&recall, H41).reason.contains("asked to agree"),
        "{:?}",
        outcome(&recall, H41)
    );
    h41.move_status(&unseen, None, Status::RecallAgreed, "")
        .await
        .unwrap();
    let status = sender.get_status(&unseen).await.unwrap();
    assert_eq!(history(&status, H41), vec![1, 3, 13, 15]);

    let inbox = hub.root.path().join("inbox-h41");
    let (events, mut receiver) = mpsc::channel(64);
    let mut config = hub.node_config(H41, Some(inbox.clone()));
    config.events = Some(events);
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let node = tokio::spawn(truc_node::run_node(config, async move {
        let _ = stopped.changed().await;
    }));
    // The recall notice is queued after everything the node had waiting:
    // once it is heard, the document would have been written if it were
    // still queued.
    crate::wait_for(&mut receiver, |event| {
        matches!(event, NodeEvent::Recalled { document_id, marked: None, .. } if *document_id == unseen)
    })
    .await;
    let inbox_name = truc_node::agent::inbox_name;
    assert!(
        !inbox.join(inbox_name(&unseen)).exists(),
        "a document whose recall was agreed reached the inbox: {:?}",
        crate::inbox_documents(&inbox)
    );
    assert!(inbox.join(inbox_name(&recall.document_id)).is_dir());

    // A document the node holds is marked once its recall is agreed.
    let held = sender
        .send(&draft(G22, &[H41], 33), vec![pdf("b.pdf", 33, 10)])
        .await
        .unwrap()
        .document_id;
    crate::wait_for(
        &mut receiver,
        |event| matches!(event, NodeEvent::Delivered { document_id, .. } if *document_id == held),
    )
    .await;
    fetch_done(&hub, H41, &held).await;
    let second = sender
        .send(
            &business(G22, &[H41], 34, BusinessType::Revoke, &held),
            Vec::new(),
        )
        .await
        .unwrap();
    assert!(outcome(&second, H41).reason.contains("asked to agree"));
    h41.move_status(&held, None, Status::RecallAgreed, "")
        .await
        .unwrap();
    let mut marker = None;
    crate::wait_for(&mut receiver, |event| match event {
        NodeEvent::Recalled {
            document_id,
            marked,
            ..
        } if *document_id == held => {
            marker = marked.clone();
            true
        }
        _ => false,
    })
    .await;
    let marker = marker.expect("the inbox holds the document, so it is marked");
    assert_eq!(
        marker,
        inbox.join(truc_node::recalled_marker_name(&held)),
        "the mark lies beside the document's folder"
    );
    let marked: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&marker).unwrap()).unwrap();
    assert_eq!(marked["status"], 15);
    assert_eq!(marked["document_id"], held.as_str());
    assert!(inbox.join(inbox_name(&held)).is_dir(), "the document stays");
    assert!(!inbox
        .join(truc_node::recalled_marker_name(&unseen))
        .exists());
    let _ = stop.send(true);
    node.await.unwrap();
}

/// Waits until `agency`'s arrival of `document_id` is on record.
async fn fetch_done(hub: &TestHub, agency: &str, document_id: &str) {
    let operator = hub.operator().await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status = operator.get_status(document_id).await.unwrap();
        if history(&status, agency).contains(&1) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{agency}'s arrival of {document_id} was not recorded within 30 s"
        );
        tokio::task::yield_now().await;
    }
}

//! Status feedback: every legal and illegal move, who may move what, who may
//! read what, and notices back to the sender.

use tonic::Code;
use truc_domain::Status;
use truc_testkit::{draft, pdf, TestHub, AGENCIES};

const G22: &str = AGENCIES[0];
const G12: &str = AGENCIES[1];
const H41: &str = AGENCIES[2];
const G17: &str = AGENCIES[3];

/// Acknowledges every delivery waiting for `agency` (records "arrived").
async fn arrive_all(hub: &TestHub, agency: &str, expected: usize) {
    use tokio_stream::StreamExt;
    let client = hub.client(agency).await;
    let (acks, mut stream) = client.deliveries(64).await.unwrap();
    let mut seen = 0;
    let mut seqs = Vec::new();
    while seen < expected {
        let message = stream.next().await.unwrap().unwrap();
        if let truc_domain::views::HubItem::Delivery(delivery) = message {
            seen += 1;
            seqs.push(delivery.queue_seq);
        }
    }
    // All at once, in one message: one durable write on the hub.
    acks.ack(seqs).await.unwrap();
    let sender = hub.operator().await;
    // Wait until the arrivals are on record.
    loop {
        let counts = sender.counts("", "").await.unwrap();
        if counts
            .agencies
            .iter()
            .any(|a| a.organ_id == agency && a.received as usize >= expected)
        {
            break;
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn status_moves_follow_the_machine_and_name_the_current_state() {
    let hub = TestHub::start().await;
    let sender = hub.client(G22).await;
    let document = sender
        .send(&draft(G22, &[H41, G12], 1), vec![pdf("a.pdf", 1, 10)])
        .await
        .unwrap();
    let id = document.document_id.clone();
    let h41 = hub.client(H41).await;

    arrive_all(&hub, H41, 1).await;
    // Backward and repeated moves are refused with the current state named.
    let repeat = h41
        .move_status(&id, None, Status::Arrived, "")
        .await
        .unwrap_err();
    assert_eq!(repeat.code(), Some(Code::FailedPrecondition));
    assert!(repeat.to_string().contains("arrived"), "{repeat}");
    // Skipping is allowed.
    h41.move_status(&id, None, Status::Assigned, "")
        .await
        .unwrap();
    let back = h41
        .move_status(&id, None, Status::Received, "")
        .await
        .unwrap_err();
    assert_eq!(back.code(), Some(Code::FailedPrecondition));
    assert!(back.to_string().contains("assigned"), "{back}");
    h41.move_status(&id, None, Status::Processing, "")
        .await
        .unwrap();
    // A rejection without a reason names the field.
    let no_reason = h41
        .move_status(&id, None, Status::Rejected, " ")
        .await
        .unwrap_err();
    assert_eq!(no_reason.code(), Some(Code::InvalidArgument));
    assert!(no_reason.to_string().contains("reason"), "{no_reason}");
    h41.move_status(&id, None, Status::Completed, "")
        .await
        .unwrap();
    // Nothing follows a final state.
    for next in [Status::Rejected, Status::Processing, Status::Completed] {
        let after = h41.move_status(&id, None, next, "lý do").await.unwrap_err();
        assert_eq!(after.code(), Some(Code::FailedPrecondition), "{next:?}");
        assert!(after.to_string().contains("completed"), "{after}");
    }

    // Rejection with a reason is final too.
    arrive_all(&hub, G12, 1).await;
    let g12 = hub.client(G12).await;
    g12.move_status(&id, None, Status::Rejected, "Sai thẩm quyền")
        .await
        .unwrap();
    let after_reject = g12
        .move_status(&id, None, Status::Received, "")
        .await
        .unwrap_err();
    assert_eq!(after_reject.code(), Some(Code::FailedPrecondition));

    // The sender sees every move with times, actors and reasons.
    let status = sender.get_status(&id).await.unwrap();
    let h41_row = status
        .recipients
        .iter()
        .find(|r| r.recipient == H41)
        .unwrap();
    let codes: Vec<i32> = h41_row.history.iter().map(|e| e.status.code()).collect();
    assert_eq!(codes, vec![1, 4, 5, 6]);
    assert!(h41_row
        .history
        .iter()
        .all(|e| e.actor == H41 && e.at_unix_ms > 0));
    let g12_row = status
        .recipients
        .iter()
        .find(|r| r.recipient == G12)
        .unwrap();
    assert_eq!(g12_row.current.code(), 2);
    assert_eq!(g12_row.history.last().unwrap().reason, "Sai thẩm quyền");
}

#[tokio::test]
async fn a_first_move_on_a_queued_delivery_records_its_arrival_once() {
    use tokio_stream::StreamExt;
    let hub = TestHub::start().await;
    let sender = hub.client(G22).await;
    let first = sender
        .send(&draft(G22, &[H41], 1), vec![pdf("a.pdf", 1, 10)])
        .await
        .unwrap();
    let h41 = hub.client(H41).await;
    // The recipient knows the document before its node acknowledged it.
    let moved = h41
        .move_status(&first.document_id, None, Status::Received, "")
        .await
        .unwrap();
    assert_eq!(moved.status.code(), Status::Received.code() as i32);
    let history = |status: truc_domain::views::DocumentStatus| -> Vec<i32> {
        status.recipients[0]
            .history
            .iter()
            .map(|e| e.status.code())
            .collect()
    };
    let arrived_then_received = vec![
        Status::Arrived.code() as i32,
        Status::Received.code() as i32,
    ];
    assert_eq!(
        history(h41.get_status(&first.document_id).await.unwrap()),
        arrived_then_received
    );

    // The node still gets the document, and acknowledges it.
    let (acks, mut stream) = h41.deliveries(8).await.unwrap();
    let delivery = loop {
        if let truc_domain::views::HubItem::Delivery(d) = stream.next().await.unwrap().unwrap() {
            break d;
        }
    };
    assert_eq!(delivery.document_id, first.document_id);
    acks.ack(vec![delivery.queue_seq]).await.unwrap();
    let second = sender
        .send(&draft(G22, &[H41], 2), vec![pdf("b.pdf", 2, 10)])
        .await
        .unwrap();
    // Once the acknowledgement is written, the stream goes on with the second document.
    let next = loop {
        if let truc_domain::views::HubItem::Delivery(d) = stream.next().await.unwrap().unwrap() {
            break d;
        }
    };
    assert_eq!(next.document_id, second.document_id);
    // And a new stream starts with it: the first is no longer queued.
    drop((acks, stream));
    loop {
        let (acks, mut stream) = h41.deliveries(1).await.unwrap();
        let next = loop {
            if let truc_domain::views::HubItem::Delivery(d) = stream.next().await.unwrap().unwrap()
            {
                break d;
            }
        };
        if next.document_id == second.document_id {
            break;
        }
        // The acknowledgement was still being written when the stream opened.
        drop(acks);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // The acknowledgement added no second arrival, and counted none.
    assert_eq!(
        history(h41.get_status(&first.document_id).await.unwrap()),
        arrived_then_received
    );
    let counts = h41.counts("", "").await.unwrap();
    assert_eq!(counts.total_received, 1);
}

#[tokio::test]
async fn agencies_see_and_move_only_their_own_and_operators_only_read() {
    let hub = TestHub::start().await;
    let sender = hub.client(G22).await;
    let document = sender
        .send(&draft(G22, &[H41, G12], 1), vec![pdf("a.pdf", 1, 10)])
        .await
        .unwrap();
    let id = document.document_id.clone();
    arrive_all(&hub, H41, 1).await;

    // A stranger can neither read the status nor the attachment.
    let stranger = hub.client(G17).await;
    assert_eq!(
        stranger.get_status(&id).await.unwrap_err().code(),
        Some(Code::PermissionDenied)
    );
    assert_eq!(
        stranger
            .fetch_attachment_bytes(&id, 0)
            .await
            .unwrap_err()
            .code(),
        Some(Code::PermissionDenied)
    );
    // Nor move a delivery that is not its own, even by naming the recipient.
    let h41_delivery = stranger
        .move_status(&id, Some(H41), Status::Received, "")
        .await
        .unwrap_err();
    assert_eq!(h41_delivery.code(), Some(Code::PermissionDenied));
    let none = stranger
        .move_status(&id, None, Status::Received, "")
        .await
        .unwrap_err();
    assert_eq!(none.code(), Some(Code::NotFound));
    // A recipient sees only its own row; the sender sees all.
    let h41 = hub.client(H41).await;
    let own = h41.get_status(&id).await.unwrap();
    assert_eq!(own.recipients.len(), 1);
    assert_eq!(own.recipients[0].recipient, H41);
    assert_eq!(sender.get_status(&id).await.unwrap().recipients.len(), 2);
    // Operators read everything but may not move.
    let operator = hub.operator().await;
    assert_eq!(operator.get_status(&id).await.unwrap().recipients.len(), 2);
    assert_eq!(
        operator.fetch_attachment_bytes(&id, 0).await.unwrap().len(),
        10
    );
    let moved = operator
        .move_status(&id, Some(H41), Status::Received, "")
        .await
        .unwrap_err();
    assert_eq!(moved.code(), Some(Code::PermissionDenied));
    // Counts: an agency sees its own row only; operators see all.
    let own_counts = h41.counts("", "").await.unwrap();
    assert_eq!(own_counts.agencies.len(), 1);
    assert_eq!((own_counts.total_sent, own_counts.total_received), (0, 1));
    let all = operator.counts("", "").await.unwrap();
    assert_eq!((all.total_sent, all.total_received), (1, 1));
    // Unknown and ill-formed ids.
    assert_eq!(
        operator
            .get_status("000.00.00.G22,2020/01/01,1/X")
            .await
            .unwrap_err()
            .code(),
        Some(Code::NotFound)
    );
    assert_eq!(
        operator.get_status("bad id").await.unwrap_err().code(),
        Some(Code::InvalidArgument)
    );
}

#[tokio::test]
async fn certificates_from_another_ca_cannot_connect() {
    let hub = TestHub::start().await;
    let other = tempfile::tempdir().unwrap();
    let foreign = truc_pki::init_dev_pki(
        other.path(),
        &[(G22.to_string(), "Impostor".to_string())],
        &[],
        std::time::Duration::from_secs(3600),
    )
    .unwrap();
    // The client trusts the real hub but presents a foreign certificate.
    let result = async {
        let client = truc_node::AxisClient::connect(
            hub.address,
            &hub.pki.trust_roots().unwrap(),
            foreign.agency_credentials(G22).unwrap(),
        )
        .await?;
        client.get_status("000.00.00.G22,2020/01/01,1/X").await
    }
    .await;
    assert!(
        result.is_err(),
        "a foreign certificate must not get an answer"
    );
    assert_ne!(result.unwrap_err().code(), Some(Code::NotFound));
}

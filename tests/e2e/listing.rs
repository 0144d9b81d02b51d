//! The operator's view: documents by filter, and the directory with each
//! node's mode, online state, queue depth and oldest unacknowledged delivery;
//! agencies list only what is theirs.

use tonic::Code;
use truc_domain::Status;
use truc_testkit::{draft, pdf};

use crate::recall::fetch;
use crate::relays::{relay_hub, DISTRICT, RELAY};

const G22: &str = truc_testkit::AGENCIES[0];
const G12: &str = truc_testkit::AGENCIES[1];
const G17: &str = truc_testkit::AGENCIES[3];

fn ids(response: &truc_domain::views::DocumentList) -> Vec<String> {
    let mut ids: Vec<String> = response
        .documents
        .iter()
        .map(|d| d.document_id.clone())
        .collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test]
async fn operators_list_everything_by_filter_and_agencies_only_their_own() {
    let hub = relay_hub().await;
    let g22 = hub.client(G22).await;
    let g12 = hub.client(G12).await;
    let to_g12 = g22
        .send(&draft(G22, &[G12], 1), vec![pdf("a.pdf", 1, 10)])
        .await
        .unwrap()
        .document_id;
    let to_district = g22
        .send(&draft(G22, &[DISTRICT], 2), vec![pdf("b.pdf", 2, 10)])
        .await
        .unwrap()
        .document_id;
    let from_g12 = g12
        .send(&draft(G12, &[G17], 1), vec![pdf("c.pdf", 3, 10)])
        .await
        .unwrap()
        .document_id;
    fetch(&hub, G12, &to_g12).await;
    g12.move_status(&to_g12, None, Status::Received, "")
        .await
        .unwrap();

    let operator = hub.operator().await;
    let list = |request: truc_domain::views::DocumentFilter| {
        let operator = operator.clone();
        async move { operator.list_documents(&request).await }
    };
    let all = list(truc_domain::views::DocumentFilter::default())
        .await
        .unwrap();
    assert_eq!(
        ids(&all),
        sorted(vec![to_g12.clone(), to_district.clone(), from_g12.clone()])
    );
    assert!(!all.truncated);
    let by_sender = list(truc_domain::views::DocumentFilter {
        sender: G22.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        ids(&by_sender),
        sorted(vec![to_g12.clone(), to_district.clone()])
    );
    let received = list(truc_domain::views::DocumentFilter {
        status: Some(Status::Received.into()),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(ids(&received), vec![to_g12.clone()]);
    let queued = list(truc_domain::views::DocumentFilter {
        queued: true,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        ids(&queued),
        sorted(vec![to_district.clone(), from_g12.clone()])
    );
    let to_unit = list(truc_domain::views::DocumentFilter {
        recipient: DISTRICT.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(ids(&to_unit), vec![to_district.clone()]);
    let long_ago = list(truc_domain::views::DocumentFilter {
        to_date: "2020-01-01".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(long_ago.documents.is_empty());
    let one = list(truc_domain::views::DocumentFilter {
        limit: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!((one.documents.len(), one.truncated), (1, true));

    // The same list as an agency: only what it sent or receives.
    assert_eq!(
        ids(&g12
            .list_documents(&truc_domain::views::DocumentFilter::default())
            .await
            .unwrap()),
        sorted(vec![to_g12.clone(), from_g12.clone()])
    );
    // A filter cannot widen it: asking for another's documents gives none.
    assert!(g12
        .list_documents(&truc_domain::views::DocumentFilter {
            sender: G22.into(),
            recipient: DISTRICT.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .documents
        .is_empty());
    // A relay sees its units' documents.
    assert_eq!(
        ids(&hub
            .client(RELAY)
            .await
            .list_documents(&truc_domain::views::DocumentFilter::default())
            .await
            .unwrap()),
        vec![to_district.clone()]
    );
    // Bad filters name their field.
    let bad = list(truc_domain::views::DocumentFilter {
        sender: "G22".into(),
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(bad.code(), Some(Code::InvalidArgument));
    assert!(bad.to_string().contains("sender:"), "{bad}");
    let too_many = list(truc_domain::views::DocumentFilter {
        limit: 1_000_000,
        ..Default::default()
    })
    .await
    .unwrap_err();
    assert_eq!(too_many.code(), Some(Code::ResourceExhausted));
    assert!(too_many.to_string().contains("limit:"), "{too_many}");

    // The node list: operators only, with mode, queue and oldest waiting delivery.
    assert_eq!(
        g12.list_nodes().await.unwrap_err().code(),
        Some(Code::PermissionDenied)
    );
    let nodes = operator.list_nodes().await.unwrap().nodes;
    let node = |code: &str| nodes.iter().find(|n| n.organ_id == code).unwrap().clone();
    let relay = node(RELAY);
    assert!(relay.relay && relay.own_node && !relay.online);
    assert_eq!((relay.queued_documents, relay.queued_notices), (1, 0));
    assert_eq!(relay.queue_depth, 1);
    assert_eq!(relay.oldest_unacked_document_id, to_district);
    assert!(relay.oldest_unacked_accepted_at_unix_ms > 0);
    let district = node(DISTRICT);
    assert!(!district.own_node);
    assert_eq!(district.via, RELAY);
    // G12 fetched its document and was seen; its queue holds nothing.
    let g12_node = node(G12);
    assert!(g12_node.last_seen_unix_ms > 0);
    assert_eq!(g12_node.queue_depth, 0);
    // G22's queue holds the notices of G12's moves; no delivery waits for it.
    let g22_node = node(G22);
    assert_eq!(g22_node.queued_documents, 0);
    assert!(g22_node.queued_notices >= 1);
    assert_eq!(g22_node.queue_depth, g22_node.queued_notices);
    assert!(g22_node.oldest_unacked_document_id.is_empty());
}

#[tokio::test]
async fn a_connected_node_is_online() {
    let hub = relay_hub().await;
    let g17 = hub.client(G17).await;
    let (_acks, _stream) = g17.deliveries(8).await.unwrap();
    let operator = hub.operator().await;
    let online = async {
        loop {
            let nodes = operator.list_nodes().await.unwrap().nodes;
            if nodes.iter().any(|n| n.organ_id == G17 && n.online) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), online)
        .await
        .expect("G17's open stream never listed it online");
}

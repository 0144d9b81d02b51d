//! Agency keys of either algorithm: ECDSA P-256 agencies send through a real
//! hub and recipient nodes verify them, Ed25519 and P-256 agencies share one
//! CA, and a signature by any key but the connection's is refused.

use std::collections::HashMap;

use tokio::sync::mpsc;
use tonic::Code;
use truc_domain::Status;
use truc_node::compose::Prepared;
use truc_node::NodeEvent;
use truc_pki::KeyAlgorithm;
use truc_testkit::{draft, pdf, TestHub, TestHubOptions, AGENCIES};

use crate::{inbox_documents, wait_for};

const G22: &str = AGENCIES[0];
const G12: &str = AGENCIES[1];
const H41: &str = AGENCIES[2];

fn refusal(
    result: Result<truc_domain::views::SendReceipt, truc_node::ClientError>,
) -> tonic::Status {
    match result {
        Err(truc_node::ClientError::Refused(status)) => status,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Runs one node per agency with inboxes under the hub's root; the returned
/// sender stops them all.
fn start_nodes(
    hub: &TestHub,
    agencies: &[&str],
) -> (
    mpsc::Receiver<NodeEvent>,
    tokio::sync::watch::Sender<bool>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let (events, receiver) = mpsc::channel(256);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let nodes = agencies
        .iter()
        .map(|agency| {
            let mut config =
                hub.node_config(agency, Some(hub.root.path().join("inbox").join(agency)));
            config.events = Some(events.clone());
            let mut stopped = stopped.clone();
            tokio::spawn(truc_node::run_node(config, async move {
                let _ = stopped.changed().await;
            }))
        })
        .collect();
    (receiver, stop, nodes)
}

#[tokio::test]
async fn a_p256_pki_carries_signed_documents_from_sender_to_verified_inbox() {
    let hub = TestHub::start_with_options(TestHubOptions {
        key_algorithm: KeyAlgorithm::EcdsaP256Sha256,
        ..TestHubOptions::default()
    })
    .await;
    let g22 = hub.client(G22).await;
    assert_eq!(
        g22.credentials().key_algorithm().unwrap(),
        KeyAlgorithm::EcdsaP256Sha256
    );
    let (mut events, stop, nodes) = start_nodes(&hub, &[G12, H41]);

    let mut document = draft(G22, &[G12, H41], 1);
    document.sign_document = true;
    let response = g22
        .send(&document, vec![pdf("vanban.pdf", 1, 300_000)])
        .await
        .expect("a P-256 signature is accepted");
    assert_eq!(response.recipients.iter().filter(|r| r.accepted).count(), 2);
    assert_eq!(
        response.document_signature,
        truc_domain::views::SignatureState::Valid
    );

    // Both recipients verify the sender certificate, the ECDSA signature and
    // the attachment digest before they write and acknowledge.
    let mut delivered = HashMap::new();
    wait_for(&mut events, |event| {
        match event {
            NodeEvent::Delivered {
                document_id,
                recipient,
                document_signature,
                ..
            } => {
                assert_eq!(document_id, &response.document_id);
                assert_eq!(
                    *document_signature,
                    truc_domain::views::SignatureState::Valid
                );
                delivered.insert(recipient.clone(), document_id.clone());
            }
            NodeEvent::Refused { reason, .. } => panic!("a node refused: {reason}"),
            _ => {}
        }
        delivered.len() == 2
    })
    .await;
    for agency in [G12, H41] {
        let inbox = hub.root.path().join("inbox").join(agency);
        assert_eq!(inbox_documents(&inbox).len(), 1, "{agency}");
        let folder = inbox.join(truc_node::agent::inbox_name(&response.document_id));
        assert_eq!(
            std::fs::read(folder.join("attachments").join("vanban.pdf"))
                .unwrap()
                .len(),
            300_000
        );
    }
    let g12 = hub.client(G12).await;
    g12.move_status(&response.document_id, None, Status::Received, "")
        .await
        .expect("a P-256 recipient moves its delivery");

    // Two signatures of the same header differ (a fresh ECDSA nonce), and a
    // resend is still the same document.
    let again = g22
        .send(&document, vec![pdf("vanban.pdf", 1, 300_000)])
        .await
        .unwrap();
    assert!(again.duplicate);

    // Changed after signing, or signed by G12's P-256 key on G22's connection.
    let mut tampered = Prepared::new(
        &draft(G22, &[G12], 2),
        vec![pdf("a.pdf", 1, 10)],
        g22.credentials(),
    )
    .await
    .unwrap();
    let last = tampered.envelope.header.len() - 1;
    tampered.envelope.header[last] ^= 1;
    let foreign = Prepared::new(
        &draft(G22, &[G12], 3),
        vec![pdf("a.pdf", 1, 10)],
        g12.credentials(),
    )
    .await
    .unwrap();
    for (what, prepared) in [("tampered", tampered), ("G12's key", foreign)] {
        let status = refusal(g22.send_prepared(prepared).await);
        assert_eq!(status.code(), Code::Unauthenticated, "{what}");
        assert!(
            status.message().starts_with("envelope.signature"),
            "{what}: {}",
            status.message()
        );
    }

    // A document signature that names G22's certificate but was made with
    // G12's key is recorded as invalid, while the envelope itself is fine.
    let mut misattributed = Prepared::new(
        &draft(G22, &[G12], 4),
        vec![pdf("a.pdf", 1, 10)],
        g22.credentials(),
    )
    .await
    .unwrap();
    let digest: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, &{
        let truc_node::compose::AttachmentSource::Bytes(bytes) = pdf("a.pdf", 1, 10).source else {
            unreachable!()
        };
        bytes
    })
    .as_ref()
    .try_into()
    .unwrap();
    misattributed.envelope.document_signature = Some(truc_domain::views::DocumentSignature {
        signer_certificate: g22.credentials().certificate_der().to_vec(),
        signature: g12
            .credentials()
            .signing_key()
            .unwrap()
            .sign_document(&misattributed.document_id, &[digest])
            .unwrap(),
    });
    let response = g22.send_prepared(misattributed).await.unwrap();
    assert_eq!(
        response.document_signature,
        truc_domain::views::SignatureState::Invalid
    );

    let _ = stop.send(true);
    for node in nodes {
        node.await.unwrap();
    }
}

#[tokio::test]
async fn ed25519_and_p256_agencies_exchange_documents_under_one_ca() {
    // An Ed25519 CA and hub; G12 and H41 hold P-256 keys, G22 Ed25519.
    let hub = TestHub::start_with_options(TestHubOptions {
        agency_key_algorithms: vec![
            (G12.to_string(), KeyAlgorithm::EcdsaP256Sha256),
            (H41.to_string(), KeyAlgorithm::EcdsaP256Sha256),
        ],
        ..TestHubOptions::default()
    })
    .await;
    let g22 = hub.client(G22).await;
    let g12 = hub.client(G12).await;
    let h41 = hub.client(H41).await;
    assert_eq!(
        g22.credentials().key_algorithm().unwrap(),
        KeyAlgorithm::Ed25519
    );
    assert_eq!(
        g12.credentials().key_algorithm().unwrap(),
        KeyAlgorithm::EcdsaP256Sha256
    );
    let (mut events, stop, nodes) = start_nodes(&hub, &[G22, G12, H41]);

    let from_ed25519 = g22
        .send(&draft(G22, &[G12, H41], 1), vec![pdf("a.pdf", 1, 5000)])
        .await
        .expect("Ed25519 sender");
    let from_p256 = g12
        .send(&draft(G12, &[G22, H41], 1), vec![pdf("b.pdf", 2, 5000)])
        .await
        .expect("P-256 sender");

    // Each recipient verifies the other kind of signature too: four deliveries.
    let mut delivered = Vec::new();
    wait_for(&mut events, |event| {
        match event {
            NodeEvent::Delivered {
                document_id,
                recipient,
                ..
            } => delivered.push((recipient.clone(), document_id.clone())),
            NodeEvent::Refused { reason, .. } => panic!("a node refused: {reason}"),
            _ => {}
        }
        delivered.len() == 4
    })
    .await;
    delivered.sort();
    let mut expected = vec![
        (G12.to_string(), from_ed25519.document_id.clone()),
        (H41.to_string(), from_ed25519.document_id.clone()),
        (G22.to_string(), from_p256.document_id.clone()),
        (H41.to_string(), from_p256.document_id.clone()),
    ];
    expected.sort();
    assert_eq!(delivered, expected);
    h41.move_status(&from_p256.document_id, None, Status::Completed, "")
        .await
        .expect("a move straight to completed after arrival");
    let status = g12.get_status(&from_p256.document_id).await.unwrap();
    let h41_status = status
        .recipients
        .iter()
        .find(|recipient| recipient.recipient == H41)
        .unwrap();
    assert_eq!(h41_status.current.code(), Status::Completed.code() as i32);

    // On G12's connection, neither H41's P-256 key nor G22's Ed25519 key will do.
    for (signer, number) in [(&h41, 2), (&g22, 3)] {
        let prepared = Prepared::new(
            &draft(G12, &[H41], number),
            vec![pdf("a.pdf", 1, 10)],
            signer.credentials(),
        )
        .await
        .unwrap();
        let status = refusal(g12.send_prepared(prepared).await);
        assert_eq!(status.code(), Code::Unauthenticated);
        assert!(
            status.message().starts_with("envelope.signature"),
            "{}",
            status.message()
        );
    }

    let _ = stop.send(true);
    for node in nodes {
        node.await.unwrap();
    }
}

//! Sending: acceptance, refusals with the right code and field, duplicates,
//! limits, and that refusals write nothing.

use tonic::Code;
use truc_domain::Limits;
use truc_node::compose::Prepared;
use truc_testkit::{draft, pdf, TestHub, AGENCIES, UNREGISTERED};

const G22: &str = AGENCIES[0];
const G12: &str = AGENCIES[1];
const H41: &str = AGENCIES[2];
const G17: &str = AGENCIES[3];

fn assert_refused(
    result: Result<truc_domain::views::SendReceipt, truc_node::ClientError>,
    code: Code,
    field: &str,
) {
    match result {
        Ok(response) => panic!("expected {code:?} naming {field}, got {response:?}"),
        Err(truc_node::ClientError::Refused(status)) => {
            assert_eq!(status.code(), code, "{}", status.message());
            assert!(
                status.message().starts_with(field),
                "message {:?} should name {field}",
                status.message()
            );
        }
        Err(other) => panic!("expected a refusal, got {other}"),
    }
}

#[tokio::test]
async fn accepts_many_recipients_and_refuses_unknown_ones_one_by_one() {
    let hub = TestHub::start().await;
    let client = hub.client(G22).await;
    let mut document = draft(G22, &[G12, H41, UNREGISTERED, "000.00.00.X1", G17], 1);
    document.sign_document = true;
    let response = client
        .send(
            &document,
            vec![pdf("vanban.pdf", 1, 300_000), pdf("phuluc.pdf", 2, 10)],
        )
        .await
        .expect("send accepted");
    assert_eq!(response.document_id, document.document_id());
    let accepted: Vec<_> = response
        .recipients
        .iter()
        .filter(|r| r.accepted)
        .map(|r| r.organ_id.as_str())
        .collect();
    assert_eq!(accepted, vec![G12, H41, G17]);
    let refused: Vec<_> = response.recipients.iter().filter(|r| !r.accepted).collect();
    assert_eq!(refused.len(), 2);
    assert!(
        refused[0].reason.contains("not registered"),
        "{}",
        refused[0].reason
    );
    assert!(
        refused[1].reason.contains("ill-formed"),
        "{}",
        refused[1].reason
    );
    assert_eq!(
        response.document_signature,
        truc_domain::views::SignatureState::Valid
    );
    // The attachment comes back byte for byte.
    let recipient = hub.client(H41).await;
    let bytes = recipient
        .fetch_attachment_bytes(&response.document_id, 0)
        .await
        .unwrap();
    let truc_node::compose::AttachmentSource::Bytes(expected) =
        pdf("vanban.pdf", 1, 300_000).source
    else {
        unreachable!()
    };
    assert_eq!(bytes, expected.to_vec());
}

#[tokio::test]
async fn duplicate_sends_return_the_original_and_conflicts_name_it() {
    let hub = TestHub::start().await;
    let client = hub.client(G22).await;
    let document = draft(G22, &[G12, H41], 7);
    let first = client
        .send(&document, vec![pdf("a.pdf", 1, 1000)])
        .await
        .unwrap();
    assert!(!first.duplicate);
    let again = client
        .send(&document, vec![pdf("a.pdf", 1, 1000)])
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.accepted_at_unix_ms, first.accepted_at_unix_ms);
    assert_eq!(again.recipients, first.recipients);

    let mut changed = document.clone();
    changed.subject = "Nội dung khác".into();
    let result = client.send(&changed, vec![pdf("a.pdf", 1, 1000)]).await;
    assert_refused(result, Code::AlreadyExists, "document_id");

    // Only one delivery per recipient exists.
    let status = client.get_status(&first.document_id).await.unwrap();
    assert_eq!(status.recipients.len(), 2);
    assert_eq!(status.subject, document.subject);
}

#[tokio::test]
async fn spoofed_sender_tampering_and_bad_signatures_are_refused_and_write_nothing() {
    let hub = TestHub::start().await;
    let h41 = hub.client(H41).await;

    // H41's certificate, but the header claims the Government Office.
    let spoofed = draft(G22, &[G12], 1);
    assert_refused(
        h41.send(&spoofed, vec![pdf("a.pdf", 1, 10)]).await,
        Code::PermissionDenied,
        "from.organ_id",
    );

    // A header changed after signing.
    let mut prepared = Prepared::new(
        &draft(H41, &[G12], 2),
        vec![pdf("a.pdf", 1, 10)],
        h41.credentials(),
    )
    .await
    .unwrap();
    let last = prepared.envelope.header.len() - 1;
    prepared.envelope.header[last] ^= 1;
    assert_refused(
        h41.send_prepared(prepared).await,
        Code::Unauthenticated,
        "envelope.signature",
    );

    // No signature at all.
    let mut prepared = Prepared::new(
        &draft(H41, &[G12], 3),
        vec![pdf("a.pdf", 1, 10)],
        h41.credentials(),
    )
    .await
    .unwrap();
    prepared.envelope.signature.clear();
    assert_refused(
        h41.send_prepared(prepared).await,
        Code::Unauthenticated,
        "envelope.signature",
    );

    // Signed with another agency's key.
    let g12 = hub.client(G12).await;
    let foreign = Prepared::new(
        &draft(H41, &[G17], 4),
        vec![pdf("a.pdf", 1, 10)],
        g12.credentials(),
    )
    .await
    .unwrap();
    assert_refused(
        h41.send_prepared(foreign).await,
        Code::Unauthenticated,
        "envelope.signature",
    );

    // An attachment whose bytes do not match the signed digest.
    let mut prepared = Prepared::new(
        &draft(H41, &[G12], 5),
        vec![pdf("a.pdf", 1, 5000)],
        h41.credentials(),
    )
    .await
    .unwrap();
    prepared.attachments = vec![pdf("a.pdf", 9, 5000)];
    assert_refused(
        h41.send_prepared(prepared).await,
        Code::InvalidArgument,
        "attachments[0].sha256",
    );

    // Fewer bytes than declared.
    let mut prepared = Prepared::new(
        &draft(H41, &[G12], 6),
        vec![pdf("a.pdf", 1, 5000)],
        h41.credentials(),
    )
    .await
    .unwrap();
    prepared.attachments = vec![pdf("a.pdf", 1, 4000)];
    assert_refused(
        h41.send_prepared(prepared).await,
        Code::InvalidArgument,
        "attachments[0].size_bytes",
    );

    // Operators read; they do not send.
    let operator = hub.operator().await;
    assert_refused(
        operator
            .send(&draft(G22, &[G12], 8), vec![pdf("a.pdf", 1, 10)])
            .await,
        Code::PermissionDenied,
        "certificate",
    );

    // Nothing of the refused sends was stored.
    for number in 1..=8 {
        for sender in [G22, H41] {
            let id = draft(sender, &[], number).document_id();
            let status = hub.operator().await.get_status(&id).await;
            assert_eq!(status.unwrap_err().code(), Some(Code::NotFound), "{id}");
        }
    }
    let mut hub = hub;
    hub.stop().await;
    let store = hub.stopped_store().await;
    assert!(store.counter_entries().unwrap().is_empty());
}

#[tokio::test]
async fn malformed_headers_name_their_field() {
    let hub = TestHub::start().await;
    let client = hub.client(G22).await;
    type Mutate = fn(&mut truc_node::Draft);
    let cases: Vec<(Mutate, Code, &str)> = vec![
        (|d| d.to = vec![], Code::InvalidArgument, "to"),
        (
            |d| d.to = vec![G12.into(), G12.into()],
            Code::InvalidArgument,
            "to[1].organ_id",
        ),
        (
            |d| d.to = vec![G22.into()],
            Code::InvalidArgument,
            "to[0].organ_id",
        ),
        (
            |d| d.to = vec!["nonsense".into()],
            Code::InvalidArgument,
            "to",
        ),
        (
            |d| d.date = "2099-01-01".into(),
            Code::InvalidArgument,
            "promulgation.date",
        ),
        (
            |d| d.date = "20-01-01".into(),
            Code::InvalidArgument,
            "promulgation.date",
        ),
        (
            |d| d.subject = String::new(),
            Code::InvalidArgument,
            "subject",
        ),
        (|d| d.number = String::new(), Code::InvalidArgument, "code"),
        (
            |d| d.due_date = "1999-01-01".into(),
            Code::InvalidArgument,
            "due_date",
        ),
    ];
    for (mutate, code, field) in cases {
        let mut document = draft(G22, &[G12, H41], 11);
        mutate(&mut document);
        assert_refused(
            client.send(&document, vec![pdf("a.pdf", 1, 10)]).await,
            code,
            field,
        );
    }
    let no_attachment = client.send(&draft(G22, &[G12], 12), vec![]).await;
    assert_refused(no_attachment, Code::InvalidArgument, "attachments");
}

#[tokio::test]
async fn size_limits_answer_resource_exhausted() {
    let limits = Limits {
        document_bytes_max: 200_000,
        ..Limits::default()
    };
    let hub = TestHub::start_with(limits).await;
    let client = hub.client(G22).await;
    let result = client
        .send(
            &draft(G22, &[G12], 1),
            vec![pdf("big.pdf", 1, 150_000), pdf("more.pdf", 2, 60_000)],
        )
        .await;
    assert_refused(result, Code::ResourceExhausted, "attachments[1].size_bytes");
    // Just under the limit is fine.
    client
        .send(
            &draft(G22, &[G12], 2),
            vec![pdf("big.pdf", 1, 150_000), pdf("more.pdf", 2, 50_000)],
        )
        .await
        .expect("a document at the limit is accepted");
}

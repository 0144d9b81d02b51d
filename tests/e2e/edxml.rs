//! Agencies whose document systems are only folders: agency A's system
//! drops an edXML package into its outbox; agency B's inbox receives an
//! edXML package that parses back to the same fields; B's system drops a
//! status (edXML, then the JSON form) and A's inbox receives each as an
//! edXML status message. Refusals, by the node or by the hub, land in
//! `failed/` naming the element.

use std::path::{Path, PathBuf};
use std::time::Duration;

use truc_edxml::{Message, Package};
use truc_node::agent::inbox_name;
use truc_testkit::{TestHub, AGENCIES, UNREGISTERED};

const G22: &str = AGENCIES[0];
const G12: &str = AGENCIES[1];
const H41: &str = AGENCIES[2];

/// Drops an entry the way the outbox asks: written under a hidden name, then renamed.
fn drop_file(outbox: &Path, name: &str, bytes: &[u8]) {
    let hidden = outbox.join(format!(".{name}.part"));
    std::fs::write(&hidden, bytes).unwrap();
    std::fs::rename(hidden, outbox.join(name)).unwrap();
}

/// Polls until a file of `folder` satisfies `accept`, or fails after 30 s.
async fn wait_for_file(folder: &Path, accept: impl Fn(&str) -> bool) -> PathBuf {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(entries) = std::fs::read_dir(folder) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') && accept(&name) {
                    return entry.path();
                }
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing appeared in {} within 30 s",
            folder.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn read_message(path: &Path) -> Message {
    let bytes = std::fs::read(path).unwrap();
    truc_edxml::parse_message(
        &bytes,
        &truc_edxml::EdxmlLimits::default(),
        &truc_edxml::InlineOnly,
    )
    .unwrap()
    .0
}

fn today_slashed() -> String {
    truc_testkit::draft(G22, &[H41], 1).date.replace('-', "/")
}

/// A package as an agency's system writes it, dated today.
fn package(number: &str, to: &[&str]) -> Package {
    let organization = |code: &str, name: &str| truc_edxml::Organization {
        organ_id: code.into(),
        organ_name: name.into(),
        organization_in_charge: name.into(),
        organ_add: "Hà Nội".into(),
        email: "vanthu@example.gov.vn".into(),
        telephone: "024 3825 8261".into(),
        fax: "024 3825 8262".into(),
        website: "https://example.gov.vn".into(),
    };
    let mut package = Package {
        header: truc_edxml::MessageHeader {
            from: organization(G22, "Văn phòng Chính phủ"),
            to: to
                .iter()
                .map(|code| organization(code, "Đơn vị nhận"))
                .collect(),
            code: truc_edxml::Code {
                number: number.into(),
                notation: "VPCP-TTĐT".into(),
            },
            promulgation: truc_edxml::PromulgationInfo {
                place: "Hà Nội".into(),
                date: today_slashed(),
            },
            document_type: truc_edxml::DocumentType {
                type_code: 18,
                type_detail: "0".into(),
                type_name: "Công văn".into(),
            },
            subject: "V/v kết nối hệ thống quản lý văn bản với Trục".into(),
            content: "Nội dung tóm tắt của công văn.".into(),
            signer_info: Some(truc_edxml::SignerInfo {
                competence: "KT. BỘ TRƯỞNG, CHỦ NHIỆM".into(),
                position: "Phó Chủ nhiệm".into(),
                full_name: "Nguyễn Văn An".into(),
            }),
            to_places: vec!["Như trên".into()],
            other_info: truc_edxml::OtherInfo {
                priority: 2,
                page_amount: 4,
                appendixes: vec!["Phụ lục".into()],
                sphere_of_promulgation: "Liên thông văn bản quốc gia".into(),
                ..truc_edxml::OtherInfo::default()
            },
            steering_type: 1,
            ..truc_edxml::MessageHeader::default()
        },
        trace_headers: vec![truc_edxml::TraceHeader {
            organ_id: G22.into(),
            timestamp: format!("{} 08:30:00", today_slashed()),
        }],
        business: truc_edxml::Business {
            doc_reason: "Văn bản điện tử mới".into(),
            paper: "0".into(),
            staff_info: Some(truc_edxml::StaffInfo {
                department: "Văn thư".into(),
                staff: "Trần Thị Bình".into(),
                ..truc_edxml::StaffInfo::default()
            }),
            ..truc_edxml::Business::default()
        },
        signature: None,
        attachments: vec![
            truc_edxml::Attachment {
                content_id: "209".into(),
                name: "cong-van.pdf".into(),
                description: "Công văn".into(),
                content_type: "application/pdf".into(),
                bytes: (0..90_000u32).map(|i| (i * 7 % 251) as u8).collect(),
            },
            truc_edxml::Attachment {
                content_id: "210".into(),
                name: "phu-luc.docx".into(),
                description: "Phụ lục".into(),
                content_type: "application/msword".into(),
                bytes: b"phu luc".to_vec(),
            },
        ],
    };
    package.header.document_id = package.derived_document_id();
    package
}

struct Agency {
    inbox: PathBuf,
    outbox: PathBuf,
}

fn start_node(
    hub: &TestHub,
    code: &str,
    stopped: &tokio::sync::watch::Receiver<bool>,
) -> (Agency, tokio::task::JoinHandle<()>) {
    let root = hub.root.path().join(code);
    let agency = Agency {
        inbox: root.join("inbox"),
        outbox: root.join("outbox"),
    };
    std::fs::create_dir_all(&agency.inbox).unwrap();
    std::fs::create_dir_all(&agency.outbox).unwrap();
    let mut config = hub.node_config(code, Some(agency.inbox.clone()));
    config.edxml = true;
    let mut outbox = truc_node::OutboxConfig::new(agency.outbox.clone());
    outbox.scan_interval = Duration::from_millis(50);
    config.outbox = Some(outbox);
    let mut stopped = stopped.clone();
    let node = tokio::spawn(truc_node::run_node(config, async move {
        let _ = stopped.changed().await;
    }));
    (agency, node)
}

#[tokio::test]
async fn a_document_system_that_is_only_folders_sends_receives_and_hears_back_in_edxml() {
    let hub = TestHub::start().await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (a, a_node) = start_node(&hub, G22, &stopped);
    let (b, b_node) = start_node(&hub, H41, &stopped);

    // A's system drops a package; the node sends it and writes the receipt.
    let sent = package("7816", &[H41, G12]);
    let document_id = sent.derived_document_id();
    drop_file(
        &a.outbox,
        "cong-van-7816.edxml",
        &truc_edxml::write_package(&sent).unwrap(),
    );
    let receipt = wait_for_file(&a.outbox.join("sent"), |name| {
        name == "cong-van-7816.edxml.receipt.json"
    })
    .await;
    let receipt = json(&receipt);
    assert_eq!(receipt["document_id"], document_id.as_str());
    assert_eq!(receipt["duplicate"], false);
    assert_eq!(receipt["recipients"][0]["organ_id"], H41);
    assert_eq!(receipt["recipients"][0]["accepted"], true);
    assert!(a.outbox.join("sent").join("cong-van-7816.edxml").is_file());
    assert!(!a.outbox.join("cong-van-7816.edxml").exists());

    // B's inbox holds the document as today's folder and as an edXML package
    // that reads back field for field, including what the envelope does not carry.
    let package_path = truc_node::edxml_inbox::package_path(&b.inbox, &document_id);
    wait_for_file(&b.inbox, |name| {
        name.ends_with(".edxml") && !name.contains("__")
    })
    .await;
    assert!(b
        .inbox
        .join(inbox_name(&document_id))
        .join("header.json")
        .is_file());
    match read_message(&package_path) {
        Message::Document(received) => assert_eq!(*received, sent),
        other => panic!("not a document: {other:?}"),
    }
    let checked = truc_edxml::read_edxml(
        &std::fs::read(&package_path).unwrap(),
        &truc_edxml::CheckContext::new(
            truc_domain::DocumentDate::parse_iso(&today_slashed().replace('/', "-")).unwrap(),
            None,
        ),
    );
    assert!(
        checked.is_ok(),
        "the received package passes the checks: {checked:?}"
    );

    // A's inbox hears B's arrival (01), written by B's node on acknowledgement.
    let arrival = wait_for_file(&a.inbox, |name| name.contains(&format!("__{H41}__01__"))).await;
    match read_message(&arrival) {
        Message::Status(status) => {
            assert_eq!(status.status_code, "01");
            assert_eq!(status.response_for.document_id, document_id);
            assert_eq!(status.from.organ_id, H41);
        }
        other => panic!("not a status: {other:?}"),
    }

    // B's system reports "received" (03) as an edXML status message.
    let received = truc_edxml::StatusMessage {
        response_for: truc_edxml::envelope::response_for(&document_id),
        from: truc_edxml::Organization {
            organ_id: H41.into(),
            organ_name: "UBND tỉnh Nghệ An".into(),
            ..truc_edxml::Organization::default()
        },
        status_code: "03".into(),
        description: "Văn thư đã tiếp nhận".into(),
        timestamp: format!("{} 09:00:00", today_slashed()),
        staff_info: None,
    };
    drop_file(
        &b.outbox,
        "trang-thai-03.edxml",
        &truc_edxml::write_status(&received).unwrap(),
    );
    let moved = json(
        &wait_for_file(&b.outbox.join("sent"), |name| {
            name == "trang-thai-03.edxml.receipt.json"
        })
        .await,
    );
    assert_eq!(moved["status"], "03");
    assert_eq!(moved["actor"], H41);
    let heard = wait_for_file(&a.inbox, |name| name.contains(&format!("__{H41}__03__"))).await;
    match read_message(&heard) {
        Message::Status(status) => {
            assert_eq!(status.status_code, "03");
            assert_eq!(status.description, "Văn thư đã tiếp nhận");
            assert_eq!(status.response_for.document_id, document_id);
            assert_eq!(status.response_for.code, "7816/VPCP-TTĐT");
        }
        other => panic!("not a status: {other:?}"),
    }

    // The same status dropped again is answered with the entry already recorded.
    drop_file(
        &b.outbox,
        "trang-thai-03-lan-2.edxml",
        &truc_edxml::write_status(&received).unwrap(),
    );
    let again = json(
        &wait_for_file(&b.outbox.join("sent"), |name| {
            name == "trang-thai-03-lan-2.edxml.receipt.json"
        })
        .await,
    );
    assert_eq!(again["already_recorded"], true);
    assert_eq!(again["at_unix_ms"], moved["at_unix_ms"]);

    // Then a rejection in the JSON form, with its reason.
    drop_file(
        &b.outbox,
        "tu-choi.json",
        serde_json::json!({
            "document_id": document_id,
            "status": "rejected",
            "description": "Sai thẩm quyền ban hành",
        })
        .to_string()
        .as_bytes(),
    );
    wait_for_file(&b.outbox.join("sent"), |name| {
        name == "tu-choi.json.receipt.json"
    })
    .await;
    let rejected = wait_for_file(&a.inbox, |name| name.contains(&format!("__{H41}__02__"))).await;
    match read_message(&rejected) {
        Message::Status(status) => assert_eq!(status.description, "Sai thẩm quyền ban hành"),
        other => panic!("not a status: {other:?}"),
    }

    // A move the status machine refuses lands in failed/, naming the element.
    drop_file(
        &b.outbox,
        "hoan-thanh.json",
        serde_json::json!({"document_id": document_id, "status": "completed"})
            .to_string()
            .as_bytes(),
    );
    let refusal = json(
        &wait_for_file(&b.outbox.join("failed"), |name| {
            name == "hoan-thanh.json.refusal.json"
        })
        .await,
    );
    assert_eq!(refusal["refused_by"], "hub");
    assert_eq!(refusal["code"], "FailedPrecondition");
    assert_eq!(
        refusal["problems"][0]["element"],
        "MessageHeader/StatusCode"
    );
    assert!(!refusal["problems"][0]["reason_vi"]
        .as_str()
        .unwrap()
        .is_empty());
    assert!(b.outbox.join("failed").join("hoan-thanh.json").is_file());

    let _ = stop.send(true);
    a_node.await.unwrap();
    b_node.await.unwrap();
}

#[tokio::test]
async fn refusals_by_the_node_and_by_the_hub_name_the_element() {
    let hub = TestHub::start().await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (a, a_node) = start_node(&hub, G22, &stopped);

    // Checked before sending: a wrong notation and another agency as sender.
    let mut wrong = package("15", &[H41]);
    wrong.header.code.notation = "VPCP TTĐT".into();
    wrong.header.from.organ_id = G12.into();
    wrong.header.document_id = wrong.derived_document_id();
    drop_file(
        &a.outbox,
        "sai.edxml",
        &truc_edxml::write_package(&wrong).unwrap(),
    );
    let refusal = json(
        &wait_for_file(&a.outbox.join("failed"), |name| {
            name == "sai.edxml.refusal.json"
        })
        .await,
    );
    assert_eq!(refusal["refused_by"], "node");
    let elements: Vec<&str> = refusal["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|problem| problem["element"].as_str().unwrap())
        .collect();
    assert!(
        elements.contains(&"MessageHeader/Code/CodeNotation"),
        "{elements:?}"
    );
    assert!(
        elements.contains(&"MessageHeader/From/OrganId"),
        "{elements:?}"
    );

    // The hub's own refusal: a recipient it does not know is refused by name in
    // the receipt, the others go on.
    let partly = package("16", &[H41, UNREGISTERED]);
    drop_file(
        &a.outbox,
        "mot-phan.edxml",
        &truc_edxml::write_package(&partly).unwrap(),
    );
    let receipt = json(
        &wait_for_file(&a.outbox.join("sent"), |name| {
            name == "mot-phan.edxml.receipt.json"
        })
        .await,
    );
    let refused = receipt["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|recipient| recipient["organ_id"] == UNREGISTERED)
        .unwrap()
        .clone();
    assert_eq!(refused["accepted"], false);
    assert_eq!(refused["element"], "MessageHeader/To[2]/OrganId");

    // The same id with other content: the hub keeps the original.
    let mut changed = package("16", &[H41, UNREGISTERED]);
    changed.header.subject = "Một trích yếu khác".into();
    drop_file(
        &a.outbox,
        "mot-phan-sua.edxml",
        &truc_edxml::write_package(&changed).unwrap(),
    );
    let refusal = json(
        &wait_for_file(&a.outbox.join("failed"), |name| {
            name == "mot-phan-sua.edxml.refusal.json"
        })
        .await,
    );
    assert_eq!(refusal["refused_by"], "hub");
    assert_eq!(refusal["code"], "AlreadyExists");
    assert_eq!(
        refusal["problems"][0]["element"],
        "MessageHeader/DocumentId"
    );

    // A status about a document the hub does not have.
    drop_file(
        &a.outbox,
        "trang-thai.json",
        serde_json::json!({"document_id": "000.00.00.H41,2026/01/05,1/UBND", "status": "received"})
            .to_string()
            .as_bytes(),
    );
    let refusal = json(
        &wait_for_file(&a.outbox.join("failed"), |name| {
            name == "trang-thai.json.refusal.json"
        })
        .await,
    );
    assert_eq!(refusal["refused_by"], "hub");
    assert!(
        refusal["problems"][0]["element"]
            .as_str()
            .unwrap()
            .starts_with("MessageHeader/"),
        "{refusal}"
    );

    // Something that is no form the outbox reads.
    drop_file(&a.outbox, "ghi-chu.txt", b"van ban");
    let refusal = json(
        &wait_for_file(&a.outbox.join("failed"), |name| {
            name == "ghi-chu.txt.refusal.json"
        })
        .await,
    );
    assert_eq!(refusal["refused_by"], "node");

    let _ = stop.send(true);
    a_node.await.unwrap();
}

#[tokio::test]
async fn the_folder_form_arrives_as_the_same_edxml_package() {
    let hub = TestHub::start().await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (a, a_node) = start_node(&hub, G22, &stopped);
    let (b, b_node) = start_node(&hub, H41, &stopped);

    // Written in a hidden folder, then renamed into the outbox.
    let staging = a.outbox.join(".cong-van-21");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("cong-van.pdf"), b"%PDF-1.7 cong van 21").unwrap();
    let date = today_slashed().replace('/', "-");
    std::fs::write(
        staging.join("header.json"),
        serde_json::json!({
            "from": {"organ_id": G22, "organ_name": "Văn phòng Chính phủ"},
            "to": [{"organ_id": H41, "organ_name": "UBND tỉnh Nghệ An"}],
            "number": "21",
            "notation": "VPCP-KSTT",
            "place": "Hà Nội",
            "date": date,
            "document_type": 18,
            "document_type_name": "Công văn",
            "subject": "V/v báo cáo tình hình gửi nhận văn bản điện tử",
            "signer": {"position": "Chủ nhiệm", "full_name": "Trần Văn Sơn"},
            "attachments": [{"file": "cong-van.pdf"}],
            "sign_document": true,
        })
        .to_string(),
    )
    .unwrap();
    std::fs::rename(&staging, a.outbox.join("cong-van-21")).unwrap();
    let receipt = json(
        &wait_for_file(&a.outbox.join("sent"), |name| {
            name == "cong-van-21.receipt.json"
        })
        .await,
    );
    assert_eq!(receipt["document_signature"], "DOCUMENT_SIGNATURE_VALID");
    let document_id = receipt["document_id"].as_str().unwrap().to_owned();
    assert_eq!(
        document_id,
        format!("{G22},{},21/VPCP-KSTT", today_slashed())
    );

    wait_for_file(&b.inbox, |name| {
        name.ends_with(".edxml") && !name.contains("__")
    })
    .await;
    let path = truc_node::edxml_inbox::package_path(&b.inbox, &document_id);
    match read_message(&path) {
        Message::Document(received) => {
            assert_eq!(
                received.header.subject,
                "V/v báo cáo tình hình gửi nhận văn bản điện tử"
            );
            assert_eq!(received.header.from.organ_name, "Văn phòng Chính phủ");
            assert_eq!(
                received.header.signer_info.as_ref().unwrap().full_name,
                "Trần Văn Sơn"
            );
            assert_eq!(received.attachments.len(), 1);
            assert_eq!(received.attachments[0].content_type, "application/pdf");
            assert_eq!(received.attachments[0].bytes, b"%PDF-1.7 cong van 21");
        }
        other => panic!("not a document: {other:?}"),
    }
    let _ = stop.send(true);
    a_node.await.unwrap();
    b_node.await.unwrap();
}

//! A package that passes every check, for the tests to start from.

use base64::Engine;
use truc_domain::DocumentDate;
use truc_edxml::*;

/// Today, as the checks of these tests see it.
pub fn today() -> DocumentDate {
    DocumentDate::from_ymd(2026, 11, 22).expect("a valid date")
}

pub fn context() -> CheckContext {
    CheckContext::new(today(), Some("000.00.00.G22".parse().expect("a code")))
}

/// A self-signed certificate valid from `from_year` to `to_year`, in base64.
pub fn certificate(from_year: i32, to_year: i32) -> String {
    let mut params =
        rcgen::CertificateParams::new(vec!["vpcp.gov.vn".to_owned()]).expect("parameters");
    params.not_before = time::Date::from_calendar_date(from_year, time::Month::January, 1)
        .expect("date")
        .midnight()
        .assume_utc();
    params.not_after = time::Date::from_calendar_date(to_year, time::Month::December, 31)
        .expect("date")
        .midnight()
        .assume_utc();
    let key = rcgen::KeyPair::generate().expect("a key");
    let certificate = params.self_signed(&key).expect("a certificate");
    base64::engine::general_purpose::STANDARD.encode(certificate.der())
}

pub fn organization(code: &str, name: &str) -> Organization {
    Organization {
        organ_id: code.into(),
        organization_in_charge: name.into(),
        organ_name: name.into(),
        organ_add: "Số 1 Hoàng Hoa Thám, Ba Đình, Hà Nội".into(),
        email: "vanthu@example.gov.vn".into(),
        telephone: "024 3825 8261".into(),
        fax: "024 3825 8262".into(),
        website: "https://example.gov.vn".into(),
    }
}

pub fn valid_package() -> Package {
    let mut package = Package {
        header: MessageHeader {
            from: organization("000.00.00.G22", "Văn phòng Chính phủ"),
            to: vec![
                organization("000.00.00.H41", "UBND tỉnh Nghệ An"),
                organization("000.00.00.G12", "Bộ Tài chính"),
            ],
            document_id: String::new(),
            code: Code {
                number: "7816".into(),
                notation: "VPCP-TTĐT".into(),
            },
            promulgation: PromulgationInfo {
                place: "Hà Nội".into(),
                date: "2026/11/20".into(),
            },
            document_type: DocumentType {
                type_code: 1,
                type_detail: "0".into(),
                type_name: "Công văn".into(),
            },
            subject: "V/v triển khai kết nối Trục liên thông văn bản quốc gia".into(),
            content: "Đề nghị các cơ quan hoàn thành kết nối trước ngày 30/11.".into(),
            signer_info: Some(SignerInfo {
                competence: "KT. BỘ TRƯỞNG, CHỦ NHIỆM".into(),
                position: "Phó Chủ nhiệm".into(),
                full_name: "Nguyễn Văn An".into(),
            }),
            due_date: "2026/11/30".into(),
            to_places: vec!["Như trên".into(), "Lưu: VT, TTĐT".into()],
            other_info: OtherInfo {
                priority: 1,
                sphere_of_promulgation: "Liên thông văn bản quốc gia".into(),
                typer_notation: "TVC".into(),
                promulgation_amount: "2".into(),
                page_amount: 3,
                direction: "false".into(),
                appendixes: vec!["Phụ lục I: Danh sách đơn vị".into()],
            },
            response_for: vec![truc_edxml::envelope::response_for(
                "000.00.00.H41,2026/11/01,120/UBND-VX",
            )],
            steering_type: 1,
        },
        trace_headers: vec![TraceHeader {
            organ_id: "000.00.00.G22".into(),
            timestamp: "2026/11/20 09:15:00".into(),
        }],
        business: Business {
            doc_type: 0,
            doc_reason: "Văn bản điện tử mới".into(),
            document_id: String::new(),
            paper: "0".into(),
            staff_info: Some(StaffInfo {
                department: "Phòng Văn thư".into(),
                staff: "Trần Thị Bình".into(),
                email: "binh@example.gov.vn".into(),
                mobile: "0912000001".into(),
            }),
            document_info: None,
            replacements: Vec::new(),
        },
        signature: Some(Signature {
            canonicalization_method: "http://www.w3.org/TR/2001/REC-xml-c14n-20010315".into(),
            signature_method: "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256".into(),
            references: vec![SignReference {
                uri: String::new(),
                transforms: vec![
                    "http://www.w3.org/2000/09/xmldsig#enveloped-signature".into(),
                    "http://www.w3.org/2001/10/xml-exc-c14n#".into(),
                ],
                digest_method: "http://www.w3.org/2001/04/xmlenc#sha256".into(),
                digest_value: "q1MKE+RZFJgrefm34/uplM/R8/si9xzqGvvwK0YMbR0=".into(),
            }],
            signature_value: "R2JWYjhuOStxRnh6NDY2QWcwc2JwVmRMUHMyUjArOUpCZWtwMTJVeWFy".into(),
            x509_subject_name: "CN=vpcp.gov.vn".into(),
            x509_certificate: certificate(2020, 2030),
        }),
        attachments: vec![
            Attachment {
                content_id: "1".into(),
                name: "7816-VPCP-TTDT.pdf".into(),
                description: "Văn bản".into(),
                content_type: "application/pdf".into(),
                bytes: b"%PDF-1.7\n% van ban\n".to_vec(),
            },
            Attachment {
                content_id: "2".into(),
                name: "phu-luc-1.docx".into(),
                description: "Phụ lục I".into(),
                content_type:
                    "application/vnd.openxmlformats-officedocument.wordprocessingml.document".into(),
                bytes: vec![0x50, 0x4b, 0x03, 0x04, 1, 2, 3],
            },
        ],
    };
    package.header.document_id = package.derived_document_id();
    package
}

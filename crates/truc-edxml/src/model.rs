//! The elements of an edXML package and of a status message, one struct per
//! element group, with text kept as it was written so that `check` can name
//! each element that is wrong before anything trusts it. Element names and
//! where each was found are in `docs/EDXML.md`.

use serde::{Deserialize, Serialize};

/// The namespace of QCVN 102:2016 packages.
pub const NAMESPACE: &str = "http://www.mic.gov.vn/TBT/QCVN_102_2016";
/// The namespace of XML Signature (XML-DSig), in which the `Signature` block is written.
pub const XMLDSIG_NAMESPACE: &str = "http://www.w3.org/2000/09/xmldsig#";

/// One edXML file: a document package, or a status message about one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Document(Box<Package>),
    Status(Box<StatusMessage>),
}

/// `From`, `To` and a status message's `From`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Organization {
    /// The agency code `AAA.BB.CC.Xnn`.
    pub organ_id: String,
    pub organization_in_charge: String,
    pub organ_name: String,
    pub organ_add: String,
    pub email: String,
    pub telephone: String,
    pub fax: String,
    pub website: String,
}

/// `Code`: number and notation (*số, ký hiệu*).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Code {
    pub number: String,
    pub notation: String,
}

/// `PromulgationInfo`: place and date (`yyyy/MM/dd`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PromulgationInfo {
    pub place: String,
    pub date: String,
}

/// `DocumentType`: `Type` (a number), `TypeDetail`, `TypeName`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocumentType {
    pub type_code: u32,
    pub type_detail: String,
    pub type_name: String,
}

/// `SignerInfo`: who signed the document and with what authority.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignerInfo {
    /// *Thẩm quyền ký*: TL., KT., TM. and the like.
    pub competence: String,
    pub position: String,
    pub full_name: String,
}

/// `OtherInfo`: priority, page count, appendixes and the rest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OtherInfo {
    /// 0 normal, 1 urgent, 2 very urgent, 3 express, 4 express at a set time.
    pub priority: u32,
    pub sphere_of_promulgation: String,
    pub typer_notation: String,
    pub promulgation_amount: String,
    pub page_amount: u32,
    pub direction: String,
    /// `Appendixes/Appendix`, in order.
    pub appendixes: Vec<String>,
}

/// `ResponseFor`: a document this one answers, or that a status is about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseFor {
    pub organ_id: String,
    /// `Number/Notation`.
    pub code: String,
    pub promulgation_date: String,
    /// `OrganId,yyyy/MM/dd,Number/Notation`.
    pub document_id: String,
}

/// `StaffInfo`: the person who handled the document or the status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaffInfo {
    pub department: String,
    pub staff: String,
    pub email: String,
    pub mobile: String,
}

/// `TraceHeader`: an organisation the package passed through, and when.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TraceHeader {
    pub organ_id: String,
    /// `yyyy/MM/dd HH:mm:ss`.
    pub timestamp: String,
}

/// `BussinessDocumentInfo/ReceiverList/Receiver`: a recipient an update adds (1) or drops (0).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Receiver {
    pub receiver_type: String,
    pub organ_id: String,
}

/// `BussinessDocumentInfo`: which parts of the document an update changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusinessDocumentInfo {
    pub document_info: String,
    pub document_receiver: String,
    pub receivers: Vec<Receiver>,
}

/// `ReplacementInfoList/ReplacementInfo`: a document replaced (or revoked,
/// updated) and the recipients it concerns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplacementInfo {
    pub document_id: String,
    pub organ_ids: Vec<String>,
}

/// `TraceHeaderList/Bussiness` (the standard's own spelling): the business type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Business {
    /// 0 new, 1 revoke, 2 update, 3 replace.
    pub doc_type: u32,
    pub doc_reason: String,
    /// The document a revoke or an update acts on.
    pub document_id: String,
    /// 1 when a paper copy is also sent.
    pub paper: String,
    pub staff_info: Option<StaffInfo>,
    pub document_info: Option<BusinessDocumentInfo>,
    pub replacements: Vec<ReplacementInfo>,
}

/// `Signature/SignedInfo/Reference`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignReference {
    pub uri: String,
    /// Each `Transforms/Transform` algorithm, in order.
    pub transforms: Vec<String>,
    pub digest_method: String,
    /// Base64.
    pub digest_value: String,
}

/// The `Signature` block (XML-DSig) of the sending organisation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Signature {
    pub canonicalization_method: String,
    pub signature_method: String,
    pub references: Vec<SignReference>,
    /// Base64.
    pub signature_value: String,
    pub x509_subject_name: String,
    /// Base64 of the DER certificate.
    pub x509_certificate: String,
}

/// An attachment: its manifest entry and its bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attachment {
    /// The content id without its `cid:` prefix.
    pub content_id: String,
    /// `AttachmentName`: a plain file name.
    pub name: String,
    pub description: String,
    /// `ContentType`, a media type.
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// `edXMLHeader/MessageHeader` of a document package.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageHeader {
    pub from: Organization,
    pub to: Vec<Organization>,
    /// `OrganId,yyyy/MM/dd,Number/Notation`, derived from the fields above it.
    pub document_id: String,
    pub code: Code,
    pub promulgation: PromulgationInfo,
    pub document_type: DocumentType,
    /// *Trích yếu*.
    pub subject: String,
    pub content: String,
    pub signer_info: Option<SignerInfo>,
    /// `yyyy/MM/dd`, or empty.
    pub due_date: String,
    pub to_places: Vec<String>,
    pub other_info: OtherInfo,
    pub response_for: Vec<ResponseFor>,
    /// 0 none, 1 not steering, 2 steering, 3 report on steering.
    pub steering_type: u32,
}

/// A document package: header, trace, business type, signature, attachments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Package {
    pub header: MessageHeader,
    pub trace_headers: Vec<TraceHeader>,
    pub business: Business,
    pub signature: Option<Signature>,
    pub attachments: Vec<Attachment>,
}

/// A status message: what a recipient did with a document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusMessage {
    pub response_for: ResponseFor,
    pub from: Organization,
    /// Two digits: 01 arrived, 02 rejected, 03 received, 04 assigned, 05
    /// processing, 06 completed, 13 recall requested, 15 recall agreed, 16 refused.
    pub status_code: String,
    pub description: String,
    /// `yyyy/MM/dd HH:mm:ss`.
    pub timestamp: String,
    pub staff_info: Option<StaffInfo>,
}

impl Package {
    /// The document id the fields make: `OrganId,yyyy/MM/dd,Number/Notation`.
    pub fn derived_document_id(&self) -> String {
        derived_document_id(
            &self.header.from.organ_id,
            &self.header.promulgation.date,
            &self.header.code.number,
            &self.header.code.notation,
        )
    }
}

/// `OrganId,yyyy/MM/dd,Number/Notation` from its parts as written.
pub fn derived_document_id(organ_id: &str, date: &str, number: &str, notation: &str) -> String {
    format!("{organ_id},{date},{number}/{notation}")
}

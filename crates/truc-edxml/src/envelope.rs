//! The mapping between a package and the envelope header of `truc-domain`,
//! both ways. Every field the envelope carries maps one to one. What the
//! envelope does not carry (organisations' fax and website, the summary,
//! the signer, places, the trace, the business details, the sender's
//! XML-DSig block, content ids and descriptions) travels as *signed extra
//! data*: a JSON attachment, last, named [`EXTRA_ATTACHMENT_NAME`], whose
//! digest is in the signed header like any attachment's. It is kept rather
//! than refused because agencies' systems fill those elements in every
//! package, and kept signed so that the recipient can trust it as much as
//! the header.

use ring::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};
use truc_domain::{DocumentId, RawAttachment, RawHeader, RawOrgan};

use crate::model::*;

/// The name of the attachment that carries the edXML data the envelope does not.
pub const EXTRA_ATTACHMENT_NAME: &str = "edxml-extra.json";
/// Its media type, which says what it is to any client.
pub const EXTRA_MEDIA_TYPE: &str = "application/vnd.truc.edxml-extra+json";
/// The version of its layout.
pub const EXTRA_VERSION: u32 = 1;

/// An organisation's elements the envelope does not carry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrganExtra {
    pub organization_in_charge: String,
    pub fax: String,
    pub website: String,
}

/// An attachment's manifest elements the envelope does not carry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttachmentExtra {
    pub content_id: String,
    pub description: String,
}

/// The edXML elements the envelope does not carry (see the module's doc).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Extra {
    pub version: u32,
    pub from: OrganExtra,
    pub to: Vec<OrganExtra>,
    pub type_detail: String,
    pub content: String,
    pub signer_info: Option<SignerInfo>,
    pub to_places: Vec<String>,
    pub sphere_of_promulgation: String,
    pub typer_notation: String,
    pub promulgation_amount: String,
    pub direction: String,
    /// The names of `OtherInfo/Appendixes`; the envelope carries their count.
    pub appendixes: Vec<String>,
    pub trace_headers: Vec<TraceHeader>,
    pub business_reason: String,
    pub paper: String,
    pub staff_info: Option<StaffInfo>,
    pub document_info: Option<BusinessDocumentInfo>,
    /// True when the first of the envelope's `business_refs` was
    /// `Bussiness/DocumentId`; the others are `ReplacementInfo`s, in order.
    pub business_document_id: bool,
    /// Each `ReplacementInfo`'s `OrganIdList`.
    pub replacement_organ_ids: Vec<Vec<String>>,
    pub signature: Option<Signature>,
    pub attachments: Vec<AttachmentExtra>,
}

/// An attachment with its bytes, in the order the envelope carries them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentBytes {
    pub name: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// A package as the envelope carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeParts {
    /// The header, with every attachment's size and SHA-256, the extra data last.
    pub header: RawHeader,
    pub attachments: Vec<AttachmentBytes>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FromEnvelopeError {
    #[error("the header names {header} attachments but {given} were given")]
    AttachmentCount { header: usize, given: usize },
    #[error("{EXTRA_ATTACHMENT_NAME}: {0}")]
    Extra(String),
}

fn organ(organization: &Organization) -> RawOrgan {
    RawOrgan {
        organ_id: organization.organ_id.clone(),
        organ_name: organization.organ_name.clone(),
        address: organization.organ_add.clone(),
        email: organization.email.clone(),
        phone: organization.telephone.clone(),
    }
}

fn organ_extra(organization: &Organization) -> OrganExtra {
    OrganExtra {
        organization_in_charge: organization.organization_in_charge.clone(),
        fax: organization.fax.clone(),
        website: organization.website.clone(),
    }
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    digest(&SHA256, bytes).as_ref().to_vec()
}

/// `yyyy/MM/dd` to the envelope's `yyyy-mm-dd`.
fn iso(date: &str) -> String {
    date.replace('/', "-")
}

fn business_refs(business: &Business) -> Vec<String> {
    let mut refs = Vec::new();
    if !business.document_id.is_empty() {
        refs.push(business.document_id.clone());
    }
    refs.extend(business.replacements.iter().map(|r| r.document_id.clone()));
    refs
}

/// The envelope header of a package, without the extra data.
pub fn raw_header(package: &Package) -> RawHeader {
    let header = &package.header;
    RawHeader {
        from: Some(organ(&header.from)),
        to: header.to.iter().map(organ).collect(),
        code_number: header.code.number.clone(),
        code_notation: header.code.notation.clone(),
        promulgation_place: header.promulgation.place.clone(),
        promulgation_date: iso(&header.promulgation.date),
        document_type: header.document_type.type_code,
        document_type_name: header.document_type.type_name.clone(),
        subject: header.subject.clone(),
        steering_type: header.steering_type,
        due_date: iso(&header.due_date),
        priority: header.other_info.priority,
        page_count: header.other_info.page_amount,
        appendix_count: header.other_info.appendixes.len() as u32,
        response_for: header
            .response_for
            .iter()
            .map(|r| r.document_id.clone())
            .collect(),
        business_type: package.business.doc_type as i32,
        business_refs: business_refs(&package.business),
        attachments: package
            .attachments
            .iter()
            .map(|attachment| RawAttachment {
                name: attachment.name.clone(),
                media_type: attachment.content_type.clone(),
                size_bytes: attachment.bytes.len() as u64,
                sha256: sha256(&attachment.bytes),
            })
            .collect(),
    }
}

/// What of a package the envelope does not carry.
pub fn extra(package: &Package) -> Extra {
    let header = &package.header;
    let other = &header.other_info;
    let business = &package.business;
    Extra {
        version: EXTRA_VERSION,
        from: organ_extra(&header.from),
        to: header.to.iter().map(organ_extra).collect(),
        type_detail: header.document_type.type_detail.clone(),
        content: header.content.clone(),
        signer_info: header.signer_info.clone(),
        to_places: header.to_places.clone(),
        sphere_of_promulgation: other.sphere_of_promulgation.clone(),
        typer_notation: other.typer_notation.clone(),
        promulgation_amount: other.promulgation_amount.clone(),
        direction: other.direction.clone(),
        appendixes: other.appendixes.clone(),
        trace_headers: package.trace_headers.clone(),
        business_reason: business.doc_reason.clone(),
        paper: business.paper.clone(),
        staff_info: business.staff_info.clone(),
        document_info: business.document_info.clone(),
        business_document_id: !business.document_id.is_empty(),
        replacement_organ_ids: business
            .replacements
            .iter()
            .map(|r| r.organ_ids.clone())
            .collect(),
        signature: package.signature.clone(),
        attachments: package
            .attachments
            .iter()
            .map(|a| AttachmentExtra {
                content_id: a.content_id.clone(),
                description: a.description.clone(),
            })
            .collect(),
    }
}

/// A checked package as the envelope carries it: the header with every
/// attachment's digest, and the extra data as the last attachment. The
/// same package always gives the same bytes, so that a resend after a crash
/// is the hub's duplicate, answered with the original acknowledgement.
pub fn to_envelope(package: &Package) -> EnvelopeParts {
    let mut header = raw_header(package);
    let extra_bytes = serde_json::to_vec(&extra(package)).unwrap_or_default();
    header.attachments.push(RawAttachment {
        name: EXTRA_ATTACHMENT_NAME.into(),
        media_type: EXTRA_MEDIA_TYPE.into(),
        size_bytes: extra_bytes.len() as u64,
        sha256: sha256(&extra_bytes),
    });
    let mut attachments: Vec<AttachmentBytes> = package
        .attachments
        .iter()
        .map(|a| AttachmentBytes {
            name: a.name.clone(),
            media_type: a.content_type.clone(),
            bytes: a.bytes.clone(),
        })
        .collect();
    attachments.push(AttachmentBytes {
        name: EXTRA_ATTACHMENT_NAME.into(),
        media_type: EXTRA_MEDIA_TYPE.into(),
        bytes: extra_bytes,
    });
    EnvelopeParts {
        header,
        attachments,
    }
}

/// Whether an envelope attachment is the extra data.
pub fn is_extra(name: &str, media_type: &str) -> bool {
    name == EXTRA_ATTACHMENT_NAME && media_type == EXTRA_MEDIA_TYPE
}

/// `ResponseFor` with every part its document id states.
pub fn response_for(document_id: &str) -> ResponseFor {
    match document_id.parse::<DocumentId>() {
        Ok(id) => ResponseFor {
            organ_id: id.sender().to_string(),
            code: id.code().to_owned(),
            promulgation_date: id.date().iso().replace('-', "/"),
            document_id: document_id.to_owned(),
        },
        Err(_) => ResponseFor {
            document_id: document_id.to_owned(),
            ..ResponseFor::default()
        },
    }
}

/// The package an envelope carries, from its header and its attachments'
/// bytes in header order. Without the extra data (a document sent by a
/// client that does not write it) the elements it would hold are empty,
/// content ids are the attachments' positions, and `appendix_count`
/// becomes as many unnamed appendixes.
pub fn from_envelope(
    header: &RawHeader,
    attachment_bytes: Vec<Vec<u8>>,
) -> Result<Package, FromEnvelopeError> {
    if header.attachments.len() != attachment_bytes.len() {
        return Err(FromEnvelopeError::AttachmentCount {
            header: header.attachments.len(),
            given: attachment_bytes.len(),
        });
    }
    let mut metas = header.attachments.clone();
    let mut bytes = attachment_bytes;
    let extra = take_extra(header, &mut metas, &mut bytes)?;
    let mut package = Package {
        header: message_header(header, &extra),
        trace_headers: extra.trace_headers.clone(),
        business: business(header, &extra),
        signature: extra.signature.clone(),
        attachments: attachments(&metas, bytes, &extra),
    };
    package.header.document_id = package.derived_document_id();
    Ok(package)
}

/// The extra data: taken off `metas` and `bytes` when the last attachment
/// holds it, made from the header otherwise.
fn take_extra(
    header: &RawHeader,
    metas: &mut Vec<RawAttachment>,
    bytes: &mut Vec<Vec<u8>>,
) -> Result<Extra, FromEnvelopeError> {
    let extra = match metas.last() {
        Some(last) if is_extra(&last.name, &last.media_type) => {
            metas.pop();
            let json = bytes.pop().unwrap_or_default();
            let extra: Extra = serde_json::from_slice(&json)
                .map_err(|error| FromEnvelopeError::Extra(error.to_string()))?;
            if extra.version != EXTRA_VERSION {
                return Err(FromEnvelopeError::Extra(format!(
                    "version {} is not {EXTRA_VERSION}",
                    extra.version
                )));
            }
            Some(extra)
        }
        _ => None,
    };
    let extra = extra.unwrap_or_else(|| Extra {
        version: EXTRA_VERSION,
        appendixes: vec![String::new(); header.appendix_count as usize],
        business_document_id: matches!(header.business_type, 1 | 2)
            && header.business_refs.len() == 1,
        ..Extra::default()
    });
    Ok(extra)
}

/// An organization: the envelope's fields, and what only the extra data
/// holds.
fn organization(raw: &RawOrgan, extra: Option<&OrganExtra>) -> Organization {
    let extra = extra.cloned().unwrap_or_default();
    Organization {
        organ_id: raw.organ_id.clone(),
        organization_in_charge: extra.organization_in_charge,
        organ_name: raw.organ_name.clone(),
        organ_add: raw.address.clone(),
        email: raw.email.clone(),
        telephone: raw.phone.clone(),
        fax: extra.fax,
        website: extra.website,
    }
}

/// The edXML header: the envelope's fields, and what only the extra data
/// holds.
fn message_header(header: &RawHeader, extra: &Extra) -> MessageHeader {
    let from = header
        .from
        .as_ref()
        .map(|from| organization(from, Some(&extra.from)))
        .unwrap_or_default();
    let to = header
        .to
        .iter()
        .enumerate()
        .map(|(index, to)| organization(to, extra.to.get(index)))
        .collect();
    let appendixes = if extra.appendixes.len() == header.appendix_count as usize {
        extra.appendixes.clone()
    } else {
        vec![String::new(); header.appendix_count as usize]
    };
    let slash = |date: &str| date.replace('-', "/");
    MessageHeader {
        from,
        to,
        document_id: String::new(),
        code: Code {
            number: header.code_number.clone(),
            notation: header.code_notation.clone(),
        },
        promulgation: PromulgationInfo {
            place: header.promulgation_place.clone(),
            date: slash(&header.promulgation_date),
        },
        document_type: DocumentType {
            type_code: header.document_type,
            type_detail: extra.type_detail.clone(),
            type_name: header.document_type_name.clone(),
        },
        subject: header.subject.clone(),
        content: extra.content.clone(),
        signer_info: extra.signer_info.clone(),
        due_date: slash(&header.due_date),
        to_places: extra.to_places.clone(),
        other_info: OtherInfo {
            priority: header.priority,
            sphere_of_promulgation: extra.sphere_of_promulgation.clone(),
            typer_notation: extra.typer_notation.clone(),
            promulgation_amount: extra.promulgation_amount.clone(),
            page_amount: header.page_count,
            direction: extra.direction.clone(),
            appendixes,
        },
        response_for: header
            .response_for
            .iter()
            .map(|id| response_for(id))
            .collect(),
        steering_type: header.steering_type,
    }
}

/// The business part: what kind of document it is and, for a recall,
/// update or replace, the documents it names.
fn business(header: &RawHeader, extra: &Extra) -> Business {
    let mut refs = header.business_refs.iter();
    let document_id = if extra.business_document_id {
        refs.next().cloned().unwrap_or_default()
    } else {
        String::new()
    };
    let replacements = refs
        .enumerate()
        .map(|(index, id)| ReplacementInfo {
            document_id: id.clone(),
            organ_ids: extra
                .replacement_organ_ids
                .get(index)
                .cloned()
                .unwrap_or_default(),
        })
        .collect();
    Business {
        doc_type: u32::try_from(header.business_type).unwrap_or_default(),
        doc_reason: extra.business_reason.clone(),
        document_id,
        paper: extra.paper.clone(),
        staff_info: extra.staff_info.clone(),
        document_info: extra.document_info.clone(),
        replacements,
    }
}

/// The attachments with their bytes; without the extra data, their
/// content ids are their positions.
fn attachments(metas: &[RawAttachment], bytes: Vec<Vec<u8>>, extra: &Extra) -> Vec<Attachment> {
    metas
        .iter()
        .zip(bytes)
        .enumerate()
        .map(|(index, (meta, bytes))| {
            let extra = extra
                .attachments
                .get(index)
                .cloned()
                .unwrap_or_else(|| AttachmentExtra {
                    content_id: (index + 1).to_string(),
                    description: String::new(),
                });
            Attachment {
                content_id: extra.content_id,
                name: meta.name.clone(),
                description: extra.description,
                content_type: meta.media_type.clone(),
                bytes,
            }
        })
        .collect()
}

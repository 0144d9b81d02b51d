//! The envelope's field names (as the hub and `Header::validate` name them
//! in refusals) turned into the edXML elements they came from, so that a
//! refusal of a package reads the same whether the node or the hub made it.

use crate::envelope::EXTRA_ATTACHMENT_NAME;
use crate::model::Package;
use crate::parse::{BUSINESS, HEADER, MANIFEST};

/// `to[3].organ_id` → (`to`, Some(3), `organ_id`).
fn split(field: &str) -> (&str, Option<usize>, &str) {
    let (head, rest) = field.split_once('.').unwrap_or((field, ""));
    match head.split_once('[') {
        Some((name, index)) => (name, index.trim_end_matches(']').parse().ok(), rest),
        None => (head, None, rest),
    }
}

fn organ_element(part: &str) -> &'static str {
    match part {
        "organ_id" => "/OrganId",
        "organ_name" => "/OrganName",
        "address" => "/OrganAdd",
        "email" => "/Email",
        "phone" => "/Telephone",
        _ => "",
    }
}

/// The element a document's envelope field came from.
pub fn element_for_field(field: &str, package: &Package) -> String {
    let h = HEADER;
    let (name, index, rest) = split(field);
    match (name, index) {
        ("sender", _) => format!("{h}/From/OrganId"),
        ("document_id", _) => format!("{h}/DocumentId"),
        ("from", _) => format!("{h}/From{}", organ_element(rest)),
        ("to", None) => format!("{h}/To"),
        ("to", Some(at)) => format!("{h}/To[{}]{}", at + 1, organ_element(rest)),
        ("code", _) => format!("{h}/Code"),
        ("promulgation", _) if rest == "place" => format!("{h}/PromulgationInfo/Place"),
        ("promulgation", _) => format!("{h}/PromulgationInfo/PromulgationDate"),
        ("document_type", _) => format!("{h}/DocumentType/TypeName"),
        ("subject", _) => format!("{h}/Subject"),
        ("due_date", _) => format!("{h}/DueDate"),
        ("steering_type", _) => format!("{h}/SteeringType"),
        ("response_for", None) => format!("{h}/ResponseFor"),
        ("response_for", Some(at)) => format!("{h}/ResponseFor[{}]/DocumentId", at + 1),
        ("business_type", _) => format!("{BUSINESS}/BussinessDocType"),
        ("business_refs", None) => BUSINESS.to_owned(),
        ("business_refs", Some(at)) => {
            let in_business = !package.business.document_id.is_empty();
            match (in_business, at) {
                (true, 0) => format!("{BUSINESS}/DocumentId"),
                (true, at) => {
                    format!("{BUSINESS}/ReplacementInfoList/ReplacementInfo[{at}]/DocumentId")
                }
                (false, at) => format!(
                    "{BUSINESS}/ReplacementInfoList/ReplacementInfo[{}]/DocumentId",
                    at + 1
                ),
            }
        }
        ("attachments", None) => MANIFEST.to_owned(),
        ("attachments", Some(at)) if at >= package.attachments.len() => {
            EXTRA_ATTACHMENT_NAME.to_owned()
        }
        ("attachments", Some(at)) => {
            let element = match rest {
                "name" => "/AttachmentName",
                "media_type" => "/ContentType",
                _ => "",
            };
            format!("{MANIFEST}/Reference[{}]{element}", at + 1)
        }
        ("header", _) | ("envelope", _) => "edXMLHeader".to_owned(),
        _ => field.to_owned(),
    }
}

/// The element of a status message a `MoveStatus` field came from.
pub fn status_element_for_field(field: &str) -> String {
    let h = HEADER;
    match split(field).0 {
        "document_id" => format!("{h}/ResponseFor/DocumentId"),
        "recipient" => format!("{h}/From/OrganId"),
        "status" => format!("{h}/StatusCode"),
        "reason" => format!("{h}/Description"),
        _ => field.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Attachment, Business};

    #[test]
    fn fields_name_their_elements() {
        let package = Package {
            attachments: vec![Attachment::default(); 2],
            business: Business {
                document_id: "x".into(),
                ..Business::default()
            },
            ..Package::default()
        };
        for (field, element) in [
            ("from.organ_id", "MessageHeader/From/OrganId"),
            ("sender", "MessageHeader/From/OrganId"),
            ("to[1].organ_id", "MessageHeader/To[2]/OrganId"),
            ("to[0].phone", "MessageHeader/To[1]/Telephone"),
            (
                "promulgation.date",
                "MessageHeader/PromulgationInfo/PromulgationDate",
            ),
            ("response_for[2]", "MessageHeader/ResponseFor[3]/DocumentId"),
            ("business_refs[0]", "TraceHeaderList/Bussiness/DocumentId"),
            (
                "business_refs[1]",
                "TraceHeaderList/Bussiness/ReplacementInfoList/ReplacementInfo[1]/DocumentId",
            ),
            (
                "attachments[1].name",
                "edXMLBody/edXMLManifest/Reference[2]/AttachmentName",
            ),
            ("attachments[2].sha256", "edxml-extra.json"),
            ("subject", "MessageHeader/Subject"),
            ("document_id", "MessageHeader/DocumentId"),
        ] {
            assert_eq!(element_for_field(field, &package), element, "{field}");
        }
        assert_eq!(
            status_element_for_field("reason"),
            "MessageHeader/Description"
        );
    }
}

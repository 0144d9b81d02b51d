//! Writes packages and status messages as the vendors' SDKs lay them out:
//! `edXML` with the QCVN 102:2016 namespace as default, the envelope's
//! elements with the `edXML:` prefix, the `Signature` block in XML-DSig's
//! namespace, and the attachments in base64 in `AttachmentEncoded` after
//! the envelope. quick-xml escapes every value.

use base64::Engine;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;

use crate::model::*;

#[derive(Debug, thiserror::Error)]
#[error("cannot write edXML: {0}")]
pub struct WriteError(#[from] std::io::Error);

struct Out {
    writer: Writer<Vec<u8>>,
    /// `edXML:` inside the envelope, nothing elsewhere.
    prefix: &'static str,
}

impl Out {
    fn name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn open(&mut self, name: &str, attributes: &[(&str, &str)]) -> Result<(), WriteError> {
        let name = self.name(name);
        let start = BytesStart::new(name.as_str()).with_attributes(attributes.iter().copied());
        self.writer.write_event(Event::Start(start))?;
        Ok(())
    }

    fn close(&mut self, name: &str) -> Result<(), WriteError> {
        let name = self.name(name);
        self.writer
            .write_event(Event::End(BytesEnd::new(name.as_str())))?;
        Ok(())
    }

    /// An element with its text, written even when the text is empty.
    fn leaf(&mut self, name: &str, value: &str) -> Result<(), WriteError> {
        let name = self.name(name);
        self.writer
            .create_element(name.as_str())
            .write_text_content(BytesText::new(value))?;
        Ok(())
    }

    /// An element with its text, left out when the text is empty.
    fn optional(&mut self, name: &str, value: &str) -> Result<(), WriteError> {
        if value.is_empty() {
            return Ok(());
        }
        self.leaf(name, value)
    }

    fn empty_with(&mut self, name: &str, attributes: &[(&str, &str)]) -> Result<(), WriteError> {
        let name = self.name(name);
        let start = BytesStart::new(name.as_str()).with_attributes(attributes.iter().copied());
        self.writer.write_event(Event::Empty(start))?;
        Ok(())
    }
}

fn begin() -> Result<Out, WriteError> {
    let mut out = Out {
        writer: Writer::new_with_indent(Vec::new(), b' ', 2),
        prefix: "",
    };
    out.writer
        .write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    out.open("edXML", &[("xmlns", NAMESPACE)])?;
    out.prefix = "edXML:";
    out.open("edXMLEnvelope", &[("xmlns:edXML", NAMESPACE)])?;
    out.open("edXMLHeader", &[])?;
    Ok(out)
}

fn organization(out: &mut Out, name: &str, organization: &Organization) -> Result<(), WriteError> {
    out.open(name, &[])?;
    out.leaf("OrganId", &organization.organ_id)?;
    out.optional("OrganizationInCharge", &organization.organization_in_charge)?;
    out.optional("OrganName", &organization.organ_name)?;
    out.optional("OrganAdd", &organization.organ_add)?;
    out.optional("Email", &organization.email)?;
    out.optional("Telephone", &organization.telephone)?;
    out.optional("Fax", &organization.fax)?;
    out.optional("Website", &organization.website)?;
    out.close(name)
}

fn response_for(out: &mut Out, response: &ResponseFor) -> Result<(), WriteError> {
    out.open("ResponseFor", &[])?;
    out.optional("OrganId", &response.organ_id)?;
    out.optional("Code", &response.code)?;
    out.optional("PromulgationDate", &response.promulgation_date)?;
    out.leaf("DocumentId", &response.document_id)?;
    out.close("ResponseFor")
}

fn staff_info(out: &mut Out, staff: &StaffInfo) -> Result<(), WriteError> {
    out.open("StaffInfo", &[])?;
    out.optional("Department", &staff.department)?;
    out.optional("Staff", &staff.staff)?;
    out.optional("Email", &staff.email)?;
    out.optional("Mobile", &staff.mobile)?;
    out.close("StaffInfo")
}

fn message_header(out: &mut Out, header: &MessageHeader) -> Result<(), WriteError> {
    out.open("MessageHeader", &[])?;
    organization(out, "From", &header.from)?;
    for to in &header.to {
        organization(out, "To", to)?;
    }
    out.leaf("DocumentId", &header.document_id)?;
    out.open("Code", &[])?;
    out.leaf("CodeNumber", &header.code.number)?;
    out.leaf("CodeNotation", &header.code.notation)?;
    out.close("Code")?;
    out.open("PromulgationInfo", &[])?;
    out.optional("Place", &header.promulgation.place)?;
    out.leaf("PromulgationDate", &header.promulgation.date)?;
    out.close("PromulgationInfo")?;
    out.open("DocumentType", &[])?;
    out.leaf("Type", &header.document_type.type_code.to_string())?;
    out.optional("TypeDetail", &header.document_type.type_detail)?;
    out.optional("TypeName", &header.document_type.type_name)?;
    out.close("DocumentType")?;
    out.leaf("Subject", &header.subject)?;
    out.optional("Content", &header.content)?;
    if let Some(signer) = &header.signer_info {
        out.open("SignerInfo", &[])?;
        out.optional("Competence", &signer.competence)?;
        out.optional("Position", &signer.position)?;
        out.optional("FullName", &signer.full_name)?;
        out.close("SignerInfo")?;
    }
    out.optional("DueDate", &header.due_date)?;
    let other = &header.other_info;
    out.open("OtherInfo", &[])?;
    out.leaf("Priority", &other.priority.to_string())?;
    out.optional("SphereOfPromulgation", &other.sphere_of_promulgation)?;
    out.optional("TyperNotation", &other.typer_notation)?;
    out.optional("PromulgationAmount", &other.promulgation_amount)?;
    out.leaf("PageAmount", &other.page_amount.to_string())?;
    out.optional("Direction", &other.direction)?;
    if !other.appendixes.is_empty() {
        out.open("Appendixes", &[])?;
        for appendix in &other.appendixes {
            out.leaf("Appendix", appendix)?;
        }
        out.close("Appendixes")?;
    }
    out.close("OtherInfo")?;
    for response in &header.response_for {
        response_for(out, response)?;
    }
    out.leaf("SteeringType", &header.steering_type.to_string())?;
    if !header.to_places.is_empty() {
        out.open("ToPlaces", &[])?;
        for place in &header.to_places {
            out.leaf("Place", place)?;
        }
        out.close("ToPlaces")?;
    }
    out.close("MessageHeader")
}

fn trace(out: &mut Out, package: &Package) -> Result<(), WriteError> {
    out.open("TraceHeaderList", &[])?;
    for trace in &package.trace_headers {
        out.open("TraceHeader", &[])?;
        out.leaf("OrganId", &trace.organ_id)?;
        out.optional("Timestamp", &trace.timestamp)?;
        out.close("TraceHeader")?;
    }
    let business = &package.business;
    out.open("Bussiness", &[])?;
    out.leaf("BussinessDocType", &business.doc_type.to_string())?;
    out.optional("BussinessDocReason", &business.doc_reason)?;
    out.optional("DocumentId", &business.document_id)?;
    out.optional("Paper", &business.paper)?;
    if let Some(staff) = &business.staff_info {
        staff_info(out, staff)?;
    }
    if let Some(info) = &business.document_info {
        out.open("BussinessDocumentInfo", &[])?;
        out.optional("DocumentInfo", &info.document_info)?;
        out.optional("DocumentReceiver", &info.document_receiver)?;
        if !info.receivers.is_empty() {
            out.open("ReceiverList", &[])?;
            for receiver in &info.receivers {
                out.open("Receiver", &[])?;
                out.optional("ReceiverType", &receiver.receiver_type)?;
                out.leaf("OrganId", &receiver.organ_id)?;
                out.close("Receiver")?;
            }
            out.close("ReceiverList")?;
        }
        out.close("BussinessDocumentInfo")?;
    }
    if !business.replacements.is_empty() {
        out.open("ReplacementInfoList", &[])?;
        for replacement in &business.replacements {
            out.open("ReplacementInfo", &[])?;
            out.leaf("DocumentId", &replacement.document_id)?;
            if !replacement.organ_ids.is_empty() {
                out.open("OrganIdList", &[])?;
                for organ in &replacement.organ_ids {
                    out.leaf("OrganId", organ)?;
                }
                out.close("OrganIdList")?;
            }
            out.close("ReplacementInfo")?;
        }
        out.close("ReplacementInfoList")?;
    }
    out.close("Bussiness")?;
    out.close("TraceHeaderList")
}

fn signature(out: &mut Out, signature: &Signature) -> Result<(), WriteError> {
    let prefix = out.prefix;
    out.prefix = "";
    out.open("Signature", &[("xmlns", XMLDSIG_NAMESPACE)])?;
    out.open("SignedInfo", &[])?;
    out.empty_with(
        "CanonicalizationMethod",
        &[("Algorithm", signature.canonicalization_method.as_str())],
    )?;
    out.empty_with(
        "SignatureMethod",
        &[("Algorithm", signature.signature_method.as_str())],
    )?;
    for reference in &signature.references {
        out.open("Reference", &[("URI", reference.uri.as_str())])?;
        if !reference.transforms.is_empty() {
            out.open("Transforms", &[])?;
            for transform in &reference.transforms {
                out.empty_with("Transform", &[("Algorithm", transform.as_str())])?;
            }
            out.close("Transforms")?;
        }
        out.empty_with(
            "DigestMethod",
            &[("Algorithm", reference.digest_method.as_str())],
        )?;
        out.leaf("DigestValue", &reference.digest_value)?;
        out.close("Reference")?;
    }
    out.close("SignedInfo")?;
    out.leaf("SignatureValue", &signature.signature_value)?;
    out.open("KeyInfo", &[])?;
    out.open("X509Data", &[])?;
    out.optional("X509SubjectName", &signature.x509_subject_name)?;
    out.leaf("X509Certificate", &signature.x509_certificate)?;
    out.close("X509Data")?;
    out.close("KeyInfo")?;
    out.close("Signature")?;
    out.prefix = prefix;
    Ok(())
}

/// A document package, attachments inline in base64.
pub fn write_package(package: &Package) -> Result<Vec<u8>, WriteError> {
    let mut out = begin()?;
    message_header(&mut out, &package.header)?;
    trace(&mut out, package)?;
    if let Some(block) = &package.signature {
        signature(&mut out, block)?;
    }
    out.close("edXMLHeader")?;
    out.open("edXMLBody", &[])?;
    out.open("edXMLManifest", &[("version", "1.0")])?;
    for attachment in &package.attachments {
        out.open("Reference", &[])?;
        out.leaf("ContentId", &format!("cid:{}", attachment.content_id))?;
        out.leaf("ContentType", &attachment.content_type)?;
        out.optional("Description", &attachment.description)?;
        out.leaf("AttachmentName", &attachment.name)?;
        out.close("Reference")?;
    }
    out.close("edXMLManifest")?;
    out.close("edXMLBody")?;
    out.close("edXMLEnvelope")?;
    out.prefix = "";
    if !package.attachments.is_empty() {
        out.open("AttachmentEncoded", &[])?;
        let base64 = base64::engine::general_purpose::STANDARD;
        for attachment in &package.attachments {
            out.open("Attachment", &[])?;
            out.leaf("ContentId", &format!("cid:{}", attachment.content_id))?;
            out.leaf("AttachmentName", &attachment.name)?;
            out.optional("Description", &attachment.description)?;
            out.leaf("ContentType", &attachment.content_type)?;
            out.leaf("ContentTransferEncoded", &base64.encode(&attachment.bytes))?;
            out.close("Attachment")?;
        }
        out.close("AttachmentEncoded")?;
    }
    out.close("edXML")?;
    let mut bytes = out.writer.into_inner();
    bytes.push(b'\n');
    Ok(bytes)
}

/// A status message.
pub fn write_status(status: &StatusMessage) -> Result<Vec<u8>, WriteError> {
    let mut out = begin()?;
    out.open("MessageHeader", &[])?;
    response_for(&mut out, &status.response_for)?;
    organization(&mut out, "From", &status.from)?;
    out.leaf("StatusCode", &status.status_code)?;
    out.optional("Description", &status.description)?;
    out.optional("Timestamp", &status.timestamp)?;
    if let Some(staff) = &status.staff_info {
        staff_info(&mut out, staff)?;
    }
    out.close("MessageHeader")?;
    out.close("edXMLHeader")?;
    out.close("edXMLEnvelope")?;
    out.prefix = "";
    out.close("edXML")?;
    let mut bytes = out.writer.into_inner();
    bytes.push(b'\n');
    Ok(bytes)
}

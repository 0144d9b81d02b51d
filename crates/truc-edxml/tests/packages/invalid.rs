//! The corpus of invalid packages and status messages: each row changes a
//! valid file the way agencies' packages went wrong (seed 002, I.2.b: form,
//! signature, attachments, authority, notation and code format) and names
//! the element the refusal must name. A row whose change does not apply
//! fails, so the corpus cannot rot into testing the valid package.

use super::common;

use truc_edxml::{read_edxml, Category, CheckContext, Problem};

/// (what is wrong, the replacements made in the valid file, the element named).
type Row = (&'static str, Vec<(String, String)>, &'static str);

fn r(from: &str, to: &str) -> (String, String) {
    (from.to_owned(), to.to_owned())
}

fn tag(name: &str, value: &str) -> String {
    format!("<edXML:{name}>{value}</edXML:{name}>")
}

/// Replaces the `<edXML:{name}>…</edXML:{name}>` element holding `old`.
fn set(name: &str, old: &str, new: &str) -> (String, String) {
    (tag(name, old), tag(name, new))
}

fn drop_element(name: &str, value: &str) -> (String, String) {
    (tag(name, value), String::new())
}

const SUBJECT: &str = "V/v triển khai kết nối Trục liên thông văn bản quốc gia";

fn document_rows(valid: &str) -> Vec<Row> {
    let from_block = {
        let start = valid.find("<edXML:From>").expect("From");
        let end = valid.find("</edXML:From>").expect("From") + "</edXML:From>".len();
        valid[start..end].to_owned()
    };
    let to_blocks = {
        let start = valid.find("<edXML:To>").expect("To");
        let end = valid.rfind("</edXML:To>").expect("To") + "</edXML:To>".len();
        valid[start..end].to_owned()
    };
    let signer_block = {
        let start = valid.find("<edXML:SignerInfo>").expect("SignerInfo");
        let end =
            valid.find("</edXML:SignerInfo>").expect("SignerInfo") + "</edXML:SignerInfo>".len();
        valid[start..end].to_owned()
    };
    let reference_block = {
        let start = valid.find("<Reference URI=").expect("Reference");
        let end = valid.find("</Reference>").expect("Reference") + "</Reference>".len();
        valid[start..end].to_owned()
    };
    let certificate = {
        let start = valid.find("<X509Certificate>").expect("certificate");
        let end =
            valid.find("</X509Certificate>").expect("certificate") + "</X509Certificate>".len();
        valid[start..end].to_owned()
    };
    let manifest = {
        let start = valid.find("<edXML:edXMLBody>").expect("body");
        let end = valid.find("</edXML:edXMLBody>").expect("body") + "</edXML:edXMLBody>".len();
        valid[start..end].to_owned()
    };
    let encoded = {
        let start = valid.find("<AttachmentEncoded>").expect("encoded");
        let end =
            valid.find("</AttachmentEncoded>").expect("encoded") + "</AttachmentEncoded>".len();
        valid[start..end].to_owned()
    };
    let first_encoded = {
        let start = valid.find("<Attachment>").expect("attachment");
        let end = valid.find("</Attachment>").expect("attachment") + "</Attachment>".len();
        valid[start..end].to_owned()
    };
    let business_type = tag("BussinessDocType", "0");
    let other = "000.00.00.G12,2026/11/02,55/BTC-TCT";
    let own = "000.00.00.G22,2026/11/02,7800/VPCP-TTĐT";
    let long = |n: usize| "ệ".repeat(n);
    let ns = "http://www.mic.gov.vn/TBT/QCVN_102_2016";
    let certificate_2015 = common::certificate(2010, 2015);
    let root = format!("<edXML xmlns=\"{ns}\">");
    vec![
        // Form: XML itself.
        ("another namespace", vec![r(&root, "<edXML xmlns=\"urn:other\">")], "edXML"),
        ("another root", vec![r(&root, &format!("<Document xmlns=\"{ns}\">")), r("</edXML>\n", "</Document>\n")], "edXML"),
        ("a DOCTYPE", vec![r("?>\n", "?>\n<!DOCTYPE edXML>\n")], "edXML"),
        ("an XML bomb", vec![r("?>\n", "?>\n<!DOCTYPE edXML [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">]>\n"), r(SUBJECT, "&c;")], "edXML"),
        ("an external entity", vec![r("?>\n", "?>\n<!DOCTYPE edXML [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>\n"), r(SUBJECT, "&x;")], "edXML"),
        ("an undeclared entity", vec![r(SUBJECT, "&trichyeu;")], "edXML"),
        ("an unclosed element", vec![r("</edXML:Subject>", "")], "edXML"),
        ("a mismatched end tag", vec![r("</edXML:Subject>", "</edXML:Subjet>")], "edXML"),
        ("a declared encoding other than UTF-8", vec![r("encoding=\"UTF-8\"", "encoding=\"windows-1258\"")], "edXML"),
        ("an undeclared prefix", vec![r("<edXML:Subject>", "<x:Subject>"), r("</edXML:Subject>", "</x:Subject>")], "edXML"),
        ("text outside the root", vec![r("</edXML>\n", "</edXML>\nvăn bản\n")], "edXML"),
        // Form: elements.
        ("no envelope", vec![r("<edXML:edXMLEnvelope ", "<edXML:Envelope "), r("</edXML:edXMLEnvelope>", "</edXML:Envelope>")], "edXMLEnvelope"),
        ("no header", vec![r("<edXML:edXMLHeader>", "<edXML:Header>"), r("</edXML:edXMLHeader>", "</edXML:Header>")], "edXMLHeader"),
        ("no MessageHeader", vec![r("<edXML:MessageHeader>", "<edXML:Message>"), r("</edXML:MessageHeader>", "</edXML:Message>")], "MessageHeader"),
        ("an unknown element", vec![r("<edXML:Subject>", "<edXML:Foo>1</edXML:Foo><edXML:Subject>")], "MessageHeader/Foo"),
        ("an element of another namespace", vec![r("<edXML:Subject>", "<x:Note xmlns:x=\"urn:x\">1</x:Note><edXML:Subject>")], "MessageHeader/Note"),
        ("an unknown element at the root", vec![r("<AttachmentEncoded>", "<Extra>1</Extra><AttachmentEncoded>")], "Extra"),
        ("an unknown element in OtherInfo", vec![r("<edXML:Priority>", "<edXML:Urgency>1</edXML:Urgency><edXML:Priority>")], "MessageHeader/OtherInfo/Urgency"),
        ("an unknown element in the trace", vec![r("<edXML:TraceHeader>", "<edXML:Hop/><edXML:TraceHeader>")], "TraceHeaderList/Hop"),
        ("an unknown element in Bussiness", vec![r("<edXML:Paper>", "<edXML:Papers>0</edXML:Papers><edXML:Paper>")], "TraceHeaderList/Bussiness/Papers"),
        ("an unknown element in a manifest reference", vec![r("<edXML:ContentId>cid:1</edXML:ContentId>", "<edXML:ContentId>cid:1</edXML:ContentId><edXML:Size>19</edXML:Size>")], "edXMLBody/edXMLManifest/Reference[1]/Size"),
        ("a signature in another namespace", vec![r("<Signature xmlns=\"http://www.w3.org/2000/09/xmldsig#\">", "<Signature xmlns=\"urn:sig\">")], "Signature"),
        ("Subject twice", vec![r("<edXML:Subject>", &format!("{}<edXML:Subject>", tag("Subject", "Lần hai")))], "MessageHeader/Subject"),
        ("Code twice", vec![r("<edXML:Code>", "<edXML:Code><edXML:CodeNumber>1</edXML:CodeNumber></edXML:Code><edXML:Code>")], "MessageHeader/Code"),
        ("CodeNumber twice", vec![r(&tag("CodeNumber", "7816"), &format!("{}{}", tag("CodeNumber", "7816"), tag("CodeNumber", "7817")))], "MessageHeader/Code/CodeNumber"),
        ("no From", vec![r(&from_block, "")], "MessageHeader/From/OrganId"),
        ("no To", vec![r(&to_blocks, "")], "MessageHeader/To"),
        ("no Subject", vec![drop_element("Subject", SUBJECT)], "MessageHeader/Subject"),
        ("an empty Subject", vec![set("Subject", SUBJECT, "  ")], "MessageHeader/Subject"),
        ("a Subject holding an element", vec![set("Subject", SUBJECT, "<edXML:Text>x</edXML:Text>")], "MessageHeader/Subject"),
        ("a Subject too long", vec![set("Subject", SUBJECT, &long(2_001))], "MessageHeader/Subject"),
        ("a control character in Subject", vec![set("Subject", SUBJECT, "Về việc&#x1B;[2J")], "MessageHeader/Subject"),
        ("text inside Code", vec![r("<edXML:Code>", "<edXML:Code>7816/VPCP")], "MessageHeader/Code"),
        ("no TypeName", vec![drop_element("TypeName", "Công văn")], "MessageHeader/DocumentType/TypeName"),
        ("OrganName too long", vec![set("OrganName", "Văn phòng Chính phủ", &long(501))], "MessageHeader/From/OrganName"),
        ("a Content too long", vec![set("Content", "Đề nghị các cơ quan hoàn thành kết nối trước ngày 30/11.", &long(20_001))], "MessageHeader/Content"),
        ("an e-mail without @", vec![r("<edXML:Email>vanthu@example.gov.vn</edXML:Email>", "<edXML:Email>vanthu.example.gov.vn</edXML:Email>")], "MessageHeader/From/Email"),
        ("an e-mail with a space", vec![r("<edXML:Email>vanthu@example.gov.vn</edXML:Email>\n          <edXML:Telephone>024 3825 8261</edXML:Telephone>\n          <edXML:Fax>024 3825 8262</edXML:Fax>\n          <edXML:Website>https://example.gov.vn</edXML:Website>\n        </edXML:From>", "<edXML:Email>van thu@example.gov.vn</edXML:Email></edXML:From>")], "MessageHeader/From/Email"),
        ("a recipient named twice", vec![set("OrganId", "000.00.00.G12", "000.00.00.H41")], "MessageHeader/To[2]/OrganId"),
        ("the sender as recipient", vec![r("<edXML:To>\n          <edXML:OrganId>000.00.00.H41</edXML:OrganId>", "<edXML:To>\n          <edXML:OrganId>000.00.00.G22</edXML:OrganId>")], "MessageHeader/To[1]/OrganId"),
        ("an empty place", vec![set("Place", "Như trên", "")], "MessageHeader/ToPlaces/Place[1]"),
        ("a new document naming a document", vec![r(&business_type, &format!("{business_type}{}", tag("DocumentId", own)))], "TraceHeaderList/Bussiness/DocumentId"),
        ("a revoke naming nothing", vec![set("BussinessDocType", "0", "1")], "TraceHeaderList/Bussiness/DocumentId"),
        ("an update naming nothing", vec![set("BussinessDocType", "0", "2")], "TraceHeaderList/Bussiness/DocumentId"),
        ("a business reason too long", vec![set("BussinessDocReason", "Văn bản điện tử mới", &long(501))], "TraceHeaderList/Bussiness/BussinessDocReason"),
        ("a staff e-mail wrong", vec![set("Email", "binh@example.gov.vn", "binh@")], "TraceHeaderList/Bussiness/StaffInfo/Email"),
        // Format.
        ("an ISO promulgation date", vec![set("PromulgationDate", "2026/11/20", "2026-11-20")], "MessageHeader/PromulgationInfo/PromulgationDate"),
        ("a day-first promulgation date", vec![set("PromulgationDate", "2026/11/20", "20/11/2026")], "MessageHeader/PromulgationInfo/PromulgationDate"),
        ("30 February", vec![set("PromulgationDate", "2026/11/20", "2026/02/30")], "MessageHeader/PromulgationInfo/PromulgationDate"),
        ("a promulgation date in the future", vec![set("PromulgationDate", "2026/11/20", "2027/01/01")], "MessageHeader/PromulgationInfo/PromulgationDate"),
        ("a promulgation date before 1945", vec![set("PromulgationDate", "2026/11/20", "1900/01/01")], "MessageHeader/PromulgationInfo/PromulgationDate"),
        ("no promulgation date", vec![drop_element("PromulgationDate", "2026/11/20")], "MessageHeader/PromulgationInfo/PromulgationDate"),
        ("a promulgation date without padding", vec![set("PromulgationDate", "2026/11/20", "2026/11/2")], "MessageHeader/PromulgationInfo/PromulgationDate"),
        ("a due date before promulgation", vec![set("DueDate", "2026/11/30", "2026/11/01")], "MessageHeader/DueDate"),
        ("a due date not a date", vec![set("DueDate", "2026/11/30", "cuối tháng")], "MessageHeader/DueDate"),
        ("a due date twenty years away", vec![set("DueDate", "2026/11/30", "2046/11/30")], "MessageHeader/DueDate"),
        ("a Type in words", vec![set("Type", "1", "Công văn")], "MessageHeader/DocumentType/Type"),
        ("a negative Type", vec![set("Type", "1", "-1")], "MessageHeader/DocumentType/Type"),
        ("a TypeDetail not a number", vec![set("TypeDetail", "0", "x")], "MessageHeader/DocumentType/TypeDetail"),
        ("a Priority of 9", vec![set("Priority", "1", "9")], "MessageHeader/OtherInfo/Priority"),
        ("a Priority in words", vec![set("Priority", "1", "khẩn")], "MessageHeader/OtherInfo/Priority"),
        ("a PageAmount below zero", vec![set("PageAmount", "3", "-3")], "MessageHeader/OtherInfo/PageAmount"),
        ("a PageAmount too large", vec![set("PageAmount", "3", "99999999999")], "MessageHeader/OtherInfo/PageAmount"),
        ("a PromulgationAmount in words", vec![set("PromulgationAmount", "2", "hai")], "MessageHeader/OtherInfo/PromulgationAmount"),
        ("a Direction neither true nor false", vec![set("Direction", "false", "không")], "MessageHeader/OtherInfo/Direction"),
        ("a SteeringType of 7", vec![set("SteeringType", "1", "7")], "MessageHeader/SteeringType"),
        ("a SteeringType in words", vec![set("SteeringType", "1", "chỉ đạo")], "MessageHeader/SteeringType"),
        ("a BussinessDocType of 5", vec![set("BussinessDocType", "0", "5")], "TraceHeaderList/Bussiness/BussinessDocType"),
        ("a BussinessDocType in words", vec![set("BussinessDocType", "0", "mới")], "TraceHeaderList/Bussiness/BussinessDocType"),
        ("a Paper of 2", vec![set("Paper", "0", "2")], "TraceHeaderList/Bussiness/Paper"),
        ("a trace timestamp without time", vec![set("Timestamp", "2026/11/20 09:15:00", "2026/11/20")], "TraceHeaderList/TraceHeader[1]/Timestamp"),
        ("a trace timestamp in ISO", vec![set("Timestamp", "2026/11/20 09:15:00", "2026-11-20T09:15:00Z")], "TraceHeaderList/TraceHeader[1]/Timestamp"),
        // Notation and codes.
        ("a number with letters", vec![set("CodeNumber", "7816", "78a")], "MessageHeader/Code/CodeNumber"),
        ("no number", vec![set("CodeNumber", "7816", "")], "MessageHeader/Code/CodeNumber"),
        ("a number of eleven digits", vec![set("CodeNumber", "7816", "12345678901")], "MessageHeader/Code/CodeNumber"),
        ("a number with a slash", vec![set("CodeNumber", "7816", "7816/VPCP")], "MessageHeader/Code/CodeNumber"),
        ("no notation", vec![set("CodeNotation", "VPCP-TTĐT", "")], "MessageHeader/Code/CodeNotation"),
        ("a notation with a space", vec![set("CodeNotation", "VPCP-TTĐT", "VPCP TTĐT")], "MessageHeader/Code/CodeNotation"),
        ("a notation with a slash", vec![set("CodeNotation", "VPCP-TTĐT", "VPCP/TTĐT")], "MessageHeader/Code/CodeNotation"),
        ("a notation with a comma", vec![set("CodeNotation", "VPCP-TTĐT", "VPCP,TTĐT")], "MessageHeader/Code/CodeNotation"),
        ("a notation starting with a dash", vec![set("CodeNotation", "VPCP-TTĐT", "-VPCP")], "MessageHeader/Code/CodeNotation"),
        ("a notation of digits only", vec![set("CodeNotation", "VPCP-TTĐT", "2026")], "MessageHeader/Code/CodeNotation"),
        ("a short sender code", vec![r(&from_block, &from_block.replace("000.00.00.G22", "G22"))], "MessageHeader/From/OrganId"),
        ("a sender code in lower case", vec![r(&from_block, &from_block.replace("000.00.00.G22", "000.00.00.g22"))], "MessageHeader/From/OrganId"),
        ("a sender code with a gap", vec![r(&from_block, &from_block.replace("000.00.00.G22", "000.05.00.G22"))], "MessageHeader/From/OrganId"),
        ("a sender code naming no body", vec![r(&from_block, &from_block.replace("000.00.00.G22", "000.00.00.G00"))], "MessageHeader/From/OrganId"),
        ("an X-Road address as recipient", vec![set("OrganId", "000.00.00.H41", "VN:GOV:000.00.00.H41:service")], "MessageHeader/To[1]/OrganId"),
        ("an empty recipient code", vec![set("OrganId", "000.00.00.G12", "")], "MessageHeader/To[2]/OrganId"),
        ("a document id that is not the fields'", vec![set("DocumentId", "000.00.00.G22,2026/11/20,7816/VPCP-TTĐT", "000.00.00.G22,2026/11/20,7817/VPCP-TTĐT")], "MessageHeader/DocumentId"),
        ("a document id with another date", vec![set("DocumentId", "000.00.00.G22,2026/11/20,7816/VPCP-TTĐT", "000.00.00.G22,2026/11/21,7816/VPCP-TTĐT")], "MessageHeader/DocumentId"),
        ("an answered id ill-formed", vec![set("DocumentId", "000.00.00.H41,2026/11/01,120/UBND-VX", "120/UBND-VX")], "MessageHeader/ResponseFor[1]/DocumentId"),
        ("an answered id missing", vec![drop_element("DocumentId", "000.00.00.H41,2026/11/01,120/UBND-VX")], "MessageHeader/ResponseFor[1]/DocumentId"),
        ("an answered code not the id's", vec![set("Code", "120/UBND-VX", "121/UBND-VX")], "MessageHeader/ResponseFor[1]/Code"),
        ("an answered organ not the id's", vec![r("<edXML:ResponseFor>\n          <edXML:OrganId>000.00.00.H41</edXML:OrganId>", "<edXML:ResponseFor>\n          <edXML:OrganId>000.00.00.H14</edXML:OrganId>")], "MessageHeader/ResponseFor[1]/OrganId"),
        ("an answered date not the id's", vec![set("PromulgationDate", "2026/11/01", "2026/11/02")], "MessageHeader/ResponseFor[1]/PromulgationDate"),
        ("a trace organ ill-formed", vec![r("<edXML:TraceHeader>\n          <edXML:OrganId>000.00.00.G22</edXML:OrganId>", "<edXML:TraceHeader>\n          <edXML:OrganId>VPCP</edXML:OrganId>")], "TraceHeaderList/TraceHeader[1]/OrganId"),
        ("a replaced id ill-formed", vec![set("BussinessDocType", "0", "3"), r("<edXML:Paper>", "<edXML:ReplacementInfoList><edXML:ReplacementInfo><edXML:DocumentId>7800/VPCP</edXML:DocumentId></edXML:ReplacementInfo></edXML:ReplacementInfoList><edXML:Paper>")], "TraceHeaderList/Bussiness/ReplacementInfoList/ReplacementInfo[1]/DocumentId"),
        ("a replaced-for organ ill-formed", vec![set("BussinessDocType", "0", "3"), r("<edXML:Paper>", &format!("<edXML:ReplacementInfoList><edXML:ReplacementInfo><edXML:DocumentId>{own}</edXML:DocumentId><edXML:OrganIdList><edXML:OrganId>H41</edXML:OrganId></edXML:OrganIdList></edXML:ReplacementInfo></edXML:ReplacementInfoList><edXML:Paper>"))], "TraceHeaderList/Bussiness/ReplacementInfoList/ReplacementInfo[1]/OrganIdList/OrganId[1]"),
        ("an update receiver ill-formed", vec![set("BussinessDocType", "0", "2"), r("<edXML:Paper>", &format!("{}<edXML:BussinessDocumentInfo><edXML:DocumentInfo>1</edXML:DocumentInfo><edXML:ReceiverList><edXML:Receiver><edXML:ReceiverType>1</edXML:ReceiverType><edXML:OrganId>H14</edXML:OrganId></edXML:Receiver></edXML:ReceiverList></edXML:BussinessDocumentInfo><edXML:Paper>", tag("DocumentId", own)))], "TraceHeaderList/Bussiness/BussinessDocumentInfo/ReceiverList/Receiver[1]/OrganId"),
        // Authority.
        ("no signer", vec![r(&signer_block, "")], "MessageHeader/SignerInfo"),
        ("a signer without a name", vec![set("FullName", "Nguyễn Văn An", "")], "MessageHeader/SignerInfo/FullName"),
        ("a signer without a position", vec![drop_element("Position", "Phó Chủ nhiệm")], "MessageHeader/SignerInfo/Position"),
        ("another agency as sender", vec![r(&from_block, &from_block.replace("000.00.00.G22", "000.00.00.G17"))], "MessageHeader/From/OrganId"),
        ("a revoke of another agency's document", vec![set("BussinessDocType", "0", "1"), r(&business_type.replace('0', "1"), &format!("{}{}", business_type.replace('0', "1"), tag("DocumentId", other)))], "TraceHeaderList/Bussiness/DocumentId"),
        ("a replace of another agency's document", vec![set("BussinessDocType", "0", "3"), r("<edXML:Paper>", &format!("<edXML:ReplacementInfoList><edXML:ReplacementInfo><edXML:DocumentId>{other}</edXML:DocumentId></edXML:ReplacementInfo></edXML:ReplacementInfoList><edXML:Paper>"))], "TraceHeaderList/Bussiness/ReplacementInfoList/ReplacementInfo[1]/DocumentId"),
        // Signature.
        ("an empty signature value", vec![r("<SignatureValue>R2JWYjhuOStxRnh6NDY2QWcwc2JwVmRMUHMyUjArOUpCZWtwMTJVeWFy</SignatureValue>", "<SignatureValue></SignatureValue>")], "Signature/SignatureValue"),
        ("a signature value not base64", vec![r("<SignatureValue>R2JWYjhuOStxRnh6NDY2QWcwc2JwVmRMUHMyUjArOUpCZWtwMTJVeWFy</SignatureValue>", "<SignatureValue>chữ ký</SignatureValue>")], "Signature/SignatureValue"),
        ("a certificate not base64", vec![r(&certificate, "<X509Certificate>MIIFqTCCBJG!</X509Certificate>")], "Signature/KeyInfo/X509Data/X509Certificate"),
        ("a certificate cut short", vec![r(&certificate, "<X509Certificate>MIIFqTCCBJG=</X509Certificate>")], "Signature/KeyInfo/X509Data/X509Certificate"),
        ("no certificate", vec![r(&certificate, "")], "Signature/KeyInfo/X509Data/X509Certificate"),
        ("a certificate expired before the document", vec![r(&certificate, &format!("<X509Certificate>{certificate_2015}</X509Certificate>"))], "Signature/KeyInfo/X509Data/X509Certificate"),
        ("an unknown signature method", vec![r("xmldsig-more#rsa-sha256", "xmldsig-more#rsa-md5")], "Signature/SignedInfo/SignatureMethod"),
        ("a signature method without algorithm", vec![r("<SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256\"/>", "<SignatureMethod/>")], "Signature/SignedInfo/SignatureMethod"),
        ("an unknown canonicalization", vec![r("REC-xml-c14n-20010315\"/>", "REC-xml-c14n-19990101\"/>")], "Signature/SignedInfo/CanonicalizationMethod"),
        ("an empty digest", vec![r("<DigestValue>q1MKE+RZFJgrefm34/uplM/R8/si9xzqGvvwK0YMbR0=</DigestValue>", "<DigestValue/>")], "Signature/SignedInfo/Reference[1]/DigestValue"),
        ("an unknown digest method", vec![r("xmlenc#sha256\"/>", "xmlenc#md5\"/>")], "Signature/SignedInfo/Reference[1]/DigestMethod"),
        ("a signature referencing nothing", vec![r(&reference_block, "")], "Signature/SignedInfo/Reference"),
        ("a signature holding text", vec![r("<SignedInfo>", "<SignedInfo>đã ký")], "Signature/SignedInfo"),
        // Attachments.
        ("no attachment at all", vec![r(&manifest, ""), r(&encoded, "")], "edXMLBody/edXMLManifest/Reference"),
        ("an attachment in the manifest only", vec![r(&first_encoded, "")], "edXMLBody/edXMLManifest/Reference[1]/AttachmentName"),
        ("attachments carried without a manifest", vec![r(&manifest, "")], "AttachmentEncoded/Attachment[1]/ContentId"),
        ("content not base64", vec![r("JVBERi0xLjcKJSB2YW4gYmFuCg==", "%PDF-1.7 văn bản")], "AttachmentEncoded/Attachment[1]/ContentTransferEncoded"),
        ("content missing", vec![r("<ContentTransferEncoded>JVBERi0xLjcKJSB2YW4gYmFuCg==</ContentTransferEncoded>", "")], "AttachmentEncoded/Attachment[1]/ContentTransferEncoded"),
        ("an empty attachment", vec![r("JVBERi0xLjcKJSB2YW4gYmFuCg==", "")], "edXMLBody/edXMLManifest/Reference[1]"),
        ("content for an unknown id", vec![r("<ContentId>cid:1</ContentId>", "<ContentId>cid:9</ContentId>")], "AttachmentEncoded/Attachment[1]/ContentId"),
        ("content carried twice", vec![r(&first_encoded, &format!("{first_encoded}{first_encoded}"))], "AttachmentEncoded/Attachment[2]/ContentId"),
        ("names differing between manifest and content", vec![r("<AttachmentName>7816-VPCP-TTDT.pdf</AttachmentName>", "<AttachmentName>van-ban.pdf</AttachmentName>")], "AttachmentEncoded/Attachment[1]/AttachmentName"),
        ("an attachment named twice", vec![r("phu-luc-1.docx", "7816-VPCP-TTDT.pdf"), r("phu-luc-1.docx", "7816-VPCP-TTDT.pdf")], "edXMLBody/edXMLManifest/Reference[2]/AttachmentName"),
        ("an attachment name with a path", vec![r("7816-VPCP-TTDT.pdf", "../../etc/passwd"), r("7816-VPCP-TTDT.pdf", "../../etc/passwd")], "edXMLBody/edXMLManifest/Reference[1]/AttachmentName"),
        ("a hidden attachment name", vec![r("7816-VPCP-TTDT.pdf", ".vanban.pdf"), r("7816-VPCP-TTDT.pdf", ".vanban.pdf")], "edXMLBody/edXMLManifest/Reference[1]/AttachmentName"),
        ("the reserved attachment name", vec![r("7816-VPCP-TTDT.pdf", "edxml-extra.json"), r("7816-VPCP-TTDT.pdf", "edxml-extra.json")], "edXMLBody/edXMLManifest/Reference[1]/AttachmentName"),
        ("an empty attachment name", vec![r("<edXML:AttachmentName>7816-VPCP-TTDT.pdf</edXML:AttachmentName>", "<edXML:AttachmentName></edXML:AttachmentName>"), r("<AttachmentName>7816-VPCP-TTDT.pdf</AttachmentName>", "")], "edXMLBody/edXMLManifest/Reference[1]/AttachmentName"),
        ("an attachment name too long", vec![r("7816-VPCP-TTDT.pdf", &format!("{}.pdf", "a".repeat(300))), r("7816-VPCP-TTDT.pdf", &format!("{}.pdf", "a".repeat(300)))], "edXMLBody/edXMLManifest/Reference[1]/AttachmentName"),
        ("a media type without subtype", vec![r("<edXML:ContentType>application/pdf</edXML:ContentType>", "<edXML:ContentType>pdf</edXML:ContentType>")], "edXMLBody/edXMLManifest/Reference[1]/ContentType"),
        ("no media type", vec![r("<edXML:ContentType>application/pdf</edXML:ContentType>", "")], "edXMLBody/edXMLManifest/Reference[1]/ContentType"),
        ("no content id in the manifest", vec![r("<edXML:ContentId>cid:1</edXML:ContentId>", "")], "edXMLBody/edXMLManifest/Reference[1]/ContentId"),
        ("a content id twice in the manifest", vec![r("<edXML:ContentId>cid:2</edXML:ContentId>", "<edXML:ContentId>cid:1</edXML:ContentId>")], "edXMLBody/edXMLManifest/Reference[2]/ContentId"),
        ("a manifest holding text", vec![r("<edXML:edXMLManifest version=\"1.0\">", "<edXML:edXMLManifest version=\"1.0\">2 tệp")], "edXMLBody/edXMLManifest"),
    ]
}

fn status_rows() -> Vec<Row> {
    vec![
        (
            "a status code of one digit",
            vec![set("StatusCode", "03", "3")],
            "MessageHeader/StatusCode",
        ),
        (
            "a status code not in the list",
            vec![set("StatusCode", "03", "07")],
            "MessageHeader/StatusCode",
        ),
        (
            "a status code in words",
            vec![set("StatusCode", "03", "đã tiếp nhận")],
            "MessageHeader/StatusCode",
        ),
        (
            "a recall requested as a status",
            vec![set("StatusCode", "03", "13")],
            "MessageHeader/StatusCode",
        ),
        (
            "a rejection without a reason",
            vec![
                set("StatusCode", "03", "02"),
                drop_element("Description", "Văn thư đã tiếp nhận"),
            ],
            "MessageHeader/Description",
        ),
        (
            "a refused recall without a reason",
            vec![
                set("StatusCode", "03", "16"),
                set("Description", "Văn thư đã tiếp nhận", " "),
            ],
            "MessageHeader/Description",
        ),
        (
            "a reason too long",
            vec![set(
                "Description",
                "Văn thư đã tiếp nhận",
                &"ệ".repeat(2_001),
            )],
            "MessageHeader/Description",
        ),
        (
            "a document id ill-formed",
            vec![set(
                "DocumentId",
                "000.00.00.G22,2026/11/20,7816/VPCP-TTĐT",
                "7816/VPCP-TTĐT",
            )],
            "MessageHeader/ResponseFor/DocumentId",
        ),
        (
            "an answered code not the id's",
            vec![set("Code", "7816/VPCP-TTĐT", "7817/VPCP-TTĐT")],
            "MessageHeader/ResponseFor/Code",
        ),
        (
            "a reporting agency ill-formed",
            vec![set("OrganId", "000.00.00.H41", "H41")],
            "MessageHeader/From/OrganId",
        ),
        (
            "another agency reporting",
            vec![set("OrganId", "000.00.00.H41", "000.00.00.G12")],
            "MessageHeader/From/OrganId",
        ),
        (
            "a timestamp without seconds",
            vec![set("Timestamp", "2026/11/21 08:00:00", "2026/11/21 08:00")],
            "MessageHeader/Timestamp",
        ),
        (
            "an unknown element",
            vec![r(
                "<edXML:StatusCode>",
                "<edXML:StatusName>x</edXML:StatusName><edXML:StatusCode>",
            )],
            "MessageHeader/StatusName",
        ),
        (
            "a staff e-mail wrong",
            vec![set("Email", "vanthu@nghean.gov.vn", "vanthu")],
            "MessageHeader/StaffInfo/Email",
        ),
        (
            "StatusCode twice",
            vec![r(
                "<edXML:StatusCode>",
                "<edXML:StatusCode>05</edXML:StatusCode><edXML:StatusCode>",
            )],
            "MessageHeader/StatusCode",
        ),
    ]
}

fn valid_status() -> String {
    let status = truc_edxml::StatusMessage {
        response_for: truc_edxml::envelope::response_for("000.00.00.G22,2026/11/20,7816/VPCP-TTĐT"),
        from: truc_edxml::Organization {
            organ_id: "000.00.00.H41".into(),
            organ_name: "UBND tỉnh Nghệ An".into(),
            ..truc_edxml::Organization::default()
        },
        status_code: "03".into(),
        description: "Văn thư đã tiếp nhận".into(),
        timestamp: "2026/11/21 08:00:00".into(),
        staff_info: Some(truc_edxml::StaffInfo {
            department: "Văn phòng UBND tỉnh".into(),
            staff: "Lê Văn Cường".into(),
            email: "vanthu@nghean.gov.vn".into(),
            mobile: "0912000002".into(),
        }),
    };
    String::from_utf8(truc_edxml::write_status(&status).unwrap()).unwrap()
}

fn run(valid: &str, rows: Vec<Row>, context: &CheckContext) -> usize {
    let mut failures = Vec::new();
    let count = rows.len();
    for (what, replacements, element) in rows {
        let mut text = valid.to_owned();
        for (from, to) in &replacements {
            assert!(
                text.contains(from.as_str()),
                "{what}: '{from}' is not in the file"
            );
            text = text.replacen(from.as_str(), to, 1);
        }
        match read_edxml(text.as_bytes(), context) {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(refused) => {
                let errors: Vec<&Problem> =
                    refused.problems().iter().filter(|p| p.is_error()).collect();
                if !errors.iter().any(|p| p.element.starts_with(element)) {
                    failures.push(format!("{what}: expected {element}, got {errors:#?}"));
                }
                for problem in &errors {
                    assert!(!problem.reason_en.is_empty() && !problem.reason_vi.is_empty());
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    count
}

#[test]
fn the_valid_files_pass() {
    let valid =
        String::from_utf8(truc_edxml::write_package(&common::valid_package()).unwrap()).unwrap();
    let checked = read_edxml(valid.as_bytes(), &common::context()).unwrap();
    assert!(checked.warnings.is_empty(), "{:?}", checked.warnings);
    let status_context = CheckContext::new(common::today(), Some("000.00.00.H41".parse().unwrap()));
    read_edxml(valid_status().as_bytes(), &status_context).unwrap();
}

#[test]
fn every_invalid_package_is_refused_naming_its_element() {
    let valid =
        String::from_utf8(truc_edxml::write_package(&common::valid_package()).unwrap()).unwrap();
    let documents = run(&valid, document_rows(&valid), &common::context());
    let status_context = CheckContext::new(common::today(), Some("000.00.00.H41".parse().unwrap()));
    let statuses = run(&valid_status(), status_rows(), &status_context);
    assert!(documents + statuses >= 100, "{documents} + {statuses} rows");
}

#[test]
fn a_package_without_signature_passes_with_a_warning() {
    let mut package = common::valid_package();
    package.signature = None;
    let bytes = truc_edxml::write_package(&package).unwrap();
    let checked = read_edxml(&bytes, &common::context()).unwrap();
    assert_eq!(checked.warnings.len(), 1);
    assert_eq!(checked.warnings[0].element, "Signature");
    assert_eq!(checked.warnings[0].category, Category::Signature);
}

#[test]
fn an_oversize_file_is_refused_before_it_is_read() {
    let valid = truc_edxml::write_package(&common::valid_package()).unwrap();
    let mut context = common::context();
    context.edxml_limits.package_bytes_max = valid.len() - 1;
    let refused = read_edxml(&valid, &context).unwrap_err();
    assert!(
        refused.problems()[0].reason_en.contains("limit"),
        "{refused}"
    );
}

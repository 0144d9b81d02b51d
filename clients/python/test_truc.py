"""The Python client against a real `truc hub` process over loopback mutual TLS.

run_test.py starts the hub and sets TRUC_HUB (its address), TRUC_CERTS (a
fresh development PKI in which these agencies hold P-256 keys) and TRUC_REPO;
the signing-form test needs only TRUC_REPO. In its mixed PKI it also sends a
document from an Ed25519 agency with `truc send` and names it in
TRUC_ED25519_SENDER and TRUC_ED25519_ATTACHMENT.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import socket
import time

import grpc
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import truc_client
from truc_client import Agency, Attachment, VerificationError
from truc.v1 import truc_pb2 as pb

SENDER = "000.00.00.G22"
RECIPIENT = "000.00.00.H41"
REPO = os.environ.get("TRUC_REPO", os.path.join(os.path.dirname(__file__), "..", ".."))


def signing_example() -> dict[str, str]:
    """The `name = value` block of docs/SIGNING.md; indented lines continue a value."""
    with open(os.path.join(REPO, "docs", "SIGNING.md"), encoding="utf-8") as file:
        text = file.read()
    block = text.split("<!-- signing-example:begin -->")[1].split("<!-- signing-example:end -->")[0]
    values: dict[str, str] = {}
    name = None
    for line in block.splitlines():
        if line.startswith("```") or not line.strip():
            continue
        if line.startswith(" "):
            values[name] += line.strip()
        else:
            name, value = line.split(" = ", 1)
            values[name] = value
    return values


def test_the_signing_forms_reproduce_the_worked_example_of_the_docs():
    values = signing_example()
    raw = lambda name: bytes.fromhex(values[name])  # noqa: E731
    data = b"%PDF-1.7 test"
    assert hashlib.sha256(data).digest() == raw("attachment_sha256")
    header = pb.EnvelopeHeader(
        to=[pb.Organ(organ_id=RECIPIENT)],
        code=pb.DocumentCode(number="7816", notation="VPCP-TTĐT"),
        promulgation=pb.Promulgation(place="Hà Nội", date="2024-05-06"),
        subject="Về việc thử nghiệm",
        attachments=[
            pb.AttachmentInfo(
                name="vanban.pdf",
                media_type="application/pdf",
                size_bytes=len(data),
                sha256=hashlib.sha256(data).digest(),
            )
        ],
    )
    getattr(header, "from").CopyFrom(pb.Organ(organ_id=SENDER, organ_name="Văn phòng Chính phủ"))
    header_bytes = header.SerializeToString()
    assert header_bytes == raw("header_bytes")
    message = truc_client.envelope_signing_bytes(header_bytes)
    assert message == raw("envelope_message")
    assert hashlib.sha256(message).digest() == raw("envelope_message_sha256")

    ed_key = ed25519.Ed25519PrivateKey.from_private_bytes(raw("ed25519_private_seed"))
    assert ed_key.public_key().public_bytes_raw() == raw("ed25519_public_key")
    assert truc_client.sign(ed_key, message) == raw("ed25519_envelope_signature")

    p256_key = ec.derive_private_key(int(values["p256_private_scalar"], 16), ec.SECP256R1())
    p256_public = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), raw("p256_public_key")
    )
    assert p256_key.public_key() == p256_public
    truc_client.verify(p256_public, message, raw("p256_envelope_signature"))
    fresh = truc_client.sign(p256_key, message)
    truc_client.verify(p256_public, message, fresh)
    # DER, not the 64-byte r || s form.
    r, s = decode_dss_signature(fresh)
    assert 0 < r and 0 < s and fresh[0] == 0x30
    with pytest.raises(InvalidSignature):
        truc_client.verify(p256_public, message + b"\0", fresh)

    document_id = truc_client.document_id_of(header)
    assert document_id == values["document_id"]
    document_message = truc_client.document_signing_bytes(
        document_id, [hashlib.sha256(data).digest()]
    )
    assert document_message == raw("document_message")
    assert truc_client.sign(ed_key, document_message) == raw("ed25519_document_signature")


def agency(code: str, hubs=None) -> Agency:
    certs = os.environ["TRUC_CERTS"]
    return Agency.from_files(
        hubs or os.environ["TRUC_HUB"],
        os.path.join(certs, "ca.crt"),
        os.path.join(certs, "agencies", f"{code}.crt"),
        os.path.join(certs, "agencies", f"{code}.key"),
    )


needs_hub = pytest.mark.skipif("TRUC_HUB" not in os.environ, reason="run_test.py starts the hub")


def document_id(number: int) -> str:
    return f"{SENDER},{truc_client.vietnam_today().replace('-', '/')},{number}/VPCP-PY"


def wait_for_status(agency: Agency, document_id: str, status: int) -> None:
    """Acknowledgements get no answer; the hub records them in its own time, which GetStatus shows."""
    deadline = time.monotonic() + 10
    while True:
        [delivery] = agency.get_status(document_id).recipients
        if delivery.current == status:
            return
        assert time.monotonic() < deadline, f"{document_id} is still {delivery.current}"
        time.sleep(0.05)


def next_delivery(stream: truc_client.DeliveryStream) -> pb.Delivery:
    """Skips status notices (acknowledging them) until a delivery comes."""
    while True:
        message = stream.next()
        if message.HasField("delivery"):
            return message.delivery
        stream.ack([message.notice.queue_seq])


@pytest.mark.skipif(
    "TRUC_ED25519_SENDER" not in os.environ,
    reason="run_test.py sends such a document with `truc send` in its mixed PKI",
)
def test_a_document_an_ed25519_agency_signed_verifies_in_python():
    ed25519_sender = os.environ["TRUC_ED25519_SENDER"]
    with open(os.environ["TRUC_ED25519_ATTACHMENT"], "rb") as file:
        attachment = file.read()
    with agency(RECIPIENT) as recipient:
        # The Python agency's own key is P-256, under the same Ed25519 CA.
        assert isinstance(recipient.private_key, ec.EllipticCurvePrivateKey)
        with recipient.deliveries() as stream:
            delivery = next_delivery(stream)
            while not delivery.document_id.startswith(ed25519_sender):
                delivery = next_delivery(stream)
            certificate = x509.load_der_x509_certificate(delivery.sender_certificate)
            assert isinstance(certificate.public_key(), ed25519.Ed25519PublicKey)
            assert len(delivery.envelope.signature) == 64
            checked = recipient.verify_delivery(delivery)
            assert checked.sender == ed25519_sender
            assert checked.attachments == [attachment]
            # The hub checked the document's own Ed25519 signature too.
            assert checked.document_signature == pb.DOCUMENT_SIGNATURE_VALID
            stream.ack([delivery.queue_seq])
        wait_for_status(recipient, checked.document_id, pb.STATUS_ARRIVED)
        recipient.move_status(checked.document_id, pb.STATUS_RECEIVED)
        assert recipient.get_status(checked.document_id).recipients[0].current == pb.STATUS_RECEIVED


@needs_hub
def test_a_signed_document_goes_from_one_python_agency_to_another_and_its_statuses_come_back():
    large = Attachment("vanban.pdf", "application/pdf", os.urandom(300_000))
    small = Attachment("phuluc.txt", "text/plain", "Phụ lục kèm theo".encode("utf-8"))
    with agency(SENDER) as sender, agency(RECIPIENT) as recipient:
        assert sender.code == SENDER
        # Over the hub's inline threshold (64 KiB): the recipient fetches it.
        fetched = sender.send(
            [RECIPIENT],
            "101",
            "VPCP-PY",
            "Gửi từ Python, có tệp lớn",
            [large],
            sign_document=True,
            place="Hà Nội",
            from_name="Văn phòng Chính phủ",
        )
        # Small enough to travel inside the delivery.
        inline = sender.send([RECIPIENT], "102", "VPCP-PY", "Gửi từ Python, tệp nhỏ", [small])
        for response, number in [(fetched, 101), (inline, 102)]:
            assert response.document_id == document_id(number)
            assert not response.duplicate
            assert [(r.organ_id, r.accepted) for r in response.recipients] == [(RECIPIENT, True)]
        assert fetched.document_signature == pb.DOCUMENT_SIGNATURE_VALID
        assert inline.document_signature == pb.DOCUMENT_SIGNATURE_ABSENT

        with recipient.deliveries() as stream:
            verified = {}
            while len(verified) < 2:
                delivery = next_delivery(stream)
                assert delivery.recipient == RECIPIENT
                if delivery.document_id not in (fetched.document_id, inline.document_id):
                    continue  # another test's; unacknowledged, it comes again later
                checked = recipient.verify_delivery(delivery)
                assert checked.sender == SENDER
                verified[checked.document_id] = checked
                stream.ack([delivery.queue_seq])
        assert verified[fetched.document_id].attachments == [large.data]
        assert verified[fetched.document_id].document_signature == pb.DOCUMENT_SIGNATURE_VALID
        assert verified[inline.document_id].attachments == [small.data]
        assert verified[inline.document_id].header.subject == "Gửi từ Python, tệp nhỏ"

        # The acknowledgements record "arrived"; then the recipient moves on.
        wait_for_status(sender, fetched.document_id, pb.STATUS_ARRIVED)
        wait_for_status(sender, inline.document_id, pb.STATUS_ARRIVED)
        received = recipient.move_status(fetched.document_id, pb.STATUS_RECEIVED)
        assert received.status == pb.STATUS_RECEIVED and received.actor == RECIPIENT
        completed = recipient.move_status(fetched.document_id, pb.STATUS_COMPLETED)
        assert completed.status == pb.STATUS_COMPLETED
        # Completed is final: the hub refuses anything after it.
        with pytest.raises(grpc.RpcError) as refused:
            recipient.move_status(fetched.document_id, pb.STATUS_PROCESSING)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        status = sender.get_status(fetched.document_id)
        assert status.sender == SENDER
        assert status.document_signature == pb.DOCUMENT_SIGNATURE_VALID
        [delivery_status] = status.recipients
        assert delivery_status.recipient == RECIPIENT
        assert delivery_status.current == pb.STATUS_COMPLETED
        assert [entry.status for entry in delivery_status.history] == [
            pb.STATUS_ARRIVED,
            pb.STATUS_RECEIVED,
            pb.STATUS_COMPLETED,
        ]
        assert {entry.actor for entry in delivery_status.history} == {RECIPIENT}

        # The sender also hears each step on its own delivery stream.
        heard = []
        with sender.deliveries() as stream:
            while pb.STATUS_COMPLETED not in heard:
                message = stream.next()
                assert message.HasField("notice"), message
                if message.notice.document_id == fetched.document_id:
                    assert message.notice.recipient == RECIPIENT
                    heard += [entry.status for entry in message.notice.entries]
                stream.ack([message.notice.queue_seq])
        assert heard == [pb.STATUS_ARRIVED, pb.STATUS_RECEIVED, pb.STATUS_COMPLETED]

        # The same header sent again is the same document, though ECDSA made a new signature.
        again = sender.send(
            [RECIPIENT],
            "101",
            "VPCP-PY",
            "Gửi từ Python, có tệp lớn",
            [large],
            sign_document=True,
            place="Hà Nội",
            from_name="Văn phòng Chính phủ",
        )
        assert again.duplicate and again.accepted_at_unix_ms == fetched.accepted_at_unix_ms


@needs_hub
def test_the_hub_refuses_what_the_signature_does_not_cover_naming_the_field():
    attachment = Attachment("a.pdf", "application/pdf", b"%PDF-1.7 refused")
    with agency(SENDER) as sender:

        def refusal(prepared) -> grpc.RpcError:
            with pytest.raises(grpc.RpcError) as refused:
                sender.send_prepared(prepared)
            return refused.value

        # One byte of the header changed after signing.
        prepared = sender.prepare(
            sender.header([RECIPIENT], "201", "VPCP-PY", "Sửa sau khi ký", [attachment]),
            [attachment],
        )
        tampered = bytearray(prepared.envelope.header)
        tampered[-1] ^= 0x01
        prepared.envelope.header = bytes(tampered)
        error = refusal(prepared)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error.details().startswith("envelope.signature"), error.details()

        # A correct signature in the raw r || s form instead of DER.
        prepared = sender.prepare(
            sender.header([RECIPIENT], "202", "VPCP-PY", "Chữ ký sai dạng", [attachment]),
            [attachment],
        )
        r, s = decode_dss_signature(prepared.envelope.signature)
        prepared.envelope.signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        error = refusal(prepared)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error.details().startswith("envelope.signature"), error.details()

        # Signed correctly, but in another agency's name.
        header = sender.header([SENDER], "203", "VPCP-PY", "Mạo danh", [attachment])
        getattr(header, "from").organ_id = RECIPIENT
        error = refusal(sender.prepare(header, [attachment]))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error.details().startswith("from.organ_id"), error.details()

        # None of them was stored.
        for number in (201, 202):
            with pytest.raises(grpc.RpcError) as missing:
                sender.get_status(document_id(number))
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def self_signed_agency_certificate(code: str) -> bytes:
    """A certificate that names an agency but was made by no axis CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, code)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"urn:truc:agency:{code}")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


@needs_hub
def test_the_recipient_check_catches_a_delivery_changed_in_transit():
    attachment = Attachment("b.pdf", "application/pdf", b"%PDF-1.7 genuine")
    with agency(SENDER) as sender, agency(RECIPIENT) as recipient:
        response = sender.send([RECIPIENT], "301", "VPCP-PY", "Kiểm tra phía nhận", [attachment])
        with recipient.deliveries() as stream:
            while True:
                delivery = next_delivery(stream)
                if delivery.document_id == response.document_id:
                    break
                stream.ack([delivery.queue_seq])
            assert recipient.verify_delivery(delivery).attachments == [attachment.data]

            def header_bit_flipped(d: pb.Delivery) -> None:
                d.envelope.header = d.envelope.header[:-1] + bytes([d.envelope.header[-1] ^ 1])

            def recipients_own_certificate(d: pb.Delivery) -> None:
                # Genuine and of the same CA, but not the key that signed.
                d.sender_certificate = recipient.certificate.public_bytes(
                    serialization.Encoding.DER
                )

            def certificate_of_no_axis_ca(d: pb.Delivery) -> None:
                d.sender_certificate = self_signed_agency_certificate(SENDER)

            def another_document_id(d: pb.Delivery) -> None:
                d.document_id = document_id(302)

            def attachment_byte_changed(d: pb.Delivery) -> None:
                d.inline_attachments[0] = b"%PDF-1.7 GENUINE"

            for change, field_name in [
                (header_bit_flipped, "envelope.signature"),
                (recipients_own_certificate, "envelope.signature"),
                (certificate_of_no_axis_ca, "sender_certificate"),
                (another_document_id, "document_id"),
                (attachment_byte_changed, "attachments[0].sha256"),
            ]:
                changed = pb.Delivery()
                changed.CopyFrom(delivery)
                change(changed)
                with pytest.raises(VerificationError) as failed:
                    recipient.verify_delivery(changed)
                assert failed.value.field == field_name, (change.__name__, failed.value)
            stream.ack([delivery.queue_seq])


def dead_address() -> str:
    """An address nothing listens on: bound, then let go."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def test_hub_addresses_come_in_order_each_once_from_comma_lists():
    assert truc_client.hub_addresses("10.0.0.1:7443") == ["10.0.0.1:7443"]
    assert truc_client.hub_addresses("a:1, b:2,a:1") == ["a:1", "b:2"]
    assert truc_client.hub_addresses(["a:1,b:2", "c:3"]) == ["a:1", "b:2", "c:3"]
    with pytest.raises(ValueError):
        truc_client.hub_addresses(" , ")


@needs_hub
def test_an_agency_given_a_dead_address_first_goes_on_at_the_hub_with_the_same_envelope():
    dead, hub = dead_address(), os.environ["TRUC_HUB"]
    attachment = Attachment("c.pdf", "application/pdf", b"%PDF-1.7 hai dia chi")
    with agency(SENDER) as direct, agency(SENDER, [dead, hub]) as failing_over:
        assert failing_over.hubs == [dead, hub]
        header = direct.header([RECIPIENT], "501", "VPCP-PY", "Qua hai địa chỉ", [attachment])
        prepared = direct.prepare(header, [attachment])
        first = direct.send_prepared(prepared)
        assert not first.duplicate
        # As after an acknowledgement lost with a hub: the very envelope is
        # sent again through the next address and answered with the original.
        again = failing_over.send_prepared(prepared)
        assert failing_over.current_hub == hub
        assert again.duplicate and again.accepted_at_unix_ms == first.accepted_at_unix_ms
        # A refusal is the hub's answer: raised as it is, nothing moves.
        with pytest.raises(grpc.RpcError) as missing:
            failing_over.get_status(document_id(599))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        assert failing_over.current_hub == hub
    # No hub answers: UNAVAILABLE, after a bounded number of attempts.
    with agency(SENDER, f"{dead},{dead_address()}") as nowhere:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as unreachable:
            nowhere.get_status(first.document_id)
        assert unreachable.value.code() == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - started < truc_client.RETRY_DEADLINE_SECONDS + 5

"""A small client of the truc axis for agency systems written in Python.

It connects to the hub over mutual TLS with the agency's certificate, signs
envelopes by the rules of docs/SIGNING.md, sends them with their attachments,
reads the Deliveries stream, verifies what arrives, acknowledges it and moves
its status.

The gRPC code is generated from proto/truc/v1/truc.proto with grpcio-tools
(see README.md); the directory it was generated into must be importable, so
that ``truc.v1.truc_pb2`` resolves.

gRPC's C core cannot use Ed25519 in TLS, so the agency's certificate and the
hub's must hold ECDSA P-256 keys (``truc certs init --key-algorithm p256``).
Signatures by senders with Ed25519 keys still verify here.
"""

from __future__ import annotations

import datetime
import hashlib
import queue
import threading
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional, Sequence

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID

from truc.v1 import truc_pb2 as pb
from truc.v1 import truc_pb2_grpc as pb_grpc

# The domain-separation prefixes of docs/SIGNING.md: 17 ASCII bytes each,
# the last a line feed.
ENVELOPE_CONTEXT = b"truc.envelope.v1\n"
DOCUMENT_CONTEXT = b"truc.document.v1\n"

# The DNS name on the hub's certificate; clients connect to an address but
# check this name.
HUB_SERVER_NAME = "truc-hub"
AGENCY_URI_PREFIX = "urn:truc:agency:"
TRUC_URI_PREFIX = "urn:truc:"

# Well under the hub's default chunk_bytes_max (1 MiB) and gRPC's default
# 4 MiB message limit.
CHUNK_BYTES = 256 * 1024
# Bounds every unary call and stream read, so a stuck hub fails loudly.
CALL_TIMEOUT_SECONDS = 30.0


class VerificationError(Exception):
    """A delivery failed one of the recipient's checks; ``field`` names what."""

    def __init__(self, field_name: str, reason: str):
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


# --- The signing forms (docs/SIGNING.md) ------------------------------------


def envelope_signing_bytes(header_bytes: bytes) -> bytes:
    """The message an envelope signature covers: the prefix, then the exact header bytes."""
    return ENVELOPE_CONTEXT + header_bytes


def document_signing_bytes(document_id: str, attachment_digests: Sequence[bytes]) -> bytes:
    """The message a document signature covers: prefix, id, a line feed, every digest in order."""
    for digest in attachment_digests:
        if len(digest) != 32:
            raise ValueError(f"a SHA-256 digest is 32 bytes, not {len(digest)}")
    return DOCUMENT_CONTEXT + document_id.encode("utf-8") + b"\n" + b"".join(attachment_digests)


def document_id_of(header: pb.EnvelopeHeader) -> str:
    """``<from.organ_id>,<yyyy/MM/dd>,<number>/<notation>``, as the hub derives it."""
    date = header.promulgation.date.replace("-", "/")
    return f"{getattr(header, 'from').organ_id},{date},{header.code.number}/{header.code.notation}"


def sign(private_key, message: bytes) -> bytes:
    """Signs by the key's type: Ed25519 (64 bytes) or ECDSA P-256 SHA-256 (ASN.1 DER)."""
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return private_key.sign(message)
    if isinstance(private_key, ec.EllipticCurvePrivateKey) and isinstance(
        private_key.curve, ec.SECP256R1
    ):
        # cryptography hashes the message with SHA-256 and returns the DER
        # Ecdsa-Sig-Value, which is the form the axis expects.
        return private_key.sign(message, ec.ECDSA(hashes.SHA256()))
    raise ValueError(f"{type(private_key).__name__} keys cannot sign for the axis")


def verify(public_key, message: bytes, signature: bytes) -> None:
    """Raises ``InvalidSignature`` unless ``signature`` is the key's over ``message``."""
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        public_key.verify(signature, message)
    elif isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(
        public_key.curve, ec.SECP256R1
    ):
        public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    else:
        raise InvalidSignature(f"{type(public_key).__name__} keys are not accepted by the axis")


# --- Certificates -------------------------------------------------------------


def truc_uris(certificate: x509.Certificate) -> list[str]:
    """The ``urn:truc:`` URIs of a certificate's subject alternative names."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [
        uri
        for uri in names.value.get_values_for_type(x509.UniformResourceIdentifier)
        if uri.startswith(TRUC_URI_PREFIX)
    ]


def agency_code_of(certificate: x509.Certificate) -> str:
    """The agency a certificate names, from its one ``urn:truc:agency:<code>`` URI."""
    uris = truc_uris(certificate)
    if len(uris) != 1:
        raise VerificationError(
            "sender_certificate", f"{len(uris)} urn:truc: URIs; exactly one is required"
        )
    if not uris[0].startswith(AGENCY_URI_PREFIX) or uris[0] == AGENCY_URI_PREFIX:
        raise VerificationError("sender_certificate", f"{uris[0]} is not an agency")
    return uris[0][len(AGENCY_URI_PREFIX) :]


def verify_agency_certificate(
    certificate: x509.Certificate,
    trusted_cas: Sequence[x509.Certificate],
    now: Optional[datetime.datetime] = None,
) -> str:
    """Checks a sender certificate by the rules of docs/SIGNING.md and returns its agency code.

    It must be signed directly by one of ``trusted_cas``, valid at ``now``, an
    end entity allowed client authentication, and name one agency.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    issued = False
    for ca in trusted_cas:
        if ca.subject != certificate.issuer:
            continue
        try:
            certificate.verify_directly_issued_by(ca)
            issued = True
            break
        except (ValueError, TypeError, InvalidSignature):
            continue
    if not issued:
        raise VerificationError("sender_certificate", "is not issued by the axis CA")
    if not (certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc):
        raise VerificationError(
            "sender_certificate",
            f"is valid from {certificate.not_valid_before_utc} to "
            f"{certificate.not_valid_after_utc}, not at {now}",
        )
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        if constraints.value.ca:
            raise VerificationError("sender_certificate", "is a CA, not an agency")
    except x509.ExtensionNotFound:
        pass
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        if ExtendedKeyUsageOID.CLIENT_AUTH not in usages.value:
            raise VerificationError("sender_certificate", "does not allow client authentication")
    except x509.ExtensionNotFound:
        pass
    return agency_code_of(certificate)


# --- Building and signing -----------------------------------------------------


@dataclass
class Attachment:
    name: str
    media_type: str
    data: bytes

    @property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.data).digest()


@dataclass
class VerifiedDelivery:
    """A delivery whose sender, signature, document id and attachments were checked."""

    queue_seq: int
    document_id: str
    sender: str
    header: pb.EnvelopeHeader
    attachments: list[bytes]
    document_signature: int


@dataclass
class Prepared:
    """A signed envelope and the attachments that follow it on the Send stream."""

    envelope: pb.SignedEnvelope
    attachments: list[Attachment]
    document_id: str = field(default="")


def vietnam_today() -> str:
    """Today in Vietnam (UTC+7), as the hub dates documents."""
    vietnam = datetime.timezone(datetime.timedelta(hours=7))
    return datetime.datetime.now(vietnam).date().isoformat()


class Agency:
    """One agency's connection to the hub: mutual TLS with its own certificate."""

    def __init__(
        self,
        hub_address: str,
        ca_pem: bytes,
        certificate_pem: bytes,
        private_key_pem: bytes,
        server_name: str = HUB_SERVER_NAME,
    ):
        self.certificate = x509.load_pem_x509_certificate(certificate_pem)
        self.code = agency_code_of(self.certificate)
        self.private_key = serialization.load_pem_private_key(private_key_pem, password=None)
        self.trusted_cas = x509.load_pem_x509_certificates(ca_pem)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=ca_pem,
            private_key=private_key_pem,
            certificate_chain=certificate_pem,
        )
        # The hub's certificate names truc-hub; the address may be anything.
        self.channel = grpc.secure_channel(
            hub_address,
            credentials,
            options=[("grpc.ssl_target_name_override", server_name)],
        )
        self.stub = pb_grpc.AxisStub(self.channel)

    @classmethod
    def from_files(cls, hub_address: str, ca_path: str, certificate_path: str, key_path: str):
        def read(path: str) -> bytes:
            with open(path, "rb") as file:
                return file.read()

        return cls(hub_address, read(ca_path), read(certificate_path), read(key_path))

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Agency":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # Sending ---------------------------------------------------------------

    def header(
        self,
        to: Sequence[str],
        number: str,
        notation: str,
        subject: str,
        attachments: Sequence[Attachment],
        date: Optional[str] = None,
        place: str = "",
        from_name: str = "",
    ) -> pb.EnvelopeHeader:
        """An EnvelopeHeader from this agency, with the attachments' sizes and digests."""
        header = pb.EnvelopeHeader(
            to=[pb.Organ(organ_id=code) for code in to],
            code=pb.DocumentCode(number=number, notation=notation),
            promulgation=pb.Promulgation(place=place, date=date or vietnam_today()),
            subject=subject,
            attachments=[
                pb.AttachmentInfo(
                    name=attachment.name,
                    media_type=attachment.media_type,
                    size_bytes=len(attachment.data),
                    sha256=attachment.sha256,
                )
                for attachment in attachments
            ],
        )
        # `from` is a Python keyword, so the field is reached by name.
        getattr(header, "from").CopyFrom(pb.Organ(organ_id=self.code, organ_name=from_name))
        return header

    def prepare(
        self,
        header: pb.EnvelopeHeader,
        attachments: Sequence[Attachment],
        sign_document: bool = False,
    ) -> Prepared:
        """Encodes the header once and signs exactly those bytes."""
        header_bytes = header.SerializeToString()
        envelope = pb.SignedEnvelope(
            header=header_bytes,
            signature=sign(self.private_key, envelope_signing_bytes(header_bytes)),
        )
        document_id = document_id_of(header)
        if sign_document:
            digests = [attachment.sha256 for attachment in attachments]
            envelope.document_signature.CopyFrom(
                pb.DocumentSignature(
                    signer_certificate=self.certificate.public_bytes(serialization.Encoding.DER),
                    signature=sign(self.private_key, document_signing_bytes(document_id, digests)),
                )
            )
        return Prepared(envelope=envelope, attachments=list(attachments), document_id=document_id)

    def send_prepared(self, prepared: Prepared) -> pb.SendResponse:
        """The Send stream: the envelope, then each attachment in chunks, in header order."""

        def requests() -> Iterator[pb.SendRequest]:
            yield pb.SendRequest(envelope=prepared.envelope)
            for index, attachment in enumerate(prepared.attachments):
                # At least one chunk per attachment, even an empty one.
                offsets = range(0, max(len(attachment.data), 1), CHUNK_BYTES)
                for offset in offsets:
                    yield pb.SendRequest(
                        chunk=pb.AttachmentChunk(
                            index=index, data=attachment.data[offset : offset + CHUNK_BYTES]
                        )
                    )

        return self.stub.Send(requests(), timeout=CALL_TIMEOUT_SECONDS)

    def send(
        self,
        to: Sequence[str],
        number: str,
        notation: str,
        subject: str,
        attachments: Sequence[Attachment],
        sign_document: bool = False,
        **header_fields,
    ) -> pb.SendResponse:
        header = self.header(to, number, notation, subject, attachments, **header_fields)
        return self.send_prepared(self.prepare(header, attachments, sign_document))

    # Receiving -------------------------------------------------------------

    def deliveries(self, window: int = 16) -> "DeliveryStream":
        return DeliveryStream(self.stub, window)

    def fetch_attachment(self, document_id: str, index: int) -> bytes:
        chunks = self.stub.FetchAttachment(
            pb.FetchAttachmentRequest(document_id=document_id, index=index),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        return b"".join(chunk.data for chunk in chunks)

    def verify_delivery(self, delivery: pb.Delivery) -> VerifiedDelivery:
        """The recipient's checks of docs/SIGNING.md, in order; raises VerificationError."""
        try:
            sender_certificate = x509.load_der_x509_certificate(delivery.sender_certificate)
        except ValueError as error:
            raise VerificationError("sender_certificate", f"is not DER X.509: {error}")
        sender = verify_agency_certificate(sender_certificate, self.trusted_cas)
        envelope = delivery.envelope
        try:
            verify(
                sender_certificate.public_key(),
                envelope_signing_bytes(envelope.header),
                envelope.signature,
            )
        except InvalidSignature:
            raise VerificationError(
                "envelope.signature", f"does not verify against {sender}'s certificate"
            )
        header = pb.EnvelopeHeader()
        header.ParseFromString(envelope.header)
        if getattr(header, "from").organ_id != sender:
            raise VerificationError(
                "from.organ_id",
                f"{getattr(header, 'from').organ_id} is not the certificate's agency {sender}",
            )
        document_id = document_id_of(header)
        if document_id != delivery.document_id:
            raise VerificationError(
                "document_id", f"{delivery.document_id} is not the header's {document_id}"
            )
        attachments = []
        for index, info in enumerate(header.attachments):
            if delivery.inline_attachments:
                data = delivery.inline_attachments[index]
            else:
                data = self.fetch_attachment(document_id, index)
            if len(data) != info.size_bytes:
                raise VerificationError(
                    f"attachments[{index}].size_bytes",
                    f"{len(data)} bytes arrived, {info.size_bytes} were signed",
                )
            if hashlib.sha256(data).digest() != info.sha256:
                raise VerificationError(
                    f"attachments[{index}].sha256", "the bytes do not have the signed digest"
                )
            attachments.append(data)
        return VerifiedDelivery(
            queue_seq=delivery.queue_seq,
            document_id=document_id,
            sender=sender,
            header=header,
            attachments=attachments,
            document_signature=delivery.document_signature,
        )

    # Statuses --------------------------------------------------------------

    def move_status(self, document_id: str, status: int, reason: str = "") -> pb.StatusEntry:
        """Moves this agency's own delivery of a document (received, ..., completed, rejected)."""
        response = self.stub.MoveStatus(
            pb.MoveStatusRequest(document_id=document_id, status=status, reason=reason),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        return response.entry

    def get_status(self, document_id: str) -> pb.GetStatusResponse:
        return self.stub.GetStatus(
            pb.GetStatusRequest(document_id=document_id), timeout=CALL_TIMEOUT_SECONDS
        )


class DeliveryStream:
    """The agency's Deliveries stream: a hello, then acknowledgements as the caller sends them.

    Messages from the hub are read on a thread into a queue so that ``next``
    can wait a bounded time.
    """

    _END = object()

    def __init__(self, stub: pb_grpc.AxisStub, window: int):
        self._outgoing: "queue.Queue[Optional[pb.NodeMessage]]" = queue.Queue()
        self._outgoing.put(pb.NodeMessage(hello=pb.Hello(window=window)))
        self._incoming: "queue.Queue[object]" = queue.Queue()
        self._call = stub.Deliveries(self._requests())
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _requests(self) -> Iterator[pb.NodeMessage]:
        while True:
            message = self._outgoing.get()
            if message is None:
                return
            yield message

    def _read(self) -> None:
        try:
            for message in self._call:
                self._incoming.put(message)
        except grpc.RpcError as error:
            self._incoming.put(error)
        finally:
            self._incoming.put(self._END)

    def next(self, timeout: float = CALL_TIMEOUT_SECONDS) -> pb.HubMessage:
        """The next delivery or status notice; raises on a stream error or after ``timeout``."""
        try:
            item = self._incoming.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no message from the hub within {timeout} s")
        if item is self._END:
            raise EOFError("the hub ended the delivery stream")
        if isinstance(item, grpc.RpcError):
            raise item
        return item

    def ack(self, queue_seqs: Iterable[int]) -> None:
        """Acknowledges queue items: a delivery becomes "arrived", a notice is done.

        The hub does not answer acknowledgements; it records them durably in
        its own time. GetStatus (or the sender's notices) shows when. An item
        whose acknowledgement is lost comes again on the next stream.
        """
        self._outgoing.put(pb.NodeMessage(ack=pb.Ack(queue_seqs=list(queue_seqs))))

    def close(self) -> None:
        """Ends the stream after the acknowledgements already given have been sent."""
        # Half-close: the hub reads the acknowledgements queued before the
        # end, then ends its side, which ends the reader.
        self._outgoing.put(None)
        self._reader.join(timeout=CALL_TIMEOUT_SECONDS)
        if self._reader.is_alive():
            self._call.cancel()
            self._reader.join(timeout=CALL_TIMEOUT_SECONDS)

    def __enter__(self) -> "DeliveryStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

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

Given several hub addresses (hubs of one store), an agency uses the first
that answers and moves to the next when a call finds its hub UNAVAILABLE,
asking the same request again: a send with the same signed envelope, which
a hub that already stored it answers with the original acknowledgement.
Whatever a hub refused is raised as it is.
"""

from __future__ import annotations

import datetime
import hashlib
import queue
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

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

# Failing over between hubs. A call gets at most ATTEMPTS_MAX attempts over
# all hubs (and always one per hub); a hub this call already asked is asked
# again only after a wait that doubles from BACKOFF_FIRST_SECONDS up to
# BACKOFF_MAX_SECONDS; no attempt starts RETRY_DEADLINE_SECONDS after the
# first. A hub whose connection is not up within CONNECT_TIMEOUT_SECONDS is
# taken as not answering.
ATTEMPTS_MAX = 6
BACKOFF_FIRST_SECONDS = 0.1
BACKOFF_MAX_SECONDS = 2.0
RETRY_DEADLINE_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 10.0


def hub_addresses(hubs: Union[str, Sequence[str]]) -> list[str]:
    """The hubs in order, each once, from ``"a:7443,b:7443"`` or a list of such strings."""
    parts = [hubs] if isinstance(hubs, str) else list(hubs)
    addresses: list[str] = []
    for part in parts:
        for address in part.split(","):
            address = address.strip()
            if address and address not in addresses:
                addresses.append(address)
    if not addresses:
        raise ValueError("no hub address was given")
    return addresses


class HubUnreachable(grpc.RpcError):
    """No connection to a hub (refused, or not up within CONNECT_TIMEOUT_SECONDS): UNAVAILABLE."""

    def __init__(self, index: int, address: str):
        super().__init__(f"no connection to the hub at {address}")
        self.index = index
        self.address = address

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return str(self)


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


def connected(channel: grpc.Channel, timeout: float) -> bool:
    """Connects ``channel`` and says whether it is up within ``timeout`` seconds.

    Unlike ``grpc.channel_ready_future``, a refused connection answers at
    once (TRANSIENT_FAILURE) instead of after the whole timeout.
    """
    states: "queue.Queue[grpc.ChannelConnectivity]" = queue.Queue()
    watch = states.put
    channel.subscribe(watch, try_to_connect=True)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                state = states.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return False
            if state == grpc.ChannelConnectivity.READY:
                return True
            if state in (
                grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                grpc.ChannelConnectivity.SHUTDOWN,
            ):
                return False
    finally:
        channel.unsubscribe(watch)


class Agency:
    """One agency's connection to the axis through one hub of a list.

    Mutual TLS with the agency's own certificate; ``hub_address`` is one
    address, a comma list or a list of addresses, in order of preference.
    """

    def __init__(
        self,
        hub_address: Union[str, Sequence[str]],
        ca_pem: bytes,
        certificate_pem: bytes,
        private_key_pem: bytes,
        server_name: str = HUB_SERVER_NAME,
    ):
        self.certificate = x509.load_pem_x509_certificate(certificate_pem)
        self.code = agency_code_of(self.certificate)
        self.private_key = serialization.load_pem_private_key(private_key_pem, password=None)
        self.trusted_cas = x509.load_pem_x509_certificates(ca_pem)
        self._credentials = grpc.ssl_channel_credentials(
            root_certificates=ca_pem,
            private_key=private_key_pem,
            certificate_chain=certificate_pem,
        )
        self._server_name = server_name
        self.hubs = hub_addresses(hub_address)
        self._lock = threading.Lock()
        self._index = 0
        self._channel: Optional[grpc.Channel] = None
        self._stub: Optional[pb_grpc.AxisStub] = None

    @classmethod
    def from_files(
        cls,
        hub_address: Union[str, Sequence[str]],
        ca_path: str,
        certificate_path: str,
        key_path: str,
    ):
        def read(path: str) -> bytes:
            with open(path, "rb") as file:
                return file.read()

        return cls(hub_address, read(ca_path), read(certificate_path), read(key_path))

    @property
    def stub(self) -> pb_grpc.AxisStub:
        """The current hub's stub, for calls this class does not wrap (they do not fail over)."""
        return self._current()[1]

    @property
    def current_hub(self) -> str:
        """The hub calls go to now: after a call returns, the one that answered it."""
        with self._lock:
            return self.hubs[self._index]

    def _current(self) -> tuple[int, pb_grpc.AxisStub]:
        """The current hub and its stub, connecting first (within CONNECT_TIMEOUT_SECONDS)."""
        with self._lock:
            index, stub = self._index, self._stub
            if stub is not None:
                return index, stub
            # The hub's certificate names truc-hub; the address may be anything.
            channel = grpc.secure_channel(
                self.hubs[index],
                self._credentials,
                options=[("grpc.ssl_target_name_override", self._server_name)],
            )
        if not connected(channel, CONNECT_TIMEOUT_SECONDS):
            channel.close()
            raise HubUnreachable(index, self.hubs[index])
        with self._lock:
            if self._index == index and self._stub is None:
                self._channel, self._stub = channel, pb_grpc.AxisStub(channel)
                return index, self._stub
        # Another thread moved on or connected meanwhile: use what it chose.
        channel.close()
        return self._current()

    def _move_on_from(self, index: int) -> None:
        """Later calls go to the next hub, if they still go to hub ``index``."""
        with self._lock:
            if self._index != index:
                return
            if self._channel is not None:
                self._channel.close()
            self._index = (index + 1) % len(self.hubs)
            self._channel, self._stub = None, None

    def _call(self, attempt: Callable[[pb_grpc.AxisStub], object], tries: Optional[list] = None):
        """Runs ``attempt`` on the current hub, and on the next ones while it is UNAVAILABLE.

        Each attempt is appended to ``tries`` when given. Any other error is
        the hub's answer and is raised at once.
        """
        started = time.monotonic()
        attempts_max = max(ATTEMPTS_MAX, len(self.hubs))
        asked: set[int] = set()
        backoff = BACKOFF_FIRST_SECONDS
        made = 0
        while True:
            index = self._index
            made += 1
            if tries is not None:
                tries.append(index)
            try:
                index, stub = self._current()
                return attempt(stub)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                index = getattr(error, "index", index)
                self._move_on_from(index)
                asked.add(index)
                left = RETRY_DEADLINE_SECONDS - (time.monotonic() - started)
                if made >= attempts_max or left <= 0:
                    raise
                if self._index in asked:
                    # Coming back to a hub: wait, spread over the wait's second half.
                    time.sleep(min(left, backoff / 2 + random.random() * backoff / 2))
                    backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel, self._stub = None, None

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
        """The Send stream: the envelope, then each attachment in chunks, in header order.

        A hub that is UNAVAILABLE is left for the next with this very
        envelope: one that had stored it answers with the original
        acknowledgement (``duplicate`` set), never a second document.
        """

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

        return self._call(lambda stub: stub.Send(requests(), timeout=CALL_TIMEOUT_SECONDS))

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
        """The delivery stream, on the current hub.

        If the hub ends it or it breaks UNAVAILABLE, the agency moves on, and
        the next ``deliveries()`` opens on the next hub, where what was not
        acknowledged comes again.
        """
        index, stub = self._call(lambda stub: (self._index, stub))
        return DeliveryStream(stub, window, lambda: self._move_on_from(index))

    def fetch_attachment(self, document_id: str, index: int) -> bytes:
        def fetch(stub: pb_grpc.AxisStub) -> bytes:
            chunks = stub.FetchAttachment(
                pb.FetchAttachmentRequest(document_id=document_id, index=index),
                timeout=CALL_TIMEOUT_SECONDS,
            )
            return b"".join(chunk.data for chunk in chunks)

        return self._call(fetch)

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
        """Moves this agency's own delivery of a document (received, ..., completed, rejected).

        After a hub that was UNAVAILABLE, the move is asked of the next; if
        that one refuses it as already made (FAILED_PRECONDITION) and the
        document shows this very move by this agency, the first attempt was
        recorded and its entry is returned.
        """
        request = pb.MoveStatusRequest(document_id=document_id, status=status, reason=reason)
        tries: list = []
        try:
            response = self._call(
                lambda stub: stub.MoveStatus(request, timeout=CALL_TIMEOUT_SECONDS), tries
            )
        except grpc.RpcError as error:
            if len(tries) > 1 and error.code() == grpc.StatusCode.FAILED_PRECONDITION:
                for row in self.get_status(document_id).recipients:
                    if row.recipient != self.code:
                        continue
                    for entry in row.history:
                        if (entry.status, entry.actor, entry.reason) == (status, self.code, reason):
                            return entry
            raise
        return response.entry

    def get_status(self, document_id: str) -> pb.GetStatusResponse:
        return self._call(
            lambda stub: stub.GetStatus(
                pb.GetStatusRequest(document_id=document_id), timeout=CALL_TIMEOUT_SECONDS
            )
        )


class DeliveryStream:
    """The agency's Deliveries stream: a hello, then acknowledgements as the caller sends them.

    Messages from the hub are read on a thread into a queue so that ``next``
    can wait a bounded time.
    """

    _END = object()

    def __init__(
        self,
        stub: pb_grpc.AxisStub,
        window: int,
        hub_lost: Callable[[], None] = lambda: None,
    ):
        self._outgoing: "queue.Queue[Optional[pb.NodeMessage]]" = queue.Queue()
        self._outgoing.put(pb.NodeMessage(hello=pb.Hello(window=window)))
        self._incoming: "queue.Queue[object]" = queue.Queue()
        # Told when the hub ends the stream or stops answering, not when the caller closes it.
        self._hub_lost = hub_lost
        self._closing = False
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
            if not self._closing:
                self._hub_lost()
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.UNAVAILABLE and not self._closing:
                self._hub_lost()
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
        self._closing = True
        self._outgoing.put(None)
        self._reader.join(timeout=CALL_TIMEOUT_SECONDS)
        if self._reader.is_alive():
            self._call.cancel()
            self._reader.join(timeout=CALL_TIMEOUT_SECONDS)

    def __enter__(self) -> "DeliveryStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

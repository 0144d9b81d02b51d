"""An agency system's use of truc_client: send a document, receive and check one, move its status.

    python example.py --hub 127.0.0.1:7443 --certs certs/p256 --as 000.00.00.G22 \\
        send --to 000.00.00.H41 --number 7816 --notation VPCP-TTĐT \\
        --subject "Về việc ..." --attach vanban.pdf --sign-document
    python example.py --hub 127.0.0.1:7443 --certs certs/p256 --as 000.00.00.H41 \\
        receive --inbox inbox/H41 --set received
    python example.py --hub 127.0.0.1:7443 --certs certs/p256 --as 000.00.00.G22 \\
        status '000.00.00.G22,2026/11/22,7816/VPCP-TTĐT'

The certificates come from `truc certs init --key-algorithm p256`; the gRPC
code must be generated first (README.md).
"""

from __future__ import annotations

import argparse
import mimetypes
import os
import sys

import truc_client
from truc.v1 import truc_pb2 as pb

STATUSES = {
    "received": pb.STATUS_RECEIVED,
    "assigned": pb.STATUS_ASSIGNED,
    "processing": pb.STATUS_PROCESSING,
    "completed": pb.STATUS_COMPLETED,
    "rejected": pb.STATUS_REJECTED,
}


def connect(args) -> truc_client.Agency:
    return truc_client.Agency.from_files(
        args.hub or ["127.0.0.1:7443"],
        os.path.join(args.certs, "ca.crt"),
        os.path.join(args.certs, "agencies", f"{args.agency}.crt"),
        os.path.join(args.certs, "agencies", f"{args.agency}.key"),
    )


def send(agency: truc_client.Agency, args) -> None:
    attachments = []
    for path in args.attach:
        media_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        with open(path, "rb") as file:
            attachments.append(
                truc_client.Attachment(os.path.basename(path), media_type, file.read())
            )
    response = agency.send(
        args.to,
        args.number,
        args.notation,
        args.subject,
        attachments,
        sign_document=args.sign_document,
    )
    print(f"accepted: {response.document_id}" + (" (already sent)" if response.duplicate else ""))
    if len(agency.hubs) > 1:
        print(f"answered by the hub at {agency.current_hub}", file=sys.stderr)
    for recipient in response.recipients:
        print(f"  {'✓' if recipient.accepted else '✗'} {recipient.organ_id} {recipient.reason}")


def receive(agency: truc_client.Agency, args) -> None:
    """Checks each delivery, keeps it, acknowledges it (status 01) and moves it on."""
    received = 0
    with agency.deliveries() as stream:
        while received < args.count:
            try:
                message = stream.next(timeout=args.wait)
            except TimeoutError:
                break
            if message.HasField("notice"):
                notice = message.notice
                statuses = ", ".join(pb.StatusCode.Name(e.status) for e in notice.entries)
                print(f"notice: {notice.document_id}: {notice.recipient} {statuses}")
                stream.ack([notice.queue_seq])
                continue
            try:
                delivery = agency.verify_delivery(message.delivery)
            except truc_client.VerificationError as error:
                # Not acknowledged: the hub offers it again on the next stream.
                print(f"refused {message.delivery.document_id}: {error}", file=sys.stderr)
                continue
            folder = os.path.join(args.inbox, delivery.document_id.replace("/", "%2F"))
            os.makedirs(folder, exist_ok=True)
            for info, data in zip(delivery.header.attachments, delivery.attachments):
                with open(os.path.join(folder, os.path.basename(info.name)), "wb") as file:
                    file.write(data)
            stream.ack([delivery.queue_seq])
            print(
                f"delivered: {delivery.document_id} from {delivery.sender}: {delivery.header.subject}"
            )
            if args.set:
                agency.move_status(delivery.document_id, STATUSES[args.set], args.reason)
            received += 1


def status(agency: truc_client.Agency, args) -> None:
    if args.set:
        agency.move_status(args.document_id, STATUSES[args.set], args.reason)
    response = agency.get_status(args.document_id)
    print(f"{response.document_id} from {response.sender}: {response.subject}")
    for recipient in response.recipients:
        print(f"  {recipient.recipient}: {pb.StatusCode.Name(recipient.current)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--hub",
        action="append",
        help="the hub's address (default 127.0.0.1:7443); several hubs of one store: "
        "repeat it or give a comma list, tried in order",
    )
    parser.add_argument("--certs", default="certs/p256", help="the PKI folder of truc certs init")
    parser.add_argument("--as", dest="agency", required=True, help="this agency's code")
    commands = parser.add_subparsers(dest="command", required=True)

    send_parser = commands.add_parser("send")
    send_parser.add_argument("--to", action="append", required=True)
    send_parser.add_argument("--number", required=True)
    send_parser.add_argument("--notation", required=True)
    send_parser.add_argument("--subject", required=True)
    send_parser.add_argument("--attach", action="append", required=True)
    send_parser.add_argument("--sign-document", action="store_true")

    receive_parser = commands.add_parser("receive")
    receive_parser.add_argument("--inbox", default="inbox")
    receive_parser.add_argument("--count", type=int, default=1_000_000)
    receive_parser.add_argument(
        "--wait", type=float, default=10.0, help="seconds without a message before stopping"
    )
    receive_parser.add_argument("--set", choices=sorted(STATUSES))
    receive_parser.add_argument("--reason", default="")

    status_parser = commands.add_parser("status")
    status_parser.add_argument("document_id")
    status_parser.add_argument("--set", choices=sorted(STATUSES))
    status_parser.add_argument("--reason", default="")

    args = parser.parse_args()
    with connect(args) as agency:
        {"send": send, "receive": receive, "status": status}[args.command](agency, args)


if __name__ == "__main__":
    main()

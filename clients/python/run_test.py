"""Runs test_truc.py against a real `truc hub` process in a temporary directory.

Steps: generate the gRPC code from proto/ with grpcio-tools; build `truc`
(unless TRUC_BIN names one); then for each of two development PKIs, start the
hub on a port of 127.0.0.1 that it picks itself, run pytest with the hub's
address, and stop the hub:

- p256: every key ECDSA P-256 (`truc certs init --key-algorithm p256`);
- mixed: an Ed25519 CA and an Ed25519 agency (000.00.00.G12) beside a P-256
  hub and P-256 Python agencies (`truc certs hub` and `truc certs issue
  --key-algorithm p256`), where G12 first sends a signed document with
  `truc send` for the Python recipient to verify.

Nothing is written outside the temporary directory except cargo's target
directory. Extra arguments go to pytest.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
PYTHON_AGENCIES = [
    ("000.00.00.G22", "Văn phòng Chính phủ"),
    ("000.00.00.H41", "Ủy ban nhân dân tỉnh Nghệ An"),
]
ED25519_AGENCY = ("000.00.00.G12", "Bộ Tài chính")
PKIS = ["p256", "mixed"]
# How long the hub may take to open its store and bind, on a busy 2-core machine.
HUB_START_SECONDS = 60
BANNER = "truc hub listening on "


def truc_binary() -> str:
    given = os.environ.get("TRUC_BIN")
    if given:
        return os.path.abspath(given)
    # Two jobs at most: the machines this runs on have two cores, shared.
    subprocess.run(["cargo", "build", "-p", "truc-cli", "-j", "2"], cwd=REPO, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    return os.path.join(target, "debug", "truc")


def generate_grpc_code(out_dir: str) -> None:
    proto_dir = os.path.join(REPO, "proto")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            os.path.join(proto_dir, "truc", "v1", "truc.proto"),
        ],
        check=True,
    )


class Hub:
    """`truc hub` as a child process; its stderr goes to a log file."""

    def __init__(self, truc: str, config: str, log_path: str):
        self.log_path = log_path
        self.process = subprocess.Popen(
            [truc, "hub", "--config", config],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: "queue.Queue[str | None]" = queue.Queue()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        # Read to the end so the pipe never fills and blocks the hub.
        with open(self.log_path, "w", encoding="utf-8") as log:
            for line in self.process.stderr:
                log.write(line)
                log.flush()
                self._lines.put(line)
        self._lines.put(None)

    def address(self) -> str:
        """Waits for the banner, printed once the port is bound, and reads the address from it."""
        deadline = time.monotonic() + HUB_START_SECONDS
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"the hub printed no address within {HUB_START_SECONDS} s")
            if line is None:
                raise RuntimeError(f"the hub exited with {self.process.wait()}")
            if line.startswith(BANNER):
                return line[len(BANNER) :].split()[0]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def run(command: list[str]) -> str:
    return subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout


def make_pki(truc: str, root: str, kind: str) -> str:
    directory = os.path.join(root, "agencies.toml")
    with open(directory, "w", encoding="utf-8") as file:
        for code, name in [*PYTHON_AGENCIES, ED25519_AGENCY]:
            file.write(f'[[agency]]\ncode = "{code}"\nname = "{name}"\n\n')
    certs = os.path.join(root, "certs")
    # The mixed PKI starts Ed25519 and turns the hub and the Python agencies P-256.
    ca_algorithm = "p256" if kind == "p256" else "ed25519"
    init = ["certs", "init", "--dir", certs, "--directory", directory]
    run([truc, *init, "--key-algorithm", ca_algorithm])
    if kind == "mixed":
        run([truc, "certs", "hub", "--dir", certs, "--key-algorithm", "p256"])
        for code, name in PYTHON_AGENCIES:
            issue = ["certs", "issue", "--dir", certs, "--agency", code, "--name", name]
            run([truc, *issue, "--key-algorithm", "p256"])
    return certs


def write_hub_config(root: str) -> str:
    config = os.path.join(root, "hub.toml")
    with open(config, "w", encoding="utf-8") as file:
        file.write(
            'listen = "127.0.0.1:0"\n'
            'data_dir = "data"\n'
            'directory = "agencies.toml"\n'
            "[tls]\n"
            'ca_cert = "certs/ca.crt"\n'
            'cert = "certs/hub.crt"\n'
            'key = "certs/hub.key"\n'
            "[observe]\n"
            'metrics_listen = ""\n'
        )
    return config


def send_from_ed25519_agency(truc: str, root: str, address: str, certs: str) -> dict[str, str]:
    """`truc send` as the Ed25519 agency to a Python agency; the test finds and checks it."""
    attachment = os.path.join(root, "tu-bo-tai-chinh.pdf")
    with open(attachment, "wb") as file:
        file.write("%PDF-1.7 gửi từ truc send".encode("utf-8"))
    code = ED25519_AGENCY[0]
    output = run(
        [
            truc,
            "send",
            "--hub",
            address,
            "--certs",
            certs,
            "--as",
            code,
            "--to",
            PYTHON_AGENCIES[1][0],
            "--number",
            "401",
            "--notation",
            "BTC-ED",
            "--subject",
            "Ký bằng Ed25519",
            "--attach",
            attachment,
            "--sign-document",
        ]
    )
    if "accepted: " not in output:
        raise RuntimeError(f"truc send did not report an accepted document: {output}")
    return {"TRUC_ED25519_SENDER": code, "TRUC_ED25519_ATTACHMENT": attachment}


def run_with_pki(truc: str, generated: str, kind: str) -> int:
    with tempfile.TemporaryDirectory(prefix=f"truc-python-{kind}-") as root:
        certs = make_pki(truc, root, kind)
        config = write_hub_config(root)
        hub = Hub(truc, config, os.path.join(root, "hub.log"))
        try:
            address = hub.address()
            extra = {}
            if kind == "mixed":
                extra = send_from_ed25519_agency(truc, root, address, certs)
            environment = dict(
                os.environ,
                TRUC_HUB=address,
                TRUC_CERTS=certs,
                TRUC_REPO=REPO,
                PYTHONPATH=os.pathsep.join([generated, HERE]),
                # Nothing is written into the repository.
                PYTHONDONTWRITEBYTECODE="1",
                **extra,
            )
            print(f"--- {kind} PKI, hub at {address}", file=sys.stderr, flush=True)
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "-p",
                    "no:cacheprovider",
                    "-q",
                    os.path.join(HERE, "test_truc.py"),
                    *sys.argv[1:],
                ],
                env=environment,
                cwd=root,
            )
        finally:
            hub.stop()
        if result.returncode != 0:
            with open(hub.log_path, encoding="utf-8") as log:
                sys.stderr.write(f"--- hub log ({kind} PKI) ---\n" + log.read())
        return result.returncode


def main() -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="truc-python-generated-") as generated:
        generate_grpc_code(generated)
        truc = truc_binary()
        failed = [kind for kind in PKIS if run_with_pki(truc, generated, kind) != 0]
    print(
        f"python client test: {'failed with ' + ', '.join(failed) if failed else 'passed'} "
        f"({len(PKIS)} PKIs) in {time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

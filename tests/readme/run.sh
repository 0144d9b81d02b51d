#!/usr/bin/env bash
# Runs the README's "Running the parts yourself" as a new user pastes it:
# every ```sh block of that section, in order, in one shell, in a copy of
# the checkout (without target/, certs/dev/ or data/) whose target/ is this
# checkout's, then checks what the blocks should have left behind. The
# hub's ports are moved to free ones (the TRUC_HUB* variables, and the
# dashboard's 8080 in the text), so that it never collides with a hub
# already running. About 20 s once `truc` is built (TRUC_BIN, default
# target/debug/truc; built here when missing).
#   tests/readme/run.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

if [ ! -x "${TRUC_BIN:-target/debug/truc}" ]; then
    cargo build -p truc-cli
fi
bin_dir="$(cd "$(dirname "${TRUC_BIN:-target/debug/truc}")" && pwd)"

work="$(mktemp -d "${TMPDIR:-/tmp}/truc-readme-XXXXXX")"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -- "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# The checkout as a new user has it: no certificates, no data, no build.
tar --exclude=./target --exclude=./certs/dev --exclude=./data --exclude=./.git \
    -cf - . | (cd "$work" && tar -xf -)
mkdir -p "$work/target"
ln -s "$bin_dir" "$work/target/debug"

# The sh blocks between the section's heading and the next one.
awk '
    /^## Running the parts yourself/ { inside = 1; next }
    /^## / { inside = 0 }
    inside && /^```sh$/ { block = 1; next }
    inside && /^```$/ && block { block = 0; print ""; next }
    block { print }
' README.md > "$work/readme-blocks.sh"
if [ "$(grep -c '^truc ' "$work/readme-blocks.sh")" -lt 10 ]; then
    echo "tests/readme/run.sh: found too few commands in README.md's section:" >&2
    cat "$work/readme-blocks.sh" >&2
    exit 1
fi

# A port nothing listens on, by asking: bash's /dev/tcp fails to connect.
free_port() {
    local port
    for _ in $(seq 1 200); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    echo "no free port found" >&2
    exit 1
}
hub_port="$(free_port)"
metrics_port="$(free_port)"
dashboard_port="$(free_port)"
sed -i "s/127\.0\.0\.1:8080/127.0.0.1:$dashboard_port/g" "$work/readme-blocks.sh"

cat > "$work/check.sh" <<'CHECKS'
# What the blocks must have left behind.
fail() { echo "README check failed: $*" >&2; exit 1; }
[ -n "$ID" ] || fail "truc send printed no document id"
case "$ID" in 000.00.00.G22,*,7816/VPCP-TTĐT) ;; *) fail "unexpected document id $ID" ;; esac
[ -n "$UNIT" ] && [ -n "$NEWER" ] || fail "a send printed no document id"
# The hub stops within a bound once killed, and logs its start and stop.
for _ in $(seq 1 300); do
    kill -0 "$HUB" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$HUB" 2>/dev/null && fail "the hub did not stop within 30 s"
grep -q "hub serving" hub.log || fail "hub.log has no start line: $(cat hub.log)"
grep -q "node connected" hub.log || fail "hub.log has no node connection: $(cat hub.log)"
grep -q "hub stopped" hub.log || fail "hub.log has no stop line: $(cat hub.log)"
grep -q "received $ID" node.log || fail "the node did not write $ID: $(cat node.log)"
[ -d "data/inbox/H41" ] || fail "no inbox"
echo "README: every command of 'Running the parts yourself' ran; the hub started, served and stopped"
CHECKS

# In a process group of its own, so that the hub and node the blocks start
# in the background go with it if a command fails halfway.
cd "$work"
setsid env -u TRUC_CERTS \
    XDG_CONFIG_HOME="$work/.config" \
    TRUC_HUB="127.0.0.1:$hub_port" \
    TRUC_HUB__LISTEN="127.0.0.1:$hub_port" \
    TRUC_HUB__OBSERVE__METRICS_LISTEN="127.0.0.1:$metrics_port" \
    bash -euo pipefail -c 'source ./readme-blocks.sh; source ./check.sh' &
runner=$!
pids+=("-$runner")
wait "$runner"

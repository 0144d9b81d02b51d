#!/usr/bin/env bash
# The operator dashboard in a real browser: installs Debian's chromium if it
# is missing, replays a slice of the 2021 national traffic through a real hub
# with its dashboard on, takes screenshots in headless Chromium and checks
# what the page shows once its script has run (the DOM after the live
# updates, the document lookup, and PNGs of a plausible size).
#
#   tests/dashboard/run.sh [--scale 1/1000] [--out DIR]
#
# TRUC_BIN names the `truc` executable (default: target/debug/truc, built if
# missing). Screenshots are left in DIR (default: a temporary folder).
set -euo pipefail
cd "$(dirname "$0")/../.."

scale=1/1000
out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --scale) scale="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) echo "usage: $0 [--scale N/D] [--out DIR]" >&2; exit 2 ;;
    esac
done

started=$(date +%s)
fail() { echo "FAIL: $*" >&2; exit 1; }

if ! command -v chromium >/dev/null; then
    echo "installing chromium from Debian's packages" >&2
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        chromium fonts-dejavu-core >/dev/null
fi
chromium --version >&2

truc="${TRUC_BIN:-target/debug/truc}"
[ -x "$truc" ] || cargo build -p truc-cli
work=$(mktemp -d -t truc-dashboard-test-XXXXXX)
[ -n "$out" ] || out="$work/screenshots"
mkdir -p "$out"
replay_pid=""
cleanup() {
    if [ -n "$replay_pid" ] && kill -0 "$replay_pid" 2>/dev/null; then
        kill -TERM "$replay_pid"
        wait "$replay_pid" 2>/dev/null || true
    fi
    rm -rf "$work/profile"
}
trap cleanup EXIT

# A free loopback port for the dashboard: bind port 0 and let go of it.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$truc" replay 2021 --scale "$scale" --dashboard "127.0.0.1:$port" --hold --progress-lines \
    >"$work/replay.out" 2>"$work/replay.err" &
replay_pid=$!
for _ in $(seq 1 600); do
    grep -q "holding the embedded hub" "$work/replay.err" && break
    kill -0 "$replay_pid" 2>/dev/null || { cat "$work/replay.err" >&2; fail "the replay ended early"; }
    sleep 0.5
done
grep -q "holding the embedded hub" "$work/replay.err" || fail "the replay did not finish in 5 minutes"
grep -q "VERDICT ✓" "$work/replay.out" || fail "the replay did not reproduce the scaled figures"
token_file=$(sed -n 's/.*the token in \(.*\))$/\1/p' "$work/replay.err")
token=$(tr -d '[:space:]' <"$token_file")
base="http://127.0.0.1:$port"

# Without the token: 401, and nothing of the page.
code=$(curl -s -o "$work/denied" -w '%{http_code}' "$base/")
[ "$code" = 401 ] || fail "GET / without the token answered $code"
! grep -q "Document lookup" "$work/denied" || fail "the page leaked without the token"
code=$(curl -s -o /dev/null -w '%{http_code}' -u "ops:wrong-token" "$base/api/overview")
[ "$code" = 401 ] || fail "a wrong token answered $code"

curl -sf -H "Authorization: Bearer $token" "$base/api/overview" >"$work/overview.json"
read -r sent received document_id < <(python3 - "$work/overview.json" <<'EOF'
import json, sys
overview = json.load(open(sys.argv[1]))
print(overview["totals"]["documents_sent"], overview["totals"]["deliveries_received"],
      overview["recent"][0]["document_id"])
EOF
)
[ "$sent" -gt 0 ] || fail "the hub reports no documents"
encoded=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$document_id")
page="http://ops:$token@127.0.0.1:$port/?document=$encoded"

browse() {
    # Virtual time lets the page's fetches and first live update finish before the capture.
    chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
        --user-data-dir="$work/profile" --window-size=1440,1650 --virtual-time-budget=8000 "$@" \
        2>>"$work/chromium.log"
}
browse --dump-dom "$page" >"$work/dom.html"
browse --screenshot="$out/dashboard.png" "$page" >/dev/null

# What the page shows after its script ran, in the DOM.
python3 - "$work/dom.html" "$sent" "$received" "$document_id" <<'EOF'
import re, sys
dom, sent, received, document_id = open(sys.argv[1]).read(), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def text(element_id):
    match = re.search(r'id="%s"[^>]*>([^<]*)<' % element_id, dom)
    return match.group(1) if match else None
checks = {
    "live status": "live · updated" in dom,
    "documents sent": text("kpi-sent") == f"{sent:,}",
    "deliveries received": text("kpi-received") == f"{received:,}",
    "nodes online": re.fullmatch(r"\d+ / \d+", text("kpi-online") or "") is not None,
    "daily chart": dom.count("<rect") > 100 and "received</title>" in dom,
    "status funnel": all(f">{name}<small>" in dom for name in ("arrived", "received", "completed", "rejected")),
    "agency rows": dom.count('<td class="code">000.') >= 20,
    "document lookup": document_id.replace("&", "&amp;") in dom and "Status timeline" in dom
        and "delivered to its own node" in dom,
}
failed = [name for name, ok in checks.items() if not ok]
if failed:
    sys.exit("FAIL: the dashboard does not show: " + ", ".join(failed))
print("the page shows: " + ", ".join(checks))
EOF

# A capture of the whole page, not a blank or error screen: PNG of the asked size, large enough.
python3 - "$out/dashboard.png" <<'EOF'
import struct, sys
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
width, height = struct.unpack(">II", data[16:24])
assert (width, height) == (1440, 1650), (width, height)
assert len(data) > 40_000, f"{len(data)} bytes: an empty page?"
print(f"screenshot {width}x{height}, {len(data) // 1024} KiB")
EOF
echo "dashboard test passed in $(( $(date +%s) - started )) s; screenshot: $out/dashboard.png"

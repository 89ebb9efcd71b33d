#!/usr/bin/env bash
# The audit trail at a million events, against the release binary on SQLite, in one run
# with a 10,000-event anchor (absolute times drift ~3x between machines: compare the
# rows of one run). For each size N:
#   1. seed N chained events over 14 months (backend/examples/seed_audit.rs; not timed);
#   2. `audit checkpoint`: the first one grows the Merkle tree over every event (checking
#      the chain as it goes) and signs it; then a second, with nothing new;
#   3. `audit export` of the whole trail (JSON Lines, to a file) and of one actor's
#      events (a fifth of them, each with its inclusion proof): wall time and peak RSS
#      (the export streams; its memory should not grow with N);
#   4. `audit archive` with the default 12 months online (about 2 of the 14 months move
#      into a segment file);
#   5. `serve`, sign in as an auditor, then GET /audit (the audit page, rendered on the
#      server) 20 times: median and slowest; the same filtered by actor;
#   6. `audit verify` of the whole trail (segments and online events walked as one
#      chain, which holds the trail in memory).
#
# Usage: bench/audit.sh                 N = 10,000 and 1,000,000 (about 6 minutes)
#        SIZES="10000 100000" bench/audit.sh
#        GRAFTBENCH=path/to/graftbench SEED=path/to/seed_audit bench/audit.sh (no build)
#        SITE_ROOT=DIR                  the browser bundle (default target/site)
# Builds the release binary and the seeder with cargo unless GRAFTBENCH and SEED are set.
# Everything lives in a temporary directory removed on exit (a million events take about
# 1 GiB there); the server listens on 127.0.0.1 only and is killed on exit. Needs
# python3 (standard library) and GNU time (/usr/bin/time). Prints a Markdown report on
# stdout, progress on stderr.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
sizes=${SIZES:-10000 1000000}
site=${SITE_ROOT:-$repo/target/site}
command -v python3 >/dev/null || { echo "needs python3" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "needs GNU time (/usr/bin/time)" >&2; exit 2; }
[ -s "$site/pkg/graftbench_ui.js" ] ||
    { echo "no browser bundle in $site/pkg: run \`cargo xtask site\` first" >&2; exit 2; }
if [ -z "${GRAFTBENCH:-}" ] || [ -z "${SEED:-}" ]; then
    echo "building graftbench and the seeder (release)" >&2
    (cd "$repo" && cargo build --release -q -p graftbench --bin graftbench --example seed_audit)
fi
target=${CARGO_TARGET_DIR:-$repo/target}
graftbench=${GRAFTBENCH:-$target/release/graftbench}
seed=${SEED:-$target/release/examples/seed_audit}

work=$(mktemp -d "${TMPDIR:-/tmp}/graftbench-audit.XXXXXX")
server=
stop_server() {
    [ -n "$server" ] || return 0
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=
}
cleanup() { stop_server; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

cat >"$work/page.py" <<'PY'
import http.client, statistics, sys, time
from urllib.parse import urlencode

port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
for _ in range(100):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/healthz")
        if c.getresponse().status == 200:
            break
    except OSError:
        time.sleep(0.1)
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
conn.request("POST", "/login", urlencode({"username": user, "password": password}),
             {"Content-Type": "application/x-www-form-urlencoded"})
r = conn.getresponse(); r.read()
cookie = r.getheader("Set-Cookie").split(";")[0]
for path in ("/audit", "/audit?actor=alice"):
    times = []
    for _ in range(20):
        start = time.perf_counter()
        conn.request("GET", path, headers={"Cookie": cookie})
        r = conn.getresponse(); body = r.read()
        times.append((time.perf_counter() - start) * 1000)
        assert r.status == 200, (path, r.status)
        assert b'id="chain-ok"' in body, "the page does not say the chain verifies"
    print(f"{path}\t{statistics.median(times):.1f}\t{max(times):.1f}")
PY

# Runs a graftbench command under GNU time: "seconds<TAB>peak MiB".
timed() {
    /usr/bin/time -f '%e %M' -o "$work/time" "$graftbench" --data-dir "$data" "$@" \
        >"$work/out" 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
    awk '{printf "%.2f s\t%.0f MiB\n", $1, $2 / 1024}' "$work/time"
}

echo "| step | events | time | peak RSS |"
echo "| --- | ---: | ---: | ---: |"
for n in $sizes; do
    data=$work/data-$n
    echo "N = $n: seeding" >&2
    "$graftbench" --data-dir "$data" migrate >/dev/null
    "$seed" "sqlite://$data/graftbench.db" "$n" >/dev/null
    echo 'a long enough password' | "$graftbench" --data-dir "$data" user add auditor \
        --role auditor --password-stdin >/dev/null
    "$graftbench" --data-dir "$data" audit key >/dev/null
    echo "N = $n: checkpoints" >&2
    IFS=$'\t' read -r t m < <(timed audit checkpoint)
    echo "| \`audit checkpoint\`, the first (grows the tree over every event) | $n | $t | $m |"
    IFS=$'\t' read -r t m < <(timed audit checkpoint)
    echo "| \`audit checkpoint\`, nothing new | $n | $t | $m |"
    echo "N = $n: exports" >&2
    IFS=$'\t' read -r t m < <(timed audit export -o "$work/all.jsonl")
    size=$(du -m "$work/all.jsonl" | cut -f1)
    echo "| \`audit export\`, whole trail ($size MiB of JSON Lines) | $n | $t | $m |"
    IFS=$'\t' read -r t m < <(timed audit export --actor alice -o "$work/alice.jsonl")
    echo "| \`audit export --actor alice\` (a fifth, with inclusion proofs) | $n | $t | $m |"
    rm -f "$work/all.jsonl" "$work/alice.jsonl"
    echo "N = $n: archive" >&2
    IFS=$'\t' read -r t m < <(timed audit archive)
    moved=$(sed -n 's/.*(\([0-9]*\) event(s).*/\1/p' "$work/out")
    echo "| \`audit archive\` (${moved:-0} events into a segment) | $n | $t | $m |"
    echo "N = $n: the audit page" >&2
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$graftbench" --data-dir "$data" serve --listen "127.0.0.1:$port" --site-root "$site" \
        >"$work/serve.log" 2>&1 &
    server=$!
    while IFS=$'\t' read -r path median slowest; do
        echo "| GET \`$path\` (median of 20; slowest $slowest ms) | $n | $median ms | |"
    done < <(python3 "$work/page.py" "$port" auditor 'a long enough password')
    stop_server
    echo "N = $n: verify" >&2
    IFS=$'\t' read -r t m < <(timed audit verify)
    echo "| \`audit verify\` (segment + online, one chain) | $n | $t | $m |"
    rm -rf "$data"
done

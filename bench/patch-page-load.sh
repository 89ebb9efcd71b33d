#!/usr/bin/env bash
# The patch page under a steady load: `graftbench serve` (release build, SQLite) and oha
# on the same 2-core machine, oha sending a fixed rate of requests whatever the answers'
# latency (`-q`, open loop, with its correction for coordinated omission), gzip asked
# for as a browser does.
#
# Pages: the generated 5,096-line, 30-file patch of `backend/benches/diff_page.rs` (its
# page carries the first 1,000 lines; the rest loads on demand) and
# bench/fixes/cmdline.patch (one hunk, the usual size of a live-patch fix). Each is
# submitted through the API and its page read until its store-time highlighting is
# done; then, per rate, 5 s of warm-up and 20 s measured.
#
# Usage: bench/patch-page-load.sh [RATE...]      (default: 250 500)
# With GRAFTBENCH_BASELINE=/path/to/another/graftbench the same runs are made against
# that binary first (an older build kept aside), so both sets share one machine's state.
# Needs oha (`cargo install oha --locked`), python3 and the browser bundle (cargo xtask
# site). Prints a Markdown table (the README's "First view and load" section).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(250 500)
command -v oha >/dev/null || { echo "needs oha (cargo install oha --locked)" >&2; exit 1; }
work=$(mktemp -d)
server=
trap 'if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi; rm -rf "$work"' EXIT

(cd "$repo" && cargo build --release -q -p graftbench --bin graftbench)
current=${CARGO_TARGET_DIR:-$repo/target}/release/graftbench

# Starts `$1` on a fresh data directory; sets $server, $port, $cookie, $big and $small.
start() {
    local graftbench=$1 data
    data=$(mktemp -d -p "$work")
    echo "bench-author-pw-1" | "$graftbench" --data-dir "$data" user add alice --role author \
        --password-stdin >/dev/null
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$graftbench" --data-dir "$data" serve --listen "127.0.0.1:$port" \
        --site-root "$repo/target/site" >"$data/serve.log" 2>&1 &
    server=$!
    for _ in $(seq 100); do
        curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
        sleep 0.1
    done
    # Signs in, submits both fixes, waits for their highlighting: "cookie id id".
    read -r cookie big small < <(python3 - "$port" "$repo/bench/fixes/cmdline.patch" <<'EOF'
import http.cookiejar, json, sys, time, urllib.parse, urllib.request

port, small_fix = sys.argv[1:3]
base = f"http://127.0.0.1:{port}"
jar = http.cookiejar.CookieJar()
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
origin = {"Origin": base}
form = urllib.parse.urlencode({"username": "alice", "password": "bench-author-pw-1"}).encode()
opener.open(urllib.request.Request(base + "/login", data=form, headers=origin))


def big_patch():
    # The same shape as backend/benches/diff_page.rs: 30 files of 12 hunks.
    out, lines, file = [], 0, 0
    while lines < 5000:
        path = f"drivers/net/ethernet/vendor/part{file:03}.c"
        out += [f"diff --git a/{path} b/{path}", "index 1111111..2222222 100644",
                f"--- a/{path}", f"+++ b/{path}"]
        lines += 4
        for hunk in range(12):
            start = 40 + hunk * 60
            out += [
                f"@@ -{start},10 +{start},11 @@ static int vendor_rx_poll_{file}_{hunk}(struct napi_struct *napi, int budget)",
                " \tstruct vendor_priv *priv = container_of(napi, struct vendor_priv, napi);",
                " \tint work_done = 0; /* frames handled in this poll */",
                " ",
                f"-\tif (unlikely(priv->rx_ring[{hunk}].count > budget))",
                "-\t\treturn -EINVAL;",
                "-\tspin_lock(&priv->lock);",
                f"-\twork_done = vendor_clean_rx(priv, budget, \"rx{hunk}\");",
                f"+\tif (unlikely(READ_ONCE(priv->rx_ring[{hunk}].count) >= budget))",
                "+\t\treturn -EOVERFLOW;",
                "+\tspin_lock_bh(&priv->lock);",
                f"+\twork_done = vendor_clean_rx(priv, budget, \"rx{hunk}\");",
                "+\tWARN_ON_ONCE(work_done > budget);",
                " \tspin_unlock(&priv->lock);",
                " \treturn work_done;",
                " }",
            ]
            lines += 16
        file += 1
    return "\n".join(out) + "\n"


def submit(title, diff):
    body = json.dumps({"title": title, "diff": diff}).encode()
    request = urllib.request.Request(base + "/api/v1/patches", data=body,
                                     headers={**origin, "Content-Type": "application/json"})
    patch = json.load(opener.open(request))["id"]
    start = time.time()
    while "shown as plain text" in opener.open(f"{base}/patches/{patch}").read().decode():
        if time.time() - start > 60:
            sys.exit(f"{title}: not highlighted after a minute")
        time.sleep(0.1)
    return patch


big = submit("big", big_patch())
small = submit("cmdline", open(small_fix).read())
session = next(c for c in jar if c.name == "graftbench_session")
print(f"{session.name}={session.value}", big, small)
EOF
)

}

# The server's user and system CPU time so far, in clock ticks.
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$server/stat"
}

stop() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=
}

# One row per page and rate for binary `$1`, labelled `$2`.
measure() {
    start "$1"
    for page in "5,096-line patch:$big" "cmdline.patch:$small"; do
        local name=${page%%:*} id=${page#*:}
        for rate in "${rates[@]}"; do
            run() {
                oha --no-tui --output-format json -q "$rate" -z "$1" -c 50 \
                    --latency-correction -H "Cookie: $cookie" -H "Accept-Encoding: gzip, br" \
                    "http://127.0.0.1:$port/patches/$id"
            }
            run 5s >/dev/null
            local before after
            before=$(cpu_ticks)
            run 20s >"$work/result.json"
            after=$(cpu_ticks)
            python3 -c '
import json, sys
label, name, rate, ticks, path = sys.argv[1:6]
r = json.load(open(path))
summary, p = r["summary"], r["latencyPercentiles"]
def ms(v):
    return "-" if v is None else "%.1f ms" % (v * 1000)
codes = r.get("statusCodeDistribution", {})
bad = sum(n for code, n in codes.items() if code != "200")
bad += sum(r.get("errorDistribution", {}).values())
# CPU time of the server (user and system, in clock ticks of 10 ms) per answer.
answered = summary["requestsPerSec"] * summary["total"]
cpu = "%.2f ms" % (int(ticks) * 10 / answered) if answered else "-"
cells = [label, name, rate + "/s", "%.0f/s" % summary["requestsPerSec"], ms(p["p50"]),
         ms(p["p90"]), ms(p["p99"]), ms(summary["slowest"]), cpu, str(bad)]
print("| " + " | ".join(cells) + " |")
' "$2" "$name" "$rate" $((after - before)) "$work/result.json"
        done
    done
    stop
}

echo "| build | page | target rate | achieved | p50 | p90 | p99 | max | server CPU per answer | errors |"
echo "|---|---|---|---|---|---|---|---|---|---|"
if [ -n "${GRAFTBENCH_BASELINE:-}" ]; then
    measure "$GRAFTBENCH_BASELINE" baseline
fi
measure "$current" current

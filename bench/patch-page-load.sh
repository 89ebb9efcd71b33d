#!/usr/bin/env bash
# The patch page under a steady load: `graftbench serve` (release build, SQLite) and wrk
# on the same 2-core machine, wrk paced to a fixed rate of requests (a Lua script spaces
# each connection's requests), gzip asked for as a browser does.
#
# Pages: the generated 5,096-line, 30-file patch of `backend/benches/diff_page.rs` (its
# page carries the first 1,000 lines; the rest loads on demand) and, as the anchor in the
# same run, bench/fixes/cmdline.patch (one hunk). Each is submitted through the API and
# its page read until its store-time highlighting is done; then, per rate, 5 s of warm-up
# and 20 s measured.
#
# Usage: bench/patch-page-load.sh [RATE...]      (default: 250 500)
# Needs wrk (Debian's package), python3 and the browser bundle (cargo xtask site).
# Prints a Markdown report (the README's "Performance" section).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(250 500)
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

(cd "$repo" && cargo build --release -q -p graftbench --bin graftbench)
graftbench=${CARGO_TARGET_DIR:-$repo/target}/release/graftbench
data=$work/data
echo "bench-author-pw-1" | "$graftbench" --data-dir "$data" user add alice --role author \
    --password-stdin >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$graftbench" --data-dir "$data" serve --listen "127.0.0.1:$port" \
    --site-root "$repo/target/site" >"$work/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
    sleep 0.1
done

# Signs in, submits both fixes, waits for their highlighting; prints "cookie id id".
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

cat >"$work/paced.lua" <<'EOF'
-- Each connection waits INTERVAL_MS after each response before its next request: a
-- steady rate a little under connections / interval (by the responses' latency), never
-- a flood that measures only the queue.
local interval = tonumber(os.getenv("INTERVAL_MS"))
function delay()
    return interval
end
EOF

# 50 connections, each waiting 100 ms after each response at 500 req/s.
connections=50
echo "| page | target rate | achieved | p50 | p90 | p99 | max | errors |"
echo "|---|---|---|---|---|---|---|---|"
for page in "big:$big" "cmdline:$small"; do
    name=${page%%:*}
    id=${page#*:}
    for rate in "${rates[@]}"; do
        interval=$(( connections * 1000 / rate ))
        run() {
            INTERVAL_MS=$interval wrk -t 2 -c $connections -d "$1" --latency \
                -s "$work/paced.lua" -H "Cookie: $cookie" -H "Accept-Encoding: gzip, br" \
                "http://127.0.0.1:$port/patches/$id"
        }
        run 5s >/dev/null
        out=$(run 20s)
        achieved=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
        p50=$(awk '$1=="50%" {print $2}' <<<"$out")
        p90=$(awk '$1=="90%" {print $2}' <<<"$out")
        p99=$(awk '$1=="99%" {print $2}' <<<"$out")
        max=$(awk '/Latency/ && !/Distribution/ {print $4; exit}' <<<"$out")
        errors=$(awk '/Non-2xx|Socket errors/ {printf "%s ", $0}' <<<"$out")
        echo "| $name | $rate/s | $achieved/s | $p50 | $p90 | $p99 | $max | ${errors:-0} |"
    done
done

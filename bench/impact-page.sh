#!/usr/bin/env bash
# The patch page with its impact graph on a real Debian build (release binary): the
# `include/linux/list.h` fix (about a thousand functions to replace), against the anchor
# measured in the same run, the `fs/proc/cmdline.c` fix (one function).
#
# `graftbench serve` with the 6.1.0-56-cloud-amd64 target registered with its headers
# and source; each fix submitted and analysed; then, for each, the time from request to
# the last byte on the loopback of:
#   - the patch page (`GET /patches/ID`: the diff, the review, the pitfalls and the
#     impact panel with its graph, rendered by the server),
#   - the impact panel alone (`POST /api/ui/impact`, what the page loads after
#     hydration), and with a search.
#
# Usage: bench/impact-page.sh [WORKDIR]      (default: target/bench-impact)
# The build comes from the download cache (fetched once when missing, as in
# bench/targets.sh). Prints a Markdown report (the README's "Impact graph" section).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$repo/target/bench-impact}
release=6.1.0-56-cloud-amd64
cache=${GRAFTBENCH_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/graftbench/kernels}
debian=$cache/debian
rm -rf "$work"
mkdir -p -m 700 "$work"

(cd "$repo" && cargo build --release -q -p graftbench --bin graftbench)
graftbench=${CARGO_TARGET_DIR:-$repo/target}/release/graftbench

if [ ! -s "$debian/$release/vmlinux-$release" ] \
    || ! ls -d "$debian"/sources/linux-source-6.1_*/linux-source-6.1 >/dev/null 2>&1; then
    echo "fetching $release and its source into $cache" >&2
    "$graftbench" --data-dir "$work/fetch" target add --release "$release" --with-source >/dev/null
fi

source_dir=$(cd "$debian/sources" && ls -d linux-source-6.1_*/linux-source-6.1 | head -1)
data=$work/data
"$graftbench" --data-dir "$data" target add --vmlinux "$release/vmlinux-$release" \
    --kbuild-dir "$release/headers/usr/src/linux-headers-$release" \
    --source-dir "sources/$source_dir" --target-root "$debian" --name "$release" >/dev/null 2>&1
echo "bench-author-pw-1" | "$graftbench" --data-dir "$data" user add alice --role author \
    --password-stdin >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$graftbench" --data-dir "$data" serve --listen "127.0.0.1:$port" \
    --site-root "$repo/target/site" --target-root "$debian" >"$work/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
    sleep 0.1
done

python3 - "$port" "$repo/bench/fixes" "$release" "$(nproc)" <<'EOF'
import http.cookiejar, json, sys, time, urllib.parse, urllib.request

port, fixes, release, cores = sys.argv[1:5]
base = f"http://127.0.0.1:{port}"
jar = http.cookiejar.CookieJar()
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
origin = {"Origin": base}
form = urllib.parse.urlencode({"username": "alice", "password": "bench-author-pw-1"}).encode()
opener.open(urllib.request.Request(base + "/login", data=form, headers=origin))


def submit(name):
    diff = open(f"{fixes}/{name}").read()
    body = json.dumps({"title": name, "diff": diff}).encode()
    request = urllib.request.Request(base + "/api/v1/patches", data=body,
                                     headers={**origin, "Content-Type": "application/json"})
    patch = json.load(opener.open(request))["id"]
    start = time.time()
    while True:
        analyses = json.load(opener.open(f"{base}/api/v1/patches/{patch}/analyses"))
        found = analyses["revisions"][0]["analyses"]
        if found:
            return patch, found[0]
        if time.time() - start > 300:
            sys.exit(f"no analysis of {name}")
        time.sleep(0.2)


def timed(request, runs=20):
    times = []
    size = 0
    for _ in range(runs):
        start = time.time()
        with opener.open(request() if callable(request) else request) as response:
            size = len(response.read())
        times.append(time.time() - start)
    times.sort()
    return times[len(times) // 2] * 1000, times[-1] * 1000, size


def impact(patch, query=""):
    data = urllib.parse.urlencode({"id": patch, "revision": 1, "target": release,
                                   "query": query}).encode()
    return lambda: urllib.request.Request(base + "/api/ui/impact", data=data,
                                          headers={**origin, "Accept": "application/json"})


print(f"## Impact graph on {release} ({cores} cores, {time.strftime('%Y-%m-%d', time.gmtime())})")
print()
print("| fix | functions to replace | graph nodes | request | median | worst (20) | bytes |")
print("|---|---|---|---|---|---|---|")
for name in ["cmdline.patch", "list-add.patch"]:
    patch, analysis = submit(name)
    replace = len(analysis["report"]["replace"])
    panel = json.load(opener.open(impact(patch)()))
    nodes = len(panel["graph"]["nodes"])
    rows = [
        ("patch page", f"{base}/patches/{patch}"),
        ("impact panel", impact(patch)),
        ("impact panel, search `ext4`", impact(patch, "ext4")),
    ]
    for label, request in rows:
        median, worst, size = timed(request)
        print(f"| {name} | {replace} | {nodes} | {label} | {median:.0f} ms | {worst:.0f} ms | {size:,} |")
EOF

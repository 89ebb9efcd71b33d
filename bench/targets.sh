#!/usr/bin/env bash
# Kernel targets and analyses on a real Debian build, in one run (release binary):
#   - the anchor: `graftbench index --force` of the 6.1.0-56-cloud-amd64 vmlinux;
#   - the same index built by a worker: `graftbench target add --vmlinux` (a whole
#     registration: the database, a worker, the image's facts, the index, the move);
#   - a submission through the HTTP API until its analysis is stored, with `graftbench
#     serve` and its worker, against the same build registered with its headers (the
#     build's .config) and its source, as `target add --release --with-source` gives:
#     each fix is mapped onto the source and judged with the configuration.
#
# Usage: bench/targets.sh [WORKDIR]      (default: target/bench-targets)
# The vmlinux comes from the download cache Graftbench keeps (fetched once by
# `graftbench target add --release 6.1.0-56-cloud-amd64`, 283 MB, when missing).
# Prints a Markdown report (the README's "Targets and analyses" bench section).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$repo/target/bench-targets}
release=6.1.0-56-cloud-amd64
cache=${GRAFTBENCH_KERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/graftbench/kernels}
root=$cache/debian/$release
vmlinux=$root/vmlinux-$release
rm -rf "$work"
mkdir -p -m 700 "$work"

(cd "$repo" && cargo build --release -q -p graftbench --bin graftbench)
graftbench=${CARGO_TARGET_DIR:-$repo/target}/release/graftbench

if [ ! -s "$vmlinux" ] || ! ls -d "$cache"/debian/sources/linux-source-6.1_*/linux-source-6.1 >/dev/null 2>&1; then
    echo "fetching $release and its source into $cache" >&2
    "$graftbench" --data-dir "$work/fetch" target add --release "$release" --with-source >/dev/null
fi

seconds() { python3 -c 'import sys,time; print(time.time())'; }

echo "## Targets and analyses on $release ($(nproc) cores, $(date -u +%Y-%m-%d))"
echo
echo "| run | graftbench index --force | target add (a worker indexes) | ratio |"
echo "|---|---|---|---|"
for run in 1 2 3; do
    start=$(seconds)
    "$graftbench" --data-dir "$work/cli" index --force "$vmlinux" -o "$work/anchor.gbindex" >/dev/null
    mid=$(seconds)
    "$graftbench" --data-dir "$work/run$run" target add --vmlinux "vmlinux-$release" \
        --target-root "$root" --name "bench$run" >/dev/null 2>&1
    end=$(seconds)
    python3 -c "import sys; a=$mid-$start; b=$end-$mid; print('| %d | %.2f s | %.2f s | %.2f |' % ($run, a, b, b/a))"
done
echo

# The build with its headers and source, under a root holding both, for the server.
debian=$cache/debian
source_dir=$(cd "$debian/sources" && ls -d linux-source-6.1_*/linux-source-6.1 | head -1)
data=$work/src
"$graftbench" --data-dir "$data" target add --vmlinux "$release/vmlinux-$release" \
    --kbuild-dir "$release/headers/usr/src/linux-headers-$release" \
    --source-dir "sources/$source_dir" --target-root "$debian" --name bench-src >/dev/null 2>&1
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

python3 - "$port" "$repo/bench/fixes/cmdline.patch" <<'EOF'
import http.cookiejar, json, sys, time, urllib.parse, urllib.request

port, fix_file = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}"
jar = http.cookiejar.CookieJar()
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
origin = {"Origin": base}
form = urllib.parse.urlencode({"username": "alice", "password": "bench-author-pw-1"}).encode()
opener.open(urllib.request.Request(base + "/login", data=form, headers=origin))
fix = open(fix_file).read()
times = []
for run in range(1, 11):
    # A diff of its own each time: an analysis is stored per diff, build and version.
    diff = fix.replace('" patched\\n"', f'" patched {run}\\n"')
    body = json.dumps({"title": f"bench {run}", "diff": diff}).encode()
    start = time.time()
    request = urllib.request.Request(base + "/api/v1/patches", data=body,
                                     headers={**origin, "Content-Type": "application/json"})
    patch = json.load(opener.open(request))["id"]
    while True:
        analyses = json.load(opener.open(f"{base}/api/v1/patches/{patch}/analyses"))
        found = analyses["revisions"][0]["analyses"]
        if found:
            break
        failed = [j for j in analyses["revisions"][0]["jobs"] if j["state"] == "failed"]
        if failed or time.time() - start > 60:
            sys.exit(f"no analysis of patch {patch}: {failed or 'timed out'}")
        time.sleep(0.02)
    times.append(time.time() - start)
    assert found[0]["report"]["replace"][0]["symbol"] == "cmdline_proc_show", found
    assert found[0]["report"]["basis"] == "target-source", found[0]["report"]["basis"]
times.sort()
print("| submission to stored analysis (10 fixes) | median | worst |")
print("|---|---|---|")
print(f"| cmdline.patch variants | {times[len(times)//2]*1000:.0f} ms | {times[-1]*1000:.0f} ms |")
EOF

#!/usr/bin/env bash
# What the sign-in limits give an attacker, and what they cost in memory, against a real
# `graftbench serve` (default limits) on 127.0.0.1, in one run:
#   1. One account, wrong passwords, a new client address on every request (a botnet, so
#      the per-address limit never applies), for DURATION seconds: how many guesses the
#      server actually checks (303) and how many it refuses (429 with Retry-After). This
#      is the per-account limit: 5 at once, then one per 12 s, after 50 in a row one per
#      2 minutes. Twice: as fast as 4 connections go ("flood"), and one connection that
#      waits out each Retry-After ("paced"). Refused attempts do not count towards the
#      long quota, so both get the burst and then one attempt per 12 s until 50 were
#      checked. An attacker picks the better of the two.
#   2. One client address, a new account name on every request (password spraying): the
#      per-address limit (30 at once, then one per 2 s, after 300 one per 20 s), likewise
#      flood and paced. The server's log says which limit refused each attempt; the
#      report counts both, to show the other limit never interfered.
#   3. 64 concurrent sign-ins (right and wrong passwords, distinct accounts and addresses,
#      so neither limit applies), ROUNDS times: the server's peak RSS (VmHWM) while each
#      argon2 hash takes 19 MiB, with the default hashing slots (two per core; beyond
#      them a 503 with Retry-After) and with 64 slots, the unbounded anchor. Absolute
#      memory and times vary ~3x between machines; compare the rows of one run. Both
#      again with glibc's mmap threshold fixed by GLIBC_TUNABLES: the server pins that
#      threshold itself at start-up (main.rs), so those rows should now match the first
#      two; before it did, freed hash blocks stayed in glibc's arenas and the peak grew
#      with the rounds. "One sign-in alone" (median of 3 on the idle server afterwards)
#      is the machine's speed.
# Only the first DURATION seconds are measured (the long quotas, 50 and 300 checked
# attempts, take longer to reach at these paces).
#
# Usage: bench/sign-in.sh            60 s per flood, about 5 minutes in all
#        QUICK=1 bench/sign-in.sh    20 s per flood, about 2 minutes
#        DURATION=S ROUNDS=N WORKERS=N bench/sign-in.sh   (ROUNDS 1 to 5, default 3;
#                                    WORKERS: connections of a flood, default 4)
#        GRAFTBENCH=path/to/graftbench bench/sign-in.sh   use this binary, do not build
#        SITE_ROOT=DIR               the browser bundle (default target/site, made by
#                                    `cargo xtask site`)
# Builds the release binary with cargo (into target/, or $CARGO_TARGET_DIR) unless
# GRAFTBENCH is set. Every server, account and log lives in a temporary directory that is
# removed on exit; the servers listen on 127.0.0.1 only, on a port the kernel picks, and
# are killed on exit. Builds, servers and load run at nice 19. The unbounded run takes
# about 1.3 GiB per round (it checks MemAvailable first). Needs python3 (standard
# library only). Prints a Markdown report on stdout, progress on stderr.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
if [ "${QUICK:-}" = 1 ]; then duration=${DURATION:-20}; else duration=${DURATION:-60}; fi
rounds=${ROUNDS:-3}
workers=${WORKERS:-4}
site=${SITE_ROOT:-$repo/target/site}
# Each memory round spends one attempt of each load account's burst of 5: more than 5
# rounds would meet the per-account limit instead of the hashing slots.
[ "$rounds" -ge 1 ] && [ "$rounds" -le 5 ] || { echo "ROUNDS must be 1 to 5" >&2; exit 2; }
available_mib=$(awk '/^MemAvailable:/ {print int($2 / 1024)}' /proc/meminfo)
[ "$available_mib" -ge $((rounds * 1300 + 500)) ] || {
    echo "the unbounded run needs about $((rounds * 1300 + 500)) MiB, $available_mib MiB available: lower ROUNDS" >&2
    exit 2
}
command -v python3 >/dev/null || { echo "needs python3" >&2; exit 2; }
[ -s "$site/pkg/graftbench_ui.js" ] ||
    { echo "no browser bundle in $site/pkg: run \`cargo xtask site\` first" >&2; exit 2; }

if [ -z "${GRAFTBENCH:-}" ]; then
    echo "building graftbench (release)" >&2
    (cd "$repo" && nice -n 19 cargo build --release -q -p graftbench --bin graftbench)
fi
graftbench=${GRAFTBENCH:-${CARGO_TARGET_DIR:-$repo/target}/release/graftbench}

work=$(mktemp -d "${TMPDIR:-/tmp}/graftbench-sign-in.XXXXXX")
server=
stop_server() {
    [ -n "$server" ] || return 0
    kill "$server" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=
}
cleanup() { stop_server; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

password='a long password 123'
data=$work/data

# The load generator: python's standard library, one HTTP/1.1 keep-alive connection per
# worker, every answer counted by status. Subcommands: wait, flood, burst.
cat >"$work/load.py" <<'PY'
import http.client, itertools, json, statistics, sys, threading, time
from collections import Counter
from urllib.parse import urlencode, urlsplit

def host_port(url):
    u = urlsplit(url)
    return u.hostname, u.port

def status_kib(pid):
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values

def sign_in(conn, user, password, forwarded):
    """One POST /login: (status, Location, Retry-After), status 0 for a transport error."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if forwarded:
        headers["X-Forwarded-For"] = forwarded
    try:
        conn.request("POST", "/login", urlencode({"username": user, "password": password}), headers)
        r = conn.getresponse()
        r.read()
        return r.status, r.getheader("Location") or "", r.getheader("Retry-After")
    except (http.client.HTTPException, OSError):
        conn.close()  # http.client reconnects on the next request
        return 0, "", None

def bench_address(i):
    """The i-th address of 198.18.0.0/15 (RFC 2544, for benchmarks): 131,070 of them."""
    n = (198 << 24 | 18 << 16) + 1 + i % ((1 << 17) - 2)
    return ".".join(str(n >> s & 255) for s in (24, 16, 8, 0))

def wait(url):
    host, port = host_port(url)
    for _ in range(100):
        try:
            conn = http.client.HTTPConnection(host, port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit("the server did not answer /healthz within 10 s")

def flood(url, seconds, target, pace, workers, password):
    """Wrong passwords for `target` (one account, or one address) for `seconds`: as fast
    as `workers` connections go (pace "flood"), or one connection that waits out each
    Retry-After exactly as sent (pace "paced")."""
    host, port = host_port(url)
    counter = itertools.count()
    start = time.monotonic()
    deadline = start + seconds
    answers, lock = [], threading.Lock()

    def work():
        conn = http.client.HTTPConnection(host, port, timeout=30)
        mine = []
        while time.monotonic() < deadline:
            i = next(counter)
            if target == "account":  # one account, never the same address twice
                user, forwarded = "victim", bench_address(i)
            else:                    # one address, never the same account twice
                user, forwarded = f"guess-{i}", "192.0.2.1"
            status, _, retry = sign_in(conn, user, password, forwarded)
            mine.append((time.monotonic() - start, status, retry))
            if pace == "paced" and retry and retry.isdigit():
                # The server drops a connection idle for 10 s: a new one after each wait.
                conn.close()
                time.sleep(max(0.0, min(int(retry), deadline - time.monotonic())))
        conn.close()
        with lock:
            answers.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(workers if pace == "flood" else 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    status = Counter(s for _, s, _ in answers)
    refused = [r for _, s, r in answers if s == 429]
    waits = sorted(int(r) for r in refused if r and r.isdigit())
    checked = sorted(t for t, s, _ in answers if s == 303)
    # The burst: checked answers until the first gap of more than a second (a hash takes
    # tens of ms; the default refills come 2 s and 12 s apart). Then the refill interval.
    burst = len(checked)
    for k in range(1, len(checked)):
        if checked[k] - checked[k - 1] > 1.0:
            burst = k
            break
    gaps = [b - a for a, b in zip(checked[burst - 1:], checked[burst:])] if burst else []
    print(json.dumps({
        "elapsed": elapsed, "sent": len(answers), "checked": status[303],
        "refused": status[429], "refused_with_retry_after": len(waits),
        "retry_after_min": waits[0] if waits else None,
        "retry_after_max": waits[-1] if waits else None,
        "busy": status[503], "errors": status[0],
        "other": sum(n for s, n in status.items() if s not in (0, 303, 429, 503)),
        "burst": burst, "refill_s": statistics.median(gaps) if gaps else None,
        "last_checked_s": checked[-1] if checked else None,
    }))

def burst(url, pid, rounds, n, password):
    host, port = host_port(url)
    before = status_kib(pid)
    counts, lock = Counter(), threading.Lock()
    start = time.monotonic()
    peaks = []
    for _ in range(rounds):
        barrier = threading.Barrier(n, timeout=60)

        def one(i):
            conn = http.client.HTTPConnection(host, port, timeout=60)
            try:
                conn.connect()
            except OSError:
                pass
            barrier.wait()  # all 64 requests leave together
            right = i % 2 == 0
            status, location, retry = sign_in(
                conn, f"load-{i}", password if right else "wrong password", f"198.51.100.{i + 1}")
            conn.close()
            if status == 303:
                kind = "wrong" if location.startswith("/login?error=1") else "signed_in"
            elif status == 503:
                kind = "busy" if retry else "busy_without_retry_after"
            else:
                kind = str(status)
            with lock:
                counts[kind] += 1

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        peaks.append(status_kib(pid)["VmHWM"])
    wall = time.monotonic() - start
    after = status_kib(pid)
    # The machine anchor: one sign-in alone on the idle server (median of 3).
    conn = http.client.HTTPConnection(host, port, timeout=30)
    alone = []
    for _ in range(3):
        t = time.perf_counter()
        sign_in(conn, "anchor", password, "192.0.2.200")
        alone.append(time.perf_counter() - t)
    print(json.dumps({
        "rss_before": before["VmRSS"], "hwm_before": before["VmHWM"],
        "hwm": after["VmHWM"], "rss_after": after["VmRSS"], "peaks": peaks,
        "counts": counts, "wall": wall, "alone_ms": statistics.median(alone) * 1000,
    }))

command = sys.argv[1]
if command == "wait":
    wait(sys.argv[2])
elif command == "flood":
    flood(sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6]), sys.argv[7])
elif command == "burst":
    burst(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
PY
load() { nice -n 19 python3 "$work/load.py" "$@"; }
# Starts `graftbench serve` with the default limits plus "$@", on a free loopback port,
# believing X-Forwarded-For from 127.0.0.1 (this script plays the proxy). Sets $server
# (its pid: nice execs graftbench) and $url; its log goes to $work/$name.log.
start_server() {
    local name=$1
    shift
    : >"$work/$name.out"
    # Throttled attempts are logged at debug level only (a flood must not flood the log).
    RUST_LOG="info,sqlx=warn,tower_sessions=warn,graftbench::web::handlers=debug" \
    NO_COLOR=1 nice -n 19 "$graftbench" --data-dir "$data" serve --listen 127.0.0.1:0 \
        --site-root "$site" --trusted-proxy 127.0.0.1 "$@" \
        >"$work/$name.out" 2>"$work/$name.log" &
    server=$!
    url=
    for _ in $(seq 100); do
        url=$(sed -n 's/^Graftbench is running at //p' "$work/$name.out")
        [ -n "$url" ] && break
        kill -0 "$server" 2>/dev/null || { cat "$work/$name.log" >&2; exit 1; }
        sleep 0.1
    done
    [ -n "$url" ] || { echo "the server did not start" >&2; cat "$work/$name.log" >&2; exit 1; }
    load wait "$url"
}
# Lines of a server log saying an attempt was throttled by the address (true) or the
# account (false) limit.
throttled_by_address() {
    sed 's/\x1b\[[0-9;]*m//g' "$work/$1.log" | grep 'sign-in throttled' | grep -c "by_address=$2" || true
}

echo "creating 66 accounts in $data" >&2
add_user() { printf '%s\n' "$password" |
    nice -n 19 "$graftbench" --data-dir "$data" user add "$1" --role reviewer --password-stdin >/dev/null; }
add_user victim
add_user anchor
for i in $(seq 0 63); do add_user "load-$i"; done

# Four floods, each on a fresh server (fresh limiters): one account and one address,
# each as fast as possible and paced by Retry-After.
for attack in account-flood account-paced address-flood address-paced; do
    echo "$attack: ${duration} s" >&2
    start_server "$attack"
    load flood "$url" "$duration" "${attack%-*}" "${attack#*-}" "$workers" "wrong password" \
        >"$work/$attack.json"
    stop_server
done
# The memory runs: default slots and 64, each with glibc's malloc as it comes and with
# its mmap threshold fixed at 4 MiB, so that each 19 MiB argon2 block is mapped and
# returned to the kernel when freed (glibc only; other libcs ignore GLIBC_TUNABLES).
# By default glibc raises the threshold past 19 MiB after the first free, and the blocks
# then stay in its per-thread arenas: the peak grows with the rounds, not only with the
# concurrency.
fixed=glibc.malloc.mmap_threshold=4194304
for run in bounded unbounded bounded-mmap unbounded-mmap; do
    case $run in
    unbounded*) slots=(--password-hash-slots 64) ;;
    *) slots=() ;;
    esac
    case $run in
    *-mmap) tunables=$fixed ;;
    *) tunables=${GLIBC_TUNABLES:-} ;;
    esac
    echo "$run: 64 concurrent sign-ins x $rounds" >&2
    GLIBC_TUNABLES=$tunables start_server "$run" "${slots[@]}"
    load burst "$url" "$server" "$rounds" 64 "$password" >"$work/$run.json"
    stop_server
done

cores=$(nproc)
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
if [ -n "${GRAFTBENCH:-}" ]; then
    built="binary $GRAFTBENCH"
else
    built="commit $(git -C "$repo" rev-parse --short HEAD)"
    git -C "$repo" diff --quiet HEAD || built="$built with uncommitted changes"
fi
echo "## Sign-in limits ($cores cores, $(date -u +%Y-%m-%d), $built)"
echo
echo "CPU: $cpu. Default limits: 5 attempts per account at once, then one per 12 s, after"
echo "50 in a row one per 2 min; 30 per address, then one per 2 s, after 300 one per 20 s;"
echo "$((2 * cores)) password-hashing slots (two per core). Wrong passwords for ${duration} s;"
echo "\"flood\" is $workers connections as fast as they go, \"paced\" one connection that waits out"
echo "each Retry-After as sent. Checked = answered 303 (the password was hashed)."
echo
echo "| attack | requests | checked (303) | refused (429) | Retry-After | busy (503) | checked per minute over the ${duration} s | checked when |"
echo "|---|---|---|---|---|---|---|---|"
for attack in account-flood account-paced address-flood address-paced; do
    case $attack in
    account-*) what="one account, a new address each request, ${attack#*-}" ;;
    address-*) what="one address, a new account name each request, ${attack#*-}" ;;
    esac
    python3 - "$work/$attack.json" "$what" <<'PY'
import json, sys
j, what = json.load(open(sys.argv[1])), sys.argv[2]
refused = f'{j["refused"]}' + ("" if j["refused_with_retry_after"] == j["refused"]
                               else f' ({j["refused"] - j["refused_with_retry_after"]} without Retry-After)')
waits = f'{j["retry_after_min"]}–{j["retry_after_max"]} s' if j["retry_after_min"] is not None else "–"
when = f'{j["burst"]} at once'
if j["refill_s"]:
    when += f', then one per {j["refill_s"]:.1f} s'
# Nothing checked for longer than the refill interval at the end: say so.
rest = j["elapsed"] - (j["last_checked_s"] or 0)
if rest > (j["refill_s"] or 0) * 1.5 + 1:
    when += f', then none in the last {rest:.0f} s'
print(f'| {what} | {j["sent"]} | {j["checked"]} | {refused} | {waits} | {j["busy"]} '
      f'| {j["checked"] * 60 / j["elapsed"]:.1f} | {when} |')
PY
done
echo
for attack in account-flood account-paced address-flood address-paced; do
    j=$work/$attack.json
    echo "- $attack: the server log says $(throttled_by_address "$attack" true) refusals by the address"\
        "limit, $(throttled_by_address "$attack" false) by the account limit; transport errors"\
        "$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("%d, other statuses %d" % (j["errors"], j["other"]))' "$j")."
done
echo
echo "| 64 concurrent sign-ins × $rounds rounds | hashing slots | VmRSS before | peak RSS (VmHWM) | VmHWM after each round | VmRSS after | signed in (303) | wrong password (303) | busy (503 + Retry-After) | other | wall time | one sign-in alone |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for run in bounded unbounded bounded-mmap unbounded-mmap; do
    case $run in
    bounded) what="bounded (default)" slots=$((2 * cores)) ;;
    unbounded) what="unbounded anchor" slots=64 ;;
    bounded-mmap) what="bounded, mmap threshold 4 MiB" slots=$((2 * cores)) ;;
    unbounded-mmap) what="unbounded, mmap threshold 4 MiB" slots=64 ;;
    esac
    python3 - "$work/$run.json" "$what" "$slots" <<'PY'
import json, sys
j, what, slots = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
c = j["counts"]
mib = lambda kib: f"{kib / 1024:.0f} MiB"
other = sum(n for k, n in c.items() if k not in ("signed_in", "wrong", "busy"))
peaks = ", ".join(f"{kib / 1024:.0f}" for kib in j["peaks"])
print(f'| {what} | {slots} | {mib(j["rss_before"])} | {mib(j["hwm"])} | {peaks} | {mib(j["rss_after"])} '
      f'| {c.get("signed_in", 0)} | {c.get("wrong", 0)} | {c.get("busy", 0)} | {other} '
      f'| {j["wall"]:.1f} s | {j["alone_ms"]:.0f} ms |')
PY
done

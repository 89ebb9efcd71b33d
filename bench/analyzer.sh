#!/usr/bin/env bash
# The analyzer on a real distribution kernel, in one run:
#   - `graftbench index`: wall time and peak memory (3 runs), index size;
#   - `graftbench analyze --index` for the fixes in bench/fixes/ (hyperfine);
#   - `graftbench where` next to `llvm-dwarfdump --name=FUNC --show-children` for the
#     functions those fixes change, and the inline-site count of a sample of functions
#     cross-checked against llvm-dwarfdump's.
#
# Usage: bench/analyzer.sh [WORKDIR]     (default: target/bench-kernel)
#        WITH_MODULES=1 bench/analyzer.sh  also indexes the 4,023 module debug files
#                                          (5.1 GB more on disk) and analyses with them.
# Downloads linux-image-6.1.0-56-amd64-dbg (about 860 MB) once and keeps only the
# vmlinux (633 MB) in WORKDIR. Installs llvm and hyperfine with apt-get when missing.
# Prints a Markdown report (the README's "Analyzer performance" section came from it).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$repo/target/bench-kernel}
package=linux-image-6.1.0-56-amd64-dbg
vmlinux=$work/vmlinux-6.1.0-56-amd64
index=$work/vmlinux.gbindex
mkdir -p "$work"

need() { command -v "$1" >/dev/null || { echo "installing $2" >&2; apt-get install -y -qq "$2" >/dev/null; }; }
need llvm-dwarfdump llvm
need hyperfine hyperfine
need python3 python3

modules=$work/modules
fetch() {
    echo "downloading $package" >&2
    (cd "$work" && apt-get download -q "$package" >/dev/null 2>&1)
    ls "$work"/"$package"_*.deb
}
if [ ! -s "$vmlinux" ]; then
    deb=$(fetch)
    dpkg-deb --fsys-tarfile "$deb" |
        tar -x -O ./usr/lib/debug/boot/vmlinux-6.1.0-56-amd64 >"$vmlinux.part"
    mv "$vmlinux.part" "$vmlinux"
    [ "${WITH_MODULES:-}" = 1 ] || rm -f "$deb"
fi
if [ "${WITH_MODULES:-}" = 1 ] && [ ! -d "$modules" ]; then
    deb=$(ls "$work"/"$package"_*.deb 2>/dev/null || fetch)
    mkdir -p "$modules.part"
    dpkg-deb --fsys-tarfile "$deb" |
        tar -x -C "$modules.part" --strip-components=7 --wildcards './usr/lib/debug/lib/modules/*'
    mv "$modules.part" "$modules"
    rm -f "$deb"
fi

(cd "$repo" && cargo build --release -q -p graftbench --bin graftbench)
graftbench=${CARGO_TARGET_DIR:-$repo/target}/release/graftbench

echo "## Analyzer on $(basename "$vmlinux") ($(nproc) cores, $(date -u +%Y-%m-%d))"
echo
echo "debug_info: $(readelf -SW "$vmlinux" | awk '$2==".debug_info" {printf "%.0f MiB", strtonum("0x"$6)/1048576}')"
echo
echo "| index build | wall time | peak RSS |"
echo "|---|---|---|"
for run in 1 2 3; do
    /usr/bin/time -f "%e %M" -o "$work/time" "$graftbench" index --force "$vmlinux" -o "$index" >/dev/null
    read -r seconds kbytes <"$work/time"
    echo "| run $run | ${seconds} s | $((kbytes / 1024)) MiB |"
done
echo
echo "Index size: $(stat -c %s "$index" | awk '{printf "%.1f MB", $1/1e6}')"
echo

echo "| fix | functions to replace | analyze --index (mean of 20) |"
echo "|---|---|---|"
for fix in "$repo"/bench/fixes/*.patch; do
    if ! report=$("$graftbench" analyze --index "$index" "$fix" --format json 2>/dev/null); then
        echo "| $(basename "$fix") | (not in vmlinux: a module fix) | |"
        continue
    fi
    replaced=$(echo "$report" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["replace"]))')
    hyperfine -N -w 3 -r 20 --export-json "$work/hf.json" \
        "$graftbench analyze --index $index $fix" >/dev/null 2>&1
    mean=$(python3 -c 'import json,sys; print("%.1f ms" % (json.load(open(sys.argv[1]))["results"][0]["mean"]*1000))' "$work/hf.json")
    echo "| $(basename "$fix") | $replaced | $mean |"
done
echo

echo "| function | inline sites: graftbench | llvm-dwarfdump | graftbench where | llvm-dwarfdump --name --show-children |"
echo "|---|---|---|---|---|"
for function in cmdline_proc_show __list_add ip_rcv_finish_core skb_put kfree_skb_reason copy_from_user; do
    ours=$("$graftbench" where --index "$index" "$function" --format json |
        python3 -c 'import json,sys; print(sum(p["inline_sites"] for p in json.load(sys.stdin)))')
    start=$(date +%s.%N)
    "$graftbench" where --index "$index" "$function" >/dev/null
    where_ms=$(echo "$start $(date +%s.%N)" | awk '{printf "%.0f ms", ($2-$1)*1000}')
    start=$(date +%s.%N)
    llvm-dwarfdump --name="$function" --show-children "$vmlinux" >"$work/llvm.txt"
    llvm_s=$(echo "$start $(date +%s.%N)" | awk '{printf "%.1f s", $2-$1}')
    # Without --show-children only the DIEs named FUNC are printed; llvm-dwarfdump names
    # an inlined copy by its abstract origin, so each inlined copy is one such DIE.
    theirs=$(llvm-dwarfdump --name="$function" "$vmlinux" | grep -c 'DW_TAG_inlined_subroutine' || true)
    mark=$([ "$ours" = "$theirs" ] && echo "" || echo " (differs)")
    echo "| $function | $ours | $theirs$mark | $where_ms | $llvm_s |"
done

if [ "${WITH_MODULES:-}" = 1 ]; then
    full=$work/full.gbindex
    echo
    echo "With the $(find "$modules/" -name '*.ko' | wc -l) module debug files:"
    echo
    /usr/bin/time -f "%e %M" -o "$work/time" "$graftbench" index --force "$vmlinux" \
        --modules "$modules" -o "$full" >/dev/null
    read -r seconds kbytes <"$work/time"
    echo "Index build ${seconds} s, peak RSS $((kbytes / 1024)) MiB, $(stat -c %s "$full" | awk '{printf "%.1f MB", $1/1e6}')."
    echo
    echo "| fix | objects | functions to replace | analyze --index (mean of 10) |"
    echo "|---|---|---|---|"
    for fix in "$repo"/bench/fixes/*.patch; do
        counts=$("$graftbench" analyze --index "$full" "$fix" --format json |
            python3 -c 'import json,sys; r=json.load(sys.stdin); print(len(r["objects"]), "|", len(r["replace"]))')
        hyperfine -N -w 2 -r 10 --export-json "$work/hf.json" \
            "$graftbench analyze --index $full $fix" >/dev/null 2>&1
        mean=$(python3 -c 'import json,sys; print("%.0f ms" % (json.load(open(sys.argv[1]))["results"][0]["mean"]*1000))' "$work/hf.json")
        echo "| $(basename "$fix") | $counts | $mean |"
    done
fi

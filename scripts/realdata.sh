#!/usr/bin/env bash
# End-to-end benchmark of the strata CLI on real data (issue 14), whole processes timed,
# each beside its baseline in the same run:
#
#   bash scripts/realdata.sh data   # build the data set (once; kept in $REALDATA_DIR)
#   bash scripts/realdata.sh run    # time it
#   bash scripts/realdata.sh        # both
#
# The data set: a tar of installed binaries and libraries (a fixed-size sample of
# /usr/lib), a copy of it with a few hundred small insertions, and random bytes of the
# same size. The baselines: "chunk + hash" (examples/chunkhash.rs: FastCDC cut points and
# BLAKE3 over the same bytes in memory, one thread) and restic on the same two versions.
# docs/performance.md, "End to end on real data (issue 14)", has what each number means.
#
# Settings, from the environment:
#   REALDATA_DIR     where the data set, the stores and the results go (/tmp/strata-realdata)
#   REALDATA_SRC     directories to sample, space-separated (/usr/lib)
#   REALDATA_SIZE    bytes of files in the tar, K/M/G suffixes in powers of 1024 (1240M: 1.3 GB)
#   REALDATA_EDITS   insertions in the edited copy (300)
#   REALDATA_SEED    seed of the insertions and of the random bytes (14)
#   REALDATA_ROUNDS  rounds of baseline, strata, restic, alternating (5)
#   REALDATA_SETTLE  seconds to sleep after `sync`, before every timed run (1)
#   REALDATA_RESTIC  0 to leave restic out (1)
#   STRATA_BIN       the strata binary ($CARGO_TARGET_DIR/release/strata; built if missing)
#   CHUNKHASH_BIN    the baseline ($CARGO_TARGET_DIR/release/examples/chunkhash; built if missing)
#   STRATA_CONFIG    a settings file for strata, e.g. one with [hot] blob_compression = "none";
#                    the baseline reads its [chunking] too, so both cut the same chunks
set -euo pipefail
repo_dir="$(cd "$(dirname "$0")/.." && pwd)"
. "$repo_dir/scripts/env.sh"

dir="${REALDATA_DIR:-/tmp/strata-realdata}"
src="${REALDATA_SRC:-/usr/lib}"
size_arg="${REALDATA_SIZE:-1240M}"
edits="${REALDATA_EDITS:-300}"
seed="${REALDATA_SEED:-14}"
rounds="${REALDATA_ROUNDS:-5}"
settle="${REALDATA_SETTLE:-1}"
with_restic="${REALDATA_RESTIC:-1}"
strata="${STRATA_BIN:-$CARGO_TARGET_DIR/release/strata}"
chunkhash="${CHUNKHASH_BIN:-$CARGO_TARGET_DIR/release/examples/chunkhash}"
helper="$repo_dir/scripts/realdata.py"

tar_file="$dir/lib.tar"
edited_file="$dir/lib-edited.tar"
random_file="$dir/random.bin"

die() { echo "realdata: $*" >&2; exit 1; }

make_data() {
    command -v python3 >/dev/null || need_packages python3
    local bytes sources=() d
    bytes=$(numfmt --from=iec "$size_arg")
    # Absolute paths: the helper lists files relative to / for `tar -C /`.
    for d in $src; do sources+=("$(realpath "$d")"); done
    # The first line names everything the bytes depend on, the helper's code included; a
    # data set built otherwise is rebuilt rather than silently reused.
    local stamp
    stamp="src=${sources[*]} size=$bytes edits=$edits seed=$seed helper=$(sha256sum "$helper" | cut -c 1-12)"
    mkdir -p "$dir"
    if [ -f "$dir/dataset.txt" ] && [ "$(head -n 1 "$dir/dataset.txt")" = "$stamp" ]; then
        echo "data set in $dir is up to date ($stamp)" >&2
        return
    fi
    rm -f "$dir/dataset.txt"
    echo "building the data set in $dir ($stamp)" >&2
    python3 "$helper" select "$bytes" "${sources[@]}" >"$dir/files.list"
    # Every header field that could differ between two builds from the same files is
    # fixed; the list is already in name order, so no directory is read in readdir order.
    # (--null and --no-recursion are positional: they must come before --files-from.)
    tar --create --file="$tar_file.part" --format=gnu --sort=name --mtime=@0 \
        --owner=0 --group=0 --numeric-owner -C / --null --no-recursion --files-from="$dir/files.list"
    mv "$tar_file.part" "$tar_file"
    python3 "$helper" edit "$tar_file" "$edited_file" "$edits" "$seed"
    python3 "$helper" random "$random_file" "$(stat -c %s "$tar_file")" "$seed"
    {
        echo "$stamp"
        (cd "$dir" && stat -c '%s %n' lib.tar lib-edited.tar random.bin && sha256sum lib.tar lib-edited.tar random.bin)
    } >"$dir/dataset.txt.part"
    mv "$dir/dataset.txt.part" "$dir/dataset.txt"
    cat "$dir/dataset.txt" >&2
}

# Build what is missing, in the shared target directory: a fresh clone reuses the
# RocksDB build of any other clone on the machine.
need_binaries() {
    if [ ! -x "$strata" ] && [ -z "${STRATA_BIN:-}" ]; then
        (cd "$repo_dir" && cargo build --release --bin strata)
    fi
    if [ ! -x "$chunkhash" ] && [ -z "${CHUNKHASH_BIN:-}" ]; then
        (cd "$repo_dir" && cargo build --release --example chunkhash)
    fi
    [ -x "$strata" ] || die "no strata binary at $strata"
    [ -x "$chunkhash" ] || die "no chunkhash binary at $chunkhash"
    [ -x /usr/bin/time ] || need_packages time
    if [ "$with_restic" = 1 ] && ! command -v restic >/dev/null; then
        need_packages restic
    fi
}

ns() { date +%s%N; }

# Bytes in files under a directory (apparent sizes: what the files hold, not the
# blocks a filesystem happens to have allocated or preallocated for them).
bytes_of() { if [ -e "$1" ]; then du -sb "$1" | cut -f 1; else echo 0; fi; }

# The hot tier is the RocksDB database (with the embedded metadata) in the data
# directory; the local warm and cold tiers are directories under its tiers/.
hot_bytes() { echo $(($(bytes_of "$1") - $(bytes_of "$1/tiers"))); }

record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$results"; }

size_of() {
    local round=$1 name=$2 bytes=$3
    record "$round" size "$name" "$bytes" - - -
    printf '  %-26s %15d bytes\n' "$name" "$bytes"
}

# timed ROUND NAME STDOUT CMD...: one whole process, from just before it is started to
# its exit. `sync` and a pause first, so the previous run's writeback is not charged to
# this one.
timed() {
    local round=$1 name=$2 out=$3
    shift 3
    sync
    sleep "$settle"
    local t0 t1 user sys rss
    t0=$(ns)
    if ! /usr/bin/time -f '%U %S %M' -o "$work/time" "$@" >"$out" 2>"$work/err"; then
        cat "$work/err" >&2
        die "$name failed: $*"
    fi
    t1=$(ns)
    read -r user sys rss <"$work/time"
    local secs
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
    record "$round" time "$name" "$secs" "$user" "$sys" "$rss"
    printf '  %-26s %8.3f s   user %6.2f  sys %5.2f  max RSS %4d MB\n' \
        "$name" "$secs" "$user" "$sys" $((rss / 1024))
    # What the command said (put's receipt: chunks new and reused), under its time.
    sed 's/^/      /' "$work/err"
}

# A: the baselines. chunk + hash: its timed loop only (each file is read into memory
# first, untimed); the copy: a whole process.
round_baseline() {
    local r=$1 secs bytes chunks id file name
    sync
    sleep "$settle"
    "$chunkhash" "$tar_file" "$random_file" "$edited_file" >"$work/chunkhash"
    while IFS=$'\t' read -r secs bytes chunks id file; do
        case "$file" in
            "$tar_file") name=base_tar; tar_id=$id ;;
            "$random_file") name=base_random ;;
            "$edited_file") name=base_edited ;;
        esac
        record "$r" time "$name" "$secs" - - -
        printf '  %-26s %8.3f s   (%d chunks)\n' "$name" "$secs" "$chunks"
    done <"$work/chunkhash"
    # What `get -o` cannot avoid on this disk: writing the bytes to a new file, fsynced.
    timed "$r" copy_tar /dev/null dd if="$tar_file" of="$work/copy" bs=4M conv=fsync status=none
    rm -f "$work/copy"
}

# B: strata, a fresh data directory for every put.
round_strata() {
    local r=$1 d id
    d="$work/store"

    # What every command below pays before and after its work: process start, opening
    # and closing a store.
    rm -rf "$d"
    : >"$work/empty"
    timed "$r" put_empty /dev/null "$strata" --data-dir "$d" put "$work/empty"

    rm -rf "$d"
    timed "$r" put_tar "$work/out" "$strata" --data-dir "$d" put "$tar_file"
    id=$(tail -n 1 "$work/out")
    # The blob id is the BLAKE3 of the content: the same hash the baseline computed.
    [ "$id" = "$tar_id" ] || die "put printed $id, the baseline hashed $tar_id"
    size_of "$r" hot_after_put "$(hot_bytes "$d")"
    timed "$r" get_file /dev/null "$strata" --data-dir "$d" get "$id" -o "$work/got"
    if [ "$r" = 1 ]; then cmp "$tar_file" "$work/got" || die "get returned other bytes"; fi
    rm -f "$work/got"
    timed "$r" get_stdout /dev/null "$strata" --data-dir "$d" get "$id"
    timed "$r" tier_move_warm /dev/null "$strata" --data-dir "$d" tier move "$id" --to warm
    size_of "$r" hot_after_move "$(hot_bytes "$d")"
    size_of "$r" warm_after_move "$(bytes_of "$d/tiers/warm")"
    # A move deletes the hot copies' keys; the space in RocksDB's blob files comes
    # back in the compaction that `gc` runs.
    timed "$r" gc_after_move /dev/null "$strata" --data-dir "$d" gc
    size_of "$r" hot_after_gc "$(hot_bytes "$d")"

    rm -rf "$d"
    timed "$r" put_random /dev/null "$strata" --data-dir "$d" put "$random_file"
    size_of "$r" hot_random "$(hot_bytes "$d")"

    # Two versions in one store, as restic gets them: the edited copy's put finds all
    # but a few hundred of its chunks already stored.
    rm -rf "$d"
    timed "$r" put_tar_v1 /dev/null "$strata" --data-dir "$d" put "$tar_file"
    size_of "$r" strata_v1 "$(bytes_of "$d")"
    timed "$r" put_edited /dev/null "$strata" --data-dir "$d" put "$edited_file"
    size_of "$r" strata_v2 "$(bytes_of "$d")"
    rm -rf "$d"
}

# C: restic, the same two versions into a fresh local repository. No cache directory:
# the repository is local, and a cache would be one more copy of its index to write.
round_restic() {
    local r=$1 repo="$work/restic"
    rm -rf "$repo"
    restic init -q --no-cache --repo "$repo" >/dev/null
    timed "$r" restic_v1 /dev/null restic backup -q --no-cache --repo "$repo" "$tar_file"
    size_of "$r" restic_v1 "$(bytes_of "$repo")"
    timed "$r" restic_v2 /dev/null restic backup -q --no-cache --repo "$repo" "$edited_file"
    size_of "$r" restic_v2 "$(bytes_of "$repo")"
    rm -rf "$repo"
}

summarize() {
    python3 - "$results" "$(stat -c %s "$tar_file")" <<'EOF'
import sys
from collections import defaultdict

results, input_bytes = sys.argv[1], int(sys.argv[2])
rows = defaultdict(dict)
for line in open(results):
    r, kind, name, value, *_ = line.rstrip("\n").split("\t")
    rows[(kind, name)][int(r)] = float(value)

def med(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2

def spread(v, fmt):
    return f"{fmt(med(v))} [{fmt(min(v))}, {fmt(max(v))}]"

secs = lambda x: f"{x:.3f}"
print("\ntime per run, seconds: median [min, max] (every run)")
for (kind, name), per in rows.items():
    if kind == "time":
        v = list(per.values())
        print(f"  {name:<16} {spread(v, secs):<28} ({' '.join(secs(x) for x in v)})")

# Ratio = baseline time / time, per round: the fraction of the baseline's speed
# (restic: above 1 means strata was faster).
pairs = [
    ("put_tar", "base_tar"),
    ("put_random", "base_random"),
    ("put_edited", "base_edited"),
    ("get_file", "base_tar"),
    ("get_file", "copy_tar"),
    ("get_stdout", "base_tar"),
    ("put_tar_v1", "restic_v1"),
    ("put_edited", "restic_v2"),
]
print("\nspeed against the baseline, per round (baseline time / time): median [min, max]")
for m, b in pairs:
    a, c = rows.get(("time", m)), rows.get(("time", b))
    if not a or not c:
        continue
    ratios = [c[r] / a[r] for r in sorted(a) if r in c]
    pct = lambda x: f"{100 * x:.0f}%"
    print(f"  {m + ' vs ' + b:<28} {spread(ratios, pct):<22} ({' '.join(pct(x) for x in ratios)})")

print(f"\nbytes on disk (medians over rounds); input {input_bytes} bytes")
sizes = [
    ("hot_after_put", None),
    ("hot_after_move", None),
    ("warm_after_move", None),
    ("hot_after_gc", None),
    ("hot_random", None),
    ("strata_v1", "restic_v1"),
    ("strata_v2", "restic_v2"),
    ("restic_v1", None),
    ("restic_v2", None),
]
for name, other in sizes:
    per = rows.get(("size", name))
    if not per:
        continue
    v = med(list(per.values()))
    line = f"  {name:<16} {v:15.0f}  {v / input_bytes:6.3f} of the input"
    if other and ("size", other) in rows:
        line += f", {v / med(list(rows[('size', other)].values())):.3f} of {other}"
    print(line)
EOF
}

run() {
    [ -f "$dir/dataset.txt" ] || die "no data set in $dir: run 'bash scripts/realdata.sh data' first"
    need_binaries
    local stamp
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    out="$dir/results/$stamp"
    work="$dir/work"
    results="$out/results.tsv"
    mkdir -p "$out" "$work"
    : >"$results"
    # restic needs a password; the repositories are throwaway.
    export RESTIC_PASSWORD=realdata
    exec > >(tee "$out/log.txt") 2>&1

    echo "strata real-data bench, $stamp"
    echo "machine: $(nproc) cores, $(uname -r), $(free -g | awk '/^Mem:/ { print $2 }') GiB"
    echo "strata: $strata, built $(date -r "$strata" +%FT%T); this checkout at $(git -C "$repo_dir" rev-parse --short HEAD 2>/dev/null || echo "?")"
    echo "config: ${STRATA_CONFIG:-(defaults)}"
    if [ "$with_restic" = 1 ]; then echo "restic: $(restic version)"; fi
    head -n 4 "$dir/dataset.txt"
    echo "rounds: $rounds; results: $results"

    local r
    for r in $(seq 1 "$rounds"); do
        # The load average says whether something else ran beside the bench.
        echo "round $r (load average $(cut -d ' ' -f 1-3 /proc/loadavg))"
        round_baseline "$r"
        round_strata "$r"
        if [ "$with_restic" = 1 ]; then round_restic "$r"; fi
    done
    rm -rf "$work"
    summarize | tee "$out/summary.txt"
}

case "${1:-all}" in
    data) make_data ;;
    run) run ;;
    all) make_data && run ;;
    *) die "usage: bash scripts/realdata.sh [data|run|all]" ;;
esac

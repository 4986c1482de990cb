#!/usr/bin/env bash
# Set up a fresh machine and run strata's main job on the embedded default:
# install build dependencies, build, then store a real file, read it back and verify it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

need_packages libclang-dev clang build-essential
echo "building strata (the first build compiles RocksDB and the AWS SDK: ~35 minutes on 2 cores)" >&2
cargo build --release --bin strata --example quickstart
STRATA="$CARGO_TARGET_DIR/release/strata"

echo "== library API: examples/quickstart.rs" >&2
"$CARGO_TARGET_DIR/release/examples/quickstart"

echo "== command line: put, get, verify a real file on the embedded store" >&2
data_dir="${STRATA_DATA_DIR:-./strata-data}"
file="${1:-$STRATA}"
id=$("$STRATA" --data-dir "$data_dir" put "$file" | tail -n 1)
echo "put $file -> $id" >&2
"$STRATA" --data-dir "$data_dir" stat "$id"
"$STRATA" --data-dir "$data_dir" get "$id" -o "$data_dir.roundtrip"
cmp "$file" "$data_dir.roundtrip" && echo "get: bytes identical" >&2
rm -f "$data_dir.roundtrip"
"$STRATA" --data-dir "$data_dir" verify "$id"
echo "done: the binary is $STRATA (try '$STRATA --help')" >&2

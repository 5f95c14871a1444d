#!/bin/sh
# certbot's deploy hook on the tracking VM (infra/vm.py's mlflow-acme.service), run as root after
# it issues or renews the server's Let's Encrypt certificate, with RENEWED_LINEAGE naming
# /etc/letsencrypt/live/mlflow. Hands the chain and key to the server's user (mode 600, each
# replaced in one rename) and restarts the server if it runs; its launcher then presents them.
# MLFLOW_ACME_DIR, MLFLOW_USER, MLFLOW_GROUP and SYSTEMCTL exist for the test, which runs this as any user.
set -eu
lineage="${RENEWED_LINEAGE:?certbot sets RENEWED_LINEAGE}"
dest="${MLFLOW_ACME_DIR:-/etc/mlflow/acme}"
owner="${MLFLOW_USER:-mlflow}"
group="${MLFLOW_GROUP:-$owner}"

install -d -m 0700 -o "$owner" -g "$group" "$dest"
for file in fullchain.pem privkey.pem; do
  install -m 0600 -o "$owner" -g "$group" "$lineage/$file" "$dest/.$file.new"
done
# The key first: a server that restarts between the two renames fails to start on a mismatched
# pair and systemd starts it again, never on a key that lost its certificate for long.
mv -f "$dest/.privkey.pem.new" "$dest/privkey.pem"
mv -f "$dest/.fullchain.pem.new" "$dest/fullchain.pem"
"${SYSTEMCTL:-systemctl}" try-restart mlflow.service
echo "mlflow-acme: new certificate for ${RENEWED_DOMAINS:-the server} handed to mlflow.service"

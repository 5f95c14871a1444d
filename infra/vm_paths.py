"""Where the tracking server's files live on the VM (the bundle writes them there, the units and
the launcher read them), and where each comes from in the repository."""

from __future__ import annotations

from pathlib import Path

PREFIX = "/opt/mlflow"
VENV = f"{PREFIX}/venv"
SPEC_PATH = "/etc/mlflow/server.json"
LAUNCHER_PATH = f"{PREFIX}/vm_launcher.py"
BACKUP_PATH = f"{PREFIX}/db_backup.py"
"""Next to the launcher, which imports it: backups before a migration, and the restore command."""
FETCH_PATH = f"{PREFIX}/fetch_bundle.py"
BUNDLE_PREFIX = "server-bundles"
"""Where in the artifact bucket the server's code bundles go (outside MLflow's artifact root)."""
SITE_DIR = f"{PREFIX}/site"
"""The server's MLflow app plugin (mlops_auth and its dist-info), on the server's PYTHONPATH."""
AUTH_INI_PATH = "/run/mlflow/basic_auth.ini"
DB_CA_PATH = "/etc/mlflow/db-ca.pem"
"""The CA that verifies the database's certificate: written from user-data, or fetched at boot."""
TLS_CERT_PATH = "/run/mlflow/tls.crt"
TLS_KEY_PATH = "/run/mlflow/tls.key"
"""What the server presents, written by the launcher at every start onto the runtime tmpfs: the
stack's certificate with its key from the secret store, or (with a domain) Let's Encrypt's once
issued."""
TRACKING_CA_PATH = "/etc/mlflow/tracking-ca.pem"
"""The stack's CA (public): what the VM's own clients (mlflow gc) verify the server with."""
ACME_DIR = "/etc/mlflow/acme"
"""With a domain: Let's Encrypt's chain and key, copied here (owner mlflow, 600) by the hook."""
ACME_HOOK_PATH = f"{PREFIX}/acme-deploy-hook"
SERVER_LOG = "/var/log/mlflow/server.log"
BOOTSTRAP_LOG = "/var/log/cloud-init-output.log"
BOOTSTRAP_PATH = f"{PREFIX}/bootstrap.sh"
BOOTSTRAP_ENV = "/etc/mlflow/bootstrap.env"
BOOTSTRAP_STATUS = f"{PREFIX}/bootstrap.status"
REQUIREMENTS_PATH = "/etc/mlflow/requirements.txt"
LAUNCHER_SOURCE = Path(__file__).with_name("vm_launcher.py")
BACKUP_SOURCE = Path(__file__).with_name("db_backup.py")
FETCH_SOURCE = Path(__file__).with_name("vm_fetch_bundle.py")
BOOTSTRAP_SOURCE = Path(__file__).with_name("vm_bootstrap.sh")
ACME_HOOK_SOURCE = Path(__file__).with_name("acme_deploy_hook.sh")

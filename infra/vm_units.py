"""The systemd units that run the tracking server on the VM and keep it up (the server, and the
timers for the database password, the certificate, garbage collection and, with a domain, Let's
Encrypt), and its log rotation. Paths: infra.vm_paths."""

from __future__ import annotations

from infra.vm_paths import (
    ACME_HOOK_PATH,
    LAUNCHER_PATH,
    SERVER_LOG,
    SPEC_PATH,
    VENV,
)

SYSTEMD_UNIT = f"""\
[Unit]
Description=MLflow tracking server
Wants=network-online.target
After=network-online.target

[Service]
User=mlflow
Group=mlflow
ExecStart={VENV}/bin/python {LAUNCHER_PATH} {SPEC_PATH}
Restart=always
RestartSec=5
# The launcher's "a person must act" (a failed migration, a schema newer than this MLflow):
# retrying would not help, and each retry would take another backup.
RestartPreventExitStatus=3
RuntimeDirectory=mlflow
RuntimeDirectoryMode=0700
StateDirectory=mlflow
LogsDirectory=mlflow
# A file the log agent ships (the CloudWatch agent does not read the journal).
StandardOutput=append:{SERVER_LOG}
StandardError=inherit
WorkingDirectory=/var/lib/mlflow
Environment=HOME=/var/lib/mlflow
NoNewPrivileges=true
ProtectSystem=strict
ProtectHome=true
PrivateTmp=true

[Install]
WantedBy=multi-user.target
"""


LOGROTATE = f"""\
{SERVER_LOG} {{
    daily
    rotate 7
    compress
    missingok
    notifempty
    copytruncate
}}
"""


REFRESH_SERVICE = f"""\
[Unit]
Description=Refresh the MLflow server's database password (rotated by the cloud)

[Service]
Type=oneshot
User=mlflow
Group=mlflow
ExecStart={VENV}/bin/python {LAUNCHER_PATH} --refresh {SPEC_PATH}
NoNewPrivileges=true
ProtectSystem=strict
ReadWritePaths=/run/mlflow
"""

TLS_SERVICE = f"""\
[Unit]
Description=Restart the MLflow server when the secret store holds a renewed certificate
After=mlflow.service

[Service]
Type=oneshot
# Root: it restarts mlflow.service (seconds) when the certificate changed, nothing else.
ExecStart={VENV}/bin/python {LAUNCHER_PATH} --tls-check {SPEC_PATH}
StandardOutput=append:{SERVER_LOG}
StandardError=inherit
"""


def daily_timer(description: str, at: str) -> str:
    """A timer firing once a day at `at` UTC (within half an hour after), and at boot when a
    firing was missed while the VM was off."""
    return f"""\
[Unit]
Description={description}, daily

[Timer]
OnCalendar=*-*-* {at}:00 UTC
RandomizedDelaySec=30min
Persistent=true

[Install]
WantedBy=timers.target
"""


TLS_TIMER = daily_timer("Look for a renewed MLflow server certificate", "04:15")

GC_SERVICE = f"""\
[Unit]
Description=MLflow garbage collection: runs deleted long enough lose their artifacts and rows
After=mlflow.service
# Only while the server runs (gc deletes artifacts through it), and never starting it: a
# server stopped on purpose (a failed migration, a restore) stays stopped.
Requisite=mlflow.service

[Service]
Type=oneshot
User=mlflow
Group=mlflow
ExecStart={VENV}/bin/python {LAUNCHER_PATH} --gc {SPEC_PATH}
StandardOutput=append:{SERVER_LOG}
StandardError=inherit
NoNewPrivileges=true
ProtectSystem=strict
PrivateTmp=true
"""

GC_TIMER = daily_timer("MLflow garbage collection", "03:30")

REFRESH_TIMER = """\
[Unit]
Description=Refresh the MLflow server's database password every 10 minutes

[Timer]
OnBootSec=10min
OnUnitActiveSec=10min

[Install]
WantedBy=timers.target
"""


def acme_units(domain: str) -> tuple[str, str]:
    """A oneshot service and its timer that keep a Let's Encrypt certificate for `domain`:
    certbot's own HTTP-01 listener on port 80 (only while it runs), `--keep-until-expiring` so a
    run does nothing until the certificate is due, and the deploy hook that hands a new one to
    the server. Until DNS points the name at the static IP it fails and the timer tries again
    hourly: Let's Encrypt allows 5 failed validations per name an hour, and pauses a name after
    1,152 failures in a row (48 days of this). The bootstrap turns Ubuntu's own certbot.timer
    off: one schedule per certificate."""
    service = f"""\
[Unit]
Description=Let's Encrypt certificate for the MLflow server ({domain})
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart=/usr/bin/certbot certonly --standalone --non-interactive --agree-tos \\
  --register-unsafely-without-email --keep-until-expiring --cert-name mlflow \\
  --domain {domain} --deploy-hook {ACME_HOOK_PATH}
"""
    timer = """\
[Unit]
Description=Obtain, then renew, the MLflow server's Let's Encrypt certificate

[Timer]
OnBootSec=1min
OnUnitActiveSec=1h

[Install]
WantedBy=timers.target
"""
    return service, timer

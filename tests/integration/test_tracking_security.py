"""The tracking server against hostile clients, for real: the server `make demo` runs (PostgreSQL,
moto_server, `mlflow server` with the mlops-auth plugin, HTTPS), a workload user with READ on the
model (`model-api`), and anonymous clients. Each test is a finding of a review that tried the
server as an attacker would (MLflow 3.17 without the plugin failed it)."""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from infra.mlflow_server import LOCAL_SITE_DIR, REGISTERED_MODEL, TRAINING_EXPERIMENT

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MODEL = REGISTERED_MODEL


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Api:
    """Calls to the tracking server's REST API as one user (None: anonymous)."""

    def __init__(self, platform, user=None, prefix="/api/2.0/mlflow") -> None:
        self.base = f"{platform.tracking_uri}{prefix}"
        self.auth = None if user is None else (user.username, user.password)
        self.verify = str(platform.ca_cert)
        self.session = requests.Session()

    def __call__(self, method: str, path: str, **kw) -> requests.Response:
        return self.session.request(method, f"{self.base}/{path}", auth=kw.pop("auth", self.auth),
                                    verify=self.verify, timeout=60, **kw)  # fmt: skip


@pytest.fixture(scope="module")
def champion(platform):
    """nyc-taxi-duration with a version and its champion alias (from a run of the training
    experiment, as training registers it), made by the admin."""
    admin = Api(platform, platform.admin)
    experiment = admin("GET", "experiments/get-by-name",
                       params={"experiment_name": TRAINING_EXPERIMENT}).json()  # fmt: skip
    run = admin("POST", "runs/create",
                json={"experiment_id": experiment["experiment"]["experiment_id"]}).json()  # fmt: skip
    run_id = run["run"]["info"]["run_id"]
    version = admin("POST", "model-versions/create", json={
        "name": MODEL, "source": f"runs:/{run_id}/model", "run_id": run_id,
    })  # fmt: skip
    assert version.status_code == 200, version.text
    number = version.json()["model_version"]["version"]
    assert admin("POST", "registered-models/alias",
                 json={"name": MODEL, "alias": "champion", "version": number}).ok  # fmt: skip
    admin("POST", "registered-models/set-tag", json={"name": MODEL, "key": "team", "value": "t"})
    admin("POST", "model-versions/set-tag",
          json={"name": MODEL, "version": number, "key": "q", "value": "1"})  # fmt: skip
    return number


def model_state(platform) -> dict:
    admin = Api(platform, platform.admin)
    model = admin("GET", "registered-models/get", params={"name": MODEL}).json()
    return model["registered_model"]


# --- 1. No confused requests -------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/api/2.0/mlflow", "/ajax-api/2.0/mlflow"])
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("registered-models/alias", {"name": MODEL, "alias": "champion"}),
        ("registered-models/delete-tag", {"name": MODEL, "key": "team"}),
        ("model-versions/delete-tag", {"name": MODEL, "version": "1", "key": "q"}),
        ("model-versions/delete", {"name": MODEL, "version": "1"}),
        ("registered-models/delete", {"name": MODEL}),
    ],
)
def test_a_read_only_user_cannot_delete_through_a_query_naming_its_own_model(
    platform, champion, prefix, path, body
):
    """MLflow 3.17's auth checked a DELETE's query (the caller's own model: MANAGE) while its
    handler deleted what the text/plain body named: the production model's alias, tags,
    versions, the model itself (and the other users' grants on it). Now: 400, nothing gone."""
    reader = Api(platform, platform.users["model-api"], prefix)
    own = unique("mine")
    assert reader("POST", "registered-models/create", json={"name": own}).status_code == 200
    before = model_state(platform)
    query = {k: (own if k == "name" else v) for k, v in body.items()}
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"Content-Type": content_type} if content_type else {}
        confused = reader("DELETE", path, params=query, data=json.dumps(body), headers=headers)
        assert confused.status_code == 400, (content_type, confused.text)
    as_json = reader("DELETE", path, params=query, json=body)  # JSON, but a query as well
    assert as_json.status_code == 400, as_json.text
    assert model_state(platform) == before
    assert reader("DELETE", path, json=body).status_code == 403  # its honest form: refused


def route_table() -> list[dict]:
    """MLflow's route table as the server builds it (the plugin's create_app, in a process of its
    own): every Flask rule and native FastAPI route, with the plugin's kind of body for it."""
    script = r"""
import json, os, sys, tempfile
d = tempfile.mkdtemp()
open(f"{d}/a.ini", "w").write("[mlflow]\ndefault_permission = NO_PERMISSIONS\n"
    f"database_uri = sqlite:///{d}/a.db\nadmin_username = admin\n")
os.environ.update(MLFLOW_AUTH_CONFIG_PATH=f"{d}/a.ini", _MLFLOW_SGI_NAME="uvicorn",
    MLFLOW_FLASK_SERVER_SECRET_KEY="k" * 32, MLFLOW_AUTH_ADMIN_PASSWORD="a-password-1234567")
from mlops_auth.app import create_app
from mlops_auth.request_guard import Routes
from mlflow.server import app as flask_app
from starlette.routing import Mount
app = create_app()
routes = Routes(flask_app)
found = []
def walk(items, prefix=""):
    for r in items:
        if isinstance(r, Mount):
            continue
        if hasattr(r, "original_router"):
            walk(r.original_router.routes, prefix + (r.include_context.prefix or ""))
        else:
            found.append(("native", prefix + r.path, sorted(r.methods)))
walk(app.routes)
for rule in flask_app.url_map.iter_rules():
    found.append(("flask", rule.rule, sorted(rule.methods - {"HEAD", "OPTIONS"})))
out = []
for source, path, methods in found:
    concrete = path
    for a, b in (("<path:", ">"), ("<", ">"), ("{", "}")):
        while a in concrete:
            i = concrete.index(a); j = concrete.index(b, i)
            concrete = concrete[:i] + "x1" + concrete[j + 1:]
    for m in methods:
        out.append({"source": source, "rule": path, "path": concrete, "method": m,
                    "kind": routes.kind(m, concrete)})
print(json.dumps(out))
"""
    env = {**os.environ, "PYTHONPATH": str(LOCAL_SITE_DIR)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_route_of_mlflow_refuses_a_confused_request(platform):
    """Each route of MLflow's route table, /api/ and /ajax-api/, 2.0 and 3.0, native and Flask,
    the UI's: a GET carrying a body, and on a JSON route a body that is not JSON or a JSON body
    with a query string, get 400 before anything of MLflow runs (as the admin, who passes every
    grant check: a 400 here is the guard's)."""
    routes = route_table()
    assert len(routes) > 500 and {r["kind"] for r in routes} == {"json", "raw", "stream"}
    assert {(r["method"], r["path"]) for r in routes if r["kind"] == "stream"} == {
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/x1"),  # the native route, and Flask's
        ("PUT", "/ajax-api/2.0/mlflow-artifacts/artifacts/x1"),  # fallback it shadows
    }
    admin = (platform.admin.username, platform.admin.password)
    session, ca = requests.Session(), str(platform.ca_cert)
    body = json.dumps({"name": "nothing-of-this-name", "run_id": "0" * 32, "experiment_id": "0"})
    not_refused = []
    for route in routes:
        url = f"{platform.tracking_uri}{route['path']}"
        tries = []
        if route["method"] == "GET":
            tries.append(({"Content-Type": "application/json"}, None))
        elif route["kind"] == "json":
            tries += [({"Content-Type": "text/plain"}, {"name": "x"}),
                      ({"Content-Type": "application/json"}, {"name": "x"})]  # fmt: skip
        for headers, params in tries:
            answer = session.request(route["method"], url, data=body, headers=headers,
                                     params=params, auth=admin, verify=ca, timeout=60)  # fmt: skip
            if answer.status_code != 400:
                not_refused.append((route["method"], route["path"], answer.status_code))
    assert not_refused == []


# --- 2. Version sources ------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["s3", "gs", "file"])
def test_a_version_cannot_point_into_the_bucket_or_the_server_s_disk(platform, scheme):
    """The server reads a version's files with its own role, which covers every experiment's:
    a version of the caller's own model whose source was a bucket prefix handed it the
    monitoring report. Only models:/, runs:/ and mlflow-artifacts:/ sources are taken."""
    reader = Api(platform, platform.users["model-api"])
    own = unique("mine")
    assert reader("POST", "registered-models/create", json={"name": own}).ok
    source = {"s3": f"s3://{platform.bucket}/mlflow/2", "gs": "gs://any/mlflow/2",
              "file": "file:///etc"}[scheme]  # fmt: skip
    created = reader("POST", "model-versions/create", json={"name": own, "source": source})
    assert created.status_code == 400 and "Invalid model version source" in created.text
    artifact = reader("GET", "../../../model-versions/get-artifact",
                      params={"name": own, "version": "1", "path": "report.html"})  # fmt: skip
    assert artifact.status_code in (400, 404)


# --- 3. Bounded bodies ---------------------------------------------------------------------------


def server_rss(platform) -> int:
    """Resident bytes of the tracking server's processes (the CLI, uvicorn and its workers)."""
    port = platform.tracking_uri.rsplit(":", 1)[1]
    procs = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            procs[int(entry.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), cmd)
    roots = {pid for pid, (_, cmd) in procs.items() if b"server" in cmd and port.encode() in cmd}
    tree, grew = set(roots), True
    while grew:
        grew = False
        for pid, (ppid, _) in procs.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    assert roots, "no tracking server process"
    total = 0
    for pid in tree:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def send_big(platform, size: int, chunked: bool, auth=None) -> int | None:
    """POST a `size`-byte JSON-typed body, declared or chunked, 1 MiB at a time, until the server
    stops reading; its answer's status (None if it closed without one)."""
    host, port = platform.tracking_uri.removeprefix("https://").split(":")
    context = ssl.create_default_context(cafile=str(platform.ca_cert))
    conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=60)
    conn.putrequest("POST", "/api/2.0/mlflow/runs/log-batch")
    conn.putheader("Content-Type", "application/json")
    if auth:
        conn.putheader(
            "Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode()
        )
    conn.putheader(
        *(("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(size)))
    )
    conn.endheaders()
    chunk = b"{" + b" " * (1024 * 1024 - 1)
    try:
        for _ in range(size // len(chunk)):
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
        if chunked:
            conn.send(b"0\r\n\r\n")
    except (TimeoutError, BrokenPipeError, ConnectionResetError, ssl.SSLError):
        pass
    try:
        return conn.getresponse().status
    except (http.client.HTTPException, OSError):
        return None
    finally:
        conn.close()


class PeakRss:
    """The server's largest resident size while the block runs, sampled every 50 ms."""

    def __init__(self, platform) -> None:
        self.platform, self.peak, self.stop = platform, 0, threading.Event()

    def __enter__(self):
        self.base = server_rss(self.platform)
        self.thread = threading.Thread(target=self._sample)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, server_rss(self.platform))

    def __exit__(self, *exc) -> None:
        time.sleep(0.5)
        self.stop.set()
        self.thread.join()
        self.grown = max(self.peak, server_rss(self.platform)) - self.base


@pytest.mark.parametrize("chunked", [False, True])
def test_a_300_mb_anonymous_body_is_refused_before_the_server_buffers_it(platform, chunked):
    """The WSGI bridge buffered a whole body before MLflow's 401: +300 MB of memory."""
    with PeakRss(platform) as rss:
        status = send_big(platform, 300 * 1024 * 1024, chunked)
    assert status in (401, 413, None) and rss.grown < 50 * 1024 * 1024, (status, rss.grown)
    signed_in = (platform.admin.username, platform.admin.password)
    with PeakRss(platform) as rss:
        assert send_big(platform, 20 * 1024 * 1024, chunked, signed_in) == 413  # over 16 MiB
    assert rss.grown < 50 * 1024 * 1024, rss.grown


def test_a_200_mb_model_file_still_uploads_through_the_artifact_proxy(platform):
    """Artifact uploads stream to the store: the body limit does not apply to them."""
    trainer = Api(platform, platform.users["trainer"])
    experiment = trainer("GET", "experiments/get-by-name",
                         params={"experiment_name": TRAINING_EXPERIMENT}).json()  # fmt: skip
    run = trainer("POST", "runs/create",
                  json={"experiment_id": experiment["experiment"]["experiment_id"]}).json()  # fmt: skip
    artifact_uri = run["run"]["info"]["artifact_uri"]  # mlflow-artifacts:/<exp>/<run>/artifacts
    path = artifact_uri.removeprefix("mlflow-artifacts:/")
    size = 200 * 1024 * 1024

    class Body:
        """200 MB read a piece at a time (a declared length: MLflow's client sends files so)."""

        left = size

        def __len__(self) -> int:
            return size

        def read(self, n: int = -1) -> bytes:
            n = min(self.left, 1024 * 1024 if n is None or n < 0 else n)
            self.left -= n
            return b"m" * n

    url = f"{platform.tracking_uri}/api/2.0/mlflow-artifacts/artifacts/{path}/model.bin"
    with PeakRss(platform) as rss:
        put = requests.put(url, data=Body(), timeout=600, auth=trainer.auth, verify=trainer.verify)
    assert put.status_code == 200, put.text
    assert rss.grown < 100 * 1024 * 1024, rss.grown  # streamed, not held
    from local_platform import s3_client

    key = f"mlflow/{path}/model.bin"
    head = s3_client(platform.s3_endpoint).head_object(Bucket=platform.bucket, Key=key)
    assert head["ContentLength"] == size


# --- 4. Wrong passwords are cheap ----------------------------------------------------------------


class FromAddress(requests.adapters.HTTPAdapter):
    """Connections from another loopback address: the flood's own, so that its failed sign-ins
    do not count against the other tests' address."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def test_a_flood_of_password_guesses_costs_a_few_checks_and_the_workload_keeps_working(
    platform, champion
):
    """16 anonymous clients guessing a workload user's password made MLflow hash every guess
    (another workload's median request time went from ~20 ms to 0.5-0.7 s; the figures with the
    guard: `make benchmark`, docs/benchmarks.md). Now a guessing address gets 429 with
    Retry-After once it has had its few checks, and a workload's accepted credential works."""
    reader = Api(platform, platform.users["model-api"])

    def lookup() -> bool:
        return reader(
            "GET", "registered-models/alias", params={"name": MODEL, "alias": "champion"}
        ).ok

    assert lookup()
    stop, answers = threading.Event(), []

    def guess() -> None:
        session = requests.Session()
        session.mount("https://", FromAddress("127.0.0.2"))
        while not stop.is_set():
            answer = session.get(f"{reader.base}/experiments/search", params={"max_results": 1},
                                 auth=("trainer", uuid.uuid4().hex), verify=reader.verify,
                                 timeout=60)  # fmt: skip
            answers.append((answer.status_code, answer.headers.get("Retry-After")))

    flood = [threading.Thread(target=guess) for _ in range(16)]
    for thread in flood:
        thread.start()
    try:
        time.sleep(2)
        assert all(lookup() for _ in range(20))
    finally:
        stop.set()
        for thread in flood:
            thread.join()
    statuses = [status for status, _ in answers]
    # One worker: at most its 10 checks a minute for the address, the rest refused unchecked.
    assert set(statuses) == {401, 429} and statuses.count(401) == 10, statuses[:40]
    assert all(wait and 0 < int(wait) <= 60 for status, wait in answers if status == 429)


def test_a_known_wrong_password_is_not_checked_again_and_the_right_one_still_works(platform):
    """The right password after a wrong one; the wrong one again is refused from memory."""
    ca, url = str(platform.ca_cert), f"{platform.tracking_uri}/api/2.0/mlflow/experiments/search"
    session = requests.Session()
    session.mount("https://", FromAddress("127.0.0.3"))
    user = platform.users["trainer"]

    def get(password):
        return session.get(url, params={"max_results": 1}, auth=(user.username, password),
                           verify=ca, timeout=60)  # fmt: skip

    assert get("wrong-once").status_code == 401
    start = time.perf_counter()
    assert get("wrong-once").status_code == 401
    assert time.perf_counter() - start >= 0.9  # answered after the refusal pause, not checked
    assert get(user.password).status_code == 200


# --- 5. 4xx, never 500 ---------------------------------------------------------------------------


JSON_VALUES = ["r", 7, 1.5, True, None, ["r"], {"id": "r"}, "", "\u0000", "x" * 5000]
HEADERS = ["Bearer x", "Basic", "Basic !!", "Basic " + base64.b64encode(b"nocolon").decode(),
           "Basic " + base64.b64encode(b"\xff:\xfe").decode(), "Digest username=a", "basic Og==",
           "Basic " + "A" * 20000, "Bearer", "Negotiate YII="]  # fmt: skip
ROUTES = [  # (method, path, the body's parameter names) the auth app reads ids from
    ("GET", "runs/get", ["run_id"]), ("POST", "runs/log-metric", ["run_id", "run_uuid", "runId"]),
    ("POST", "runs/log-batch", ["run_id"]), ("POST", "runs/set-tag", ["run_id", "run_uuid"]),
    ("GET", "experiments/get", ["experiment_id"]), ("POST", "runs/create", ["experiment_id"]),
    ("GET", "registered-models/get", ["name"]), ("POST", "registered-models/alias", ["name"]),
    ("DELETE", "registered-models/alias", ["name", "alias"]),
    ("GET", "model-versions/get", ["name", "version"]),
    ("POST", "model-versions/create", ["name", "run_id"]),
    ("PATCH", "users/update-password", ["username", "password"]),
    ("PATCH", "users/update-admin", ["username", "is_admin"]),
    ("POST", "experiments/permissions/create", ["experiment_id", "username", "permission"]),
]  # fmt: skip


def test_fuzzed_identities_ids_keys_and_content_types_never_get_a_5xx(platform):
    """Malformed identity headers (MLflow: 500 for `Bearer x`), ids of every JSON type (a list as
    run_id: 500), duplicate and escaped keys, odd content types, as anonymous, a workload user
    and the admin: never a 5xx."""
    ca = str(platform.ca_cert)
    session = requests.Session()
    session.mount("https://", FromAddress("127.0.0.4"))
    base = f"{platform.tracking_uri}/api/2.0/mlflow"
    users = [None, platform.users["trainer"], platform.admin]
    failures, sent = [], 0

    def send(method, path, user=None, headers=None, **kw):
        nonlocal sent
        sent += 1
        auth = None if user is None else (user.username, user.password)
        answer = session.request(method, f"{base}/{path}", auth=auth, headers=headers or {},
                                 verify=ca, timeout=60, **kw)  # fmt: skip
        if answer.status_code >= 500:
            failures.append((method, path, answer.status_code, kw, answer.text[:200]))

    for header in HEADERS:
        for method, path, _ in ROUTES[:4]:
            send(method, path, headers={"Authorization": header})
    for user in users:
        for method, path, params in ROUTES:
            for param in params:
                for value in JSON_VALUES:
                    if method == "GET":
                        send(method, path, user, params={param: json.dumps(value)})
                    else:
                        send(method, path, user, json={param: value, "key": "k", "value": 1,
                                                       "timestamp": 0, "step": 0})  # fmt: skip
            if method != "GET":
                for raw in ('{"name": "a", "name": ["b"]}', '{"run\\u005fid": ["r"]}',
                            '{"run_id": "a", "run\\u005fid": "b"}', '{"\\u0000": 1}', "{",
                            '{"experiment_id": {"$ne": null}}'):  # fmt: skip
                    for content_type in ("application/json", "application/json; charset=latin-1",
                                         "text/plain", "application/merge-patch+json"):  # fmt: skip
                        send(method, path, user, data=raw.encode(),
                             headers={"Content-Type": content_type})  # fmt: skip
    assert sent > 1000 and failures == [], "\n".join(map(str, failures))


# --- 6. One plugin, loaded at start, failing closed ---------------------------------------------


def test_the_server_refuses_to_start_on_an_untested_mlflow_with_one_line(tmp_path):
    """The plugin wraps private names of the MLflow it was tested with: on any other version the
    server exits at once, before a worker starts, saying which."""
    import local_platform as c

    script = (
        "import importlib.metadata as m, sys\n"
        "real = m.version\n"
        "m.version = lambda name: '3.99.0' if name == 'mlflow' else real(name)\n"
        "import mlflow\n"
        "mlflow.__version__ = '3.99.0'\n"
        "from mlflow.cli import cli\n"
        "sys.argv = ['mlflow', *sys.argv[1:]]\n"
        "cli()\n"
    )
    argv = [sys.executable, "-c", script, "server", "--app-name", "mlops-auth",
            "--backend-store-uri", f"sqlite:///{tmp_path}/m.db", "--host", c.LOOPBACK,
            "--port", str(c.free_port())]  # fmt: skip
    env = {**os.environ, **c.QUIET, "PYTHONPATH": str(LOCAL_SITE_DIR),
           "MLFLOW_FLASK_SERVER_SECRET_KEY": "k" * 32}  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120,
                          cwd=tmp_path)  # fmt: skip
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if "mlops-auth" in line]
    assert lines == [
        "mlops-auth: MLflow 3.99.0 is not a version this plugin was tested with (3.17.2); "
        "install the one uv.lock pins, or test this one and add it to "
        "mlops_auth.compat.TESTED_MLFLOW"
    ], done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "Uvicorn running" not in done.stderr


def test_mlflow_s_ui_keeps_logout_and_change_password(platform):
    """MLflow's UI shows them only when the auth config keeps its default authorization
    function (`is_basic_auth`), which the plugin leaves as it is."""
    me = Api(platform, platform.users["trainer"])("GET", "users/current")
    assert me.status_code == 200 and me.json()["is_basic_auth"] is True


# --- 7. The AI gateway is off ---------------------------------------------------------------------


def test_the_ai_gateway_is_off(platform):
    """Any signed-in user could create gateway secrets (provider keys) and endpoints."""
    trainer = Api(platform, platform.users["trainer"], "/api/3.0/mlflow")
    created = trainer("POST", "gateway/secrets/create",
                      json={"secret_name": unique("key"), "secret_value": {"api_key": "x"},
                            "provider": "openai"})  # fmt: skip
    assert created.status_code == 501 and "disabled" in created.text.lower()

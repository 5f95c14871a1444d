"""mlops-auth: MLflow's basic-auth app, hardened and made fast, as one MLflow app plugin.

`mlflow server --app-name mlops-auth` finds it under MLflow's `mlflow.app` entry point (the
`mlops_auth-*.dist-info` beside this package; the server's PYTHONPATH names the directory) and
calls `mlops_auth.app:create_app`, which builds MLflow's own basic-auth app and wraps it.

Guards (always on):
- `compat`: the server starts only on an MLflow version the tests ran against, and only if every
  MLflow name a module below relies on is there (one line, non-zero exit otherwise).
- `request_guard`: bodies bounded (413 before they are buffered; artifact uploads stream), and
  no request whose parameters MLflow's auth check and its handler could read from different
  places (400 before any grant check).
- `sign_in_guard`: identity headers other than well-formed Basic get 401; a failed password is
  remembered, and a client address with too many failed sign-ins gets 429, before any password
  hash is computed.
- `run_id_guard`, `param_types`: a body naming its run twice with different ids, or naming an id
  with a JSON list, object, float or null, gets 400 where MLflow's auth reads it.
- `threads`: how many requests a worker runs in threads at once (a pool-sized bound).

Optimisations (each on by default, `MLOPS_AUTH_<NAME>=off` turns it off; see `settings`):
`store_cache`, `resource_cache`, `lean_redaction`, `lean_log_check`, `middleware_bypass`,
`one_check`.

It imports only what the tracking server's environment has (MLflow and what MLflow needs),
because on the VM it runs beside the server's virtualenv, not from this repository's.
"""

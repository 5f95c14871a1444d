"""The GCP platform: network, Cloud SQL PostgreSQL, GCS artifact bucket and the GCE tracking server."""

"""The platform: what runs the MLflow tracking server, locally and (as Pulumi programs) in the cloud."""

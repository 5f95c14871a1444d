"""The AWS platform: network, RDS PostgreSQL, S3 artifact bucket and the EC2 tracking server."""

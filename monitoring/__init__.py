"""The monitoring job: the served champion's drift against its training reference and its realised
quality on new TLC months, logged to MLflow; retraining when it has degraded."""

EXPERIMENT = "nyc-taxi-duration-monitoring"

"""The batch scoring job: the registry's champion over whole TLC months, one shard per task."""

REGISTERED_MODEL = "nyc-taxi-duration"

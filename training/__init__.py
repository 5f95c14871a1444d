"""The NYC taxi trip-duration training job: read TLC trip records, clean, train, register, promote."""

REGISTERED_MODEL = "nyc-taxi-duration"

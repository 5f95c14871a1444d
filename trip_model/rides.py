"""What a ride is, for every part that takes one: the model API's validation, the scoring job's
and the monitor's reading of TLC months, the predictors' check set."""

# TLC taxi zones are numbered 1-263, plus 264/265 for "unknown" and "outside NYC".
MIN_ZONE, MAX_ZONE = 1, 265
# Longer than any plausible metered trip; larger values are data errors, not rides.
MAX_TRIP_DISTANCE = 200.0

"""The trip-duration model's core, below every service and job: what a ride is (`rides`), and the
fastest way to predict that gives the registered pyfunc's own predictions (`predict`, with the
LightGBM region table in `table`). Training, the model API, the scoring job and the monitor
import it; it imports none of them."""

"""Fixtures the integration tests share with the unit tests of the same code, defined next to
those (a test module that imported them would shadow them with its parameters)."""

from tests.unit.benchmarks.test_serving import server  # noqa: F401
from tests.unit.monitoring.test_job import champion, tlc  # noqa: F401
from tests.unit.scoring.test_job import model_dir, pyfunc, scorer  # noqa: F401
from tests.unit.scripts.test_delivery import fake_pulumi  # noqa: F401

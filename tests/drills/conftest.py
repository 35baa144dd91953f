"""The drills run real processes like tests/e2e: they share its fixtures (the Celery worker), its failure
report hook and its `xdist_group` marker (so that `make test -n 2 --dist loadgroup` runs them in the e2e
worker, one real-process test at a time)."""

from tests.e2e.conftest import (  # noqa: F401 - fixtures and hooks, registered by being here
    celery_worker_process,
    pytest_configure,
    pytest_runtest_makereport,
)

"""Shared fixtures. Standing users for permission tests (docs/contributing.md#tests): an operator admin of
organisation A, an operator of organisation B, a site host of site A1 only, and a finance user of organisation
A."""

from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from accounts.services import api_token_get_or_create, membership_set
from stations.services.site_hosts import site_host_grant
from tests.factories import (
    ChargingStationFactory,
    OrganisationFactory,
    SiteFactory,
    UserFactory,
)

pytest_plugins = ["tests.commands"]


@dataclass
class World:
    org_a: object
    org_b: object
    site_a1: object
    site_a2: object
    site_b1: object
    station_a1: object
    station_a2: object
    station_b1: object
    operator_a: object
    operator_b: object
    host_a1: object
    finance_a: object
    superuser: object


@pytest.fixture
def world(db) -> World:
    org_a = OrganisationFactory(name="Org A", slug="org-a")
    org_b = OrganisationFactory(name="Org B", slug="org-b")
    site_a1 = SiteFactory(organisation=org_a, name="A1", time_zone="Europe/Berlin")
    site_a2 = SiteFactory(organisation=org_a, name="A2", time_zone="America/New_York")
    site_b1 = SiteFactory(organisation=org_b, name="B1", time_zone="Europe/London")
    station_a1 = ChargingStationFactory(identity="A1-CP1", site=site_a1)
    station_a2 = ChargingStationFactory(identity="A2-CP1", site=site_a2)
    station_b1 = ChargingStationFactory(identity="B1-CP1", site=site_b1)
    operator_a = UserFactory(username="operator_a")
    membership_set(user=operator_a, organisation=org_a, role="operator_admin")
    operator_b = UserFactory(username="operator_b")
    membership_set(user=operator_b, organisation=org_b, role="operator_admin")
    host_a1 = UserFactory(username="host_a1")
    site_host_grant(user=host_a1, site=site_a1)
    finance_a = UserFactory(username="finance_a")
    membership_set(user=finance_a, organisation=org_a, role="finance")
    superuser = UserFactory(username="root", is_superuser=True, is_staff=True)
    return World(
        org_a=org_a,
        org_b=org_b,
        site_a1=site_a1,
        site_a2=site_a2,
        site_b1=site_b1,
        station_a1=station_a1,
        station_a2=station_a2,
        station_b1=station_b1,
        operator_a=operator_a,
        operator_b=operator_b,
        host_a1=host_a1,
        finance_a=finance_a,
        superuser=superuser,
    )


@pytest.fixture(autouse=True)
def _ocpp_test_settings(settings):
    # Our OCPP answers are checked against the response schemas in every test.
    settings.OCPP_VALIDATE_RESPONSES = True
    settings.OCPP_MESSAGE_LOG = "none"
    # Last-seen written at once in-process (its coalescing has its own tests: tests/ocpp/test_seen.py).
    settings.OCPP_SEEN_FLUSH_S = 0
    # Live status batches flushed quickly, so that a test's short quiet period sees them.
    settings.LIVE_BATCH_S = 0.05
    # Jobs after boots and session starts queued at once (one item each) in-process; batching has its own tests.
    settings.OCPP_TASK_BATCH_S = 0
    # No gc.freeze() in the test process (cpms/gc_tuning.py has its own tests).
    settings.OCPP_GC_FREEZE = False
    # Human-login hashing costs ~0.5 s per user with PBKDF2; tests create many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _api_throttle_per_test(settings, request):
    """The API throttle counts in this test's own memory: with REDIS_URL set it would count in Redis, across
    tests and test runs (a fixed address and recycled user ids), and the suite would start tripping limits.
    Tests of the throttle set the limits they test; tests/e2e test the shared Redis counting."""
    settings.CACHES = {
        **settings.CACHES,
        "throttle": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": request.node.nodeid,
        },
    }


def _close_connections_after_each_use():
    """OCPP handlers run services in worker threads (database_sync_to_async). With persistent connections
    those threads would keep test-database connections open past the test, and PostgreSQL refuses to drop
    a database in use. Connections share this settings dict, so this applies to every thread."""
    from django.db import connections

    connections.settings["default"]["CONN_MAX_AGE"] = 0


_close_connections_after_each_use()


@pytest.fixture(autouse=True)
def _fresh_pool_after_leaky_tests():
    """A fresh connection pool after a test that left pooled connections checked out.

    Every in-process async test runs its own event loop (`asyncio.run`), whose worker threads die at its end;
    a connection a dead thread still held is never handed back, so the pool (20 connections) ran dry after a
    few dozen handshake tests and later tests waited out its timeout. A server process has one loop for its
    life and returns each connection after every call (checked: 28 refused handshakes against a pool of 3,
    then a charger connects normally). After the test (this fixture is set up first, so torn down last, after
    the database teardown) nothing of the test may hold a connection but the main thread's one."""
    yield
    from django.db import connections

    wrapper = connections["default"]
    pool = getattr(wrapper, "pool", None) if wrapper.vendor == "postgresql" else None
    if pool is None:
        return
    stats = pool.get_stats()
    if stats.get("pool_size", 0) - stats.get("pool_available", 0) > 1:
        wrapper.close()
        wrapper.close_pool()


@pytest.fixture(scope="session", autouse=True)
def _release_worker_thread_connections(django_db_setup):
    """Worker threads that ran OCPP services may hold their last connection until they are collected;
    release them before pytest-django drops the test database (PostgreSQL refuses while in use)."""
    yield
    import gc
    import time

    for _ in range(20):
        gc.collect()
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def queued_tasks(monkeypatch) -> list[tuple[str, tuple]]:
    """(task name, args) of the Celery jobs the OCPP handlers queued. In-process tests publish nothing to a
    broker (a worker of another test could pick it up); end-to-end tests run a real worker on their own
    queue."""
    queued: list[tuple[str, tuple]] = []
    monkeypatch.setattr("cpms.ocpp.task_queue.publish", lambda task, *args: queued.append((task.name, args)))
    return queued


@pytest.fixture
def api():
    """api(user) -> an APIClient sending that user's token, as an integrator would.

    Token auth (not force_authenticate) so that each request loads a fresh user: the scope selectors cache
    the user's roles on the user object."""

    def client_for(user) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_get_or_create(user=user).key}")
        return client

    return client_for

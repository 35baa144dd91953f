"""factory_boy factories for every domain model (used as fixtures via tests/conftest.py)."""

import factory
from django.utils import timezone

from accounts.models import Membership, Organisation, User
from sessions.models import ChargingSession, IdToken
from stations.models import ChargingStation, Connector, Evse, Site
from stations.services.credentials import password_hash_make

DEFAULT_STATION_PASSWORD = "station-secret-1"


class OrganisationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organisation

    name = factory.Sequence(lambda n: f"Operator {n}")
    slug = factory.Sequence(lambda n: f"operator-{n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")

    @factory.post_generation
    def password(self, create, extracted, **kwargs):
        # Saved, not only set on the instance: with the hash only in memory, force_login() stores a session
        # hash that the row does not match, and the session is flushed on the next request.
        self.set_password(extracted or "pw-for-tests-1")
        if create:
            self.save(update_fields=["password"])


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    organisation = factory.SubFactory(OrganisationFactory)
    role = "operator_admin"


class SiteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Site

    organisation = factory.SubFactory(OrganisationFactory)
    name = factory.Sequence(lambda n: f"Site {n}")
    time_zone = "Europe/Berlin"


class ChargingStationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ChargingStation

    identity = factory.Sequence(lambda n: f"CP{n:04d}")
    site = factory.SubFactory(SiteFactory)
    organisation = factory.LazyAttribute(lambda o: o.site.organisation)
    password_hash = factory.LazyFunction(lambda: password_hash_make(DEFAULT_STATION_PASSWORD))


class EvseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Evse

    station = factory.SubFactory(ChargingStationFactory)
    evse_id = 1


class ConnectorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Connector

    evse = factory.SubFactory(EvseFactory)
    connector_id = 1


class IdTokenFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = IdToken

    organisation = factory.SubFactory(OrganisationFactory)
    value = factory.Sequence(lambda n: f"TAG{n:05d}")


class ChargingSessionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ChargingSession

    station = factory.SubFactory(ChargingStationFactory)
    transaction_id = factory.Sequence(lambda n: str(100000 + n))
    started_at = factory.LazyFunction(timezone.now)
    start_received_at = factory.LazyFunction(timezone.now)
    meter_start_wh = 1000

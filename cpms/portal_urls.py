"""The portal under /portal/, namespace `portal`: each app owns its own URL modules."""

from accounts.urls import urlpatterns as accounts_urls
from billing.urls import urlpatterns as billing_urls
from billing.urls_kpis import urlpatterns as kpi_urls
from sessions.urls import urlpatterns as sessions_urls
from sessions.urls_waitlists import urlpatterns as waitlist_urls
from stations.urls_incidents import urlpatterns as incident_urls
from stations.urls_portal import urlpatterns as station_urls

app_name = "portal"

urlpatterns = [
    *accounts_urls,
    *station_urls,
    *incident_urls,
    *sessions_urls,
    *waitlist_urls,
    *billing_urls,
    *kpi_urls,
]

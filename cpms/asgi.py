import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpms.settings")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from cpms import daphne_compat  # noqa: E402
from stations.ocpp.routing import websocket_urlpatterns  # noqa: E402

daphne_compat.install()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # The OCPP path takes no cookies and no session: chargers authenticate with Basic auth.
        "websocket": URLRouter(websocket_urlpatterns),
    }
)

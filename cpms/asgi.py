import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpms.settings")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from cpms import daphne_compat  # noqa: E402
from cpms.ocpp.routing import websocket_urlpatterns  # noqa: E402
from cpms.portal.consumers import LiveStatusConsumer  # noqa: E402

daphne_compat.install()

# The portal's live status: Origin must be one of ALLOWED_HOSTS (docs/reliability.md case 39), then the
# session decides who the user is.
live_status = AllowedHostsOriginValidator(AuthMiddlewareStack(LiveStatusConsumer.as_asgi()))

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # The OCPP path takes no cookies and no session: chargers authenticate with Basic auth. Only the
        # portal's path gets the session middleware.
        # The ignore: channels routes consumers with django's path(), whose stubs take views only.
        "websocket": URLRouter([path("ws/live/", live_status), *websocket_urlpatterns]),  # type: ignore[list-item]
    }
)

from django.urls import re_path

from cpms.ocpp.consumers import NotFoundConsumer, OcppConsumer

# docs/contract.md#url-and-identity: ws://HOST/ocpp/<identity>, identity URL-decoded, 1-48 characters (checked
# in the consumer so that a bad identity gets a 404 rather than falling through the router).
# The ignores: channels routes consumers with django's re_path(), whose stubs take views only.
websocket_urlpatterns = [
    re_path(r"^ocpp/(?P<identity>[^/]+)/?$", OcppConsumer.as_asgi()),  # type: ignore[arg-type]
    # Anything else under ocpp (an encoded slash decoded by the server, an empty identity, more segments):
    # the consumer refuses it as an unknown identity, logged and throttled (docs/reliability.md case 46).
    re_path(r"^ocpp(?:/(?P<identity>.*))?$", OcppConsumer.as_asgi()),  # type: ignore[arg-type]
    # Not an OCPP URL (the portal's /ws/live/ is routed before these): 404, never a router error (500).
    re_path(r"", NotFoundConsumer.as_asgi()),  # type: ignore[arg-type]
]

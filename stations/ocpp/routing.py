from django.urls import re_path

from stations.ocpp.consumers import OcppConsumer

# CONTRACT.md: ws://HOST/ocpp/<identity>, identity URL-decoded, 1-48 characters (checked in the consumer so
# that a bad identity gets a 404 rather than falling through the router).
websocket_urlpatterns = [
    re_path(r"^ocpp/(?P<identity>[^/]+)/?$", OcppConsumer.as_asgi()),
]

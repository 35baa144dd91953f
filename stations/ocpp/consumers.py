from channels.generic.websocket import AsyncWebsocketConsumer


class OcppConsumer(AsyncWebsocketConsumer):
    pass

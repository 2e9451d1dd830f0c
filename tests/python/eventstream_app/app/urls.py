"""/events/ is the SSE stream of channel "test"; /send/<n>/ publishes event n;
/ws/echo/ is a WebSocket-over-HTTP echo written with django-grip's
WebSocket context; /ws/room/ also subscribes to channel "room", and
/say/?m=... publishes a ws-message there."""

import django_eventstream
from django.http import HttpResponse
from django.urls import include, path
from django_eventstream import send_event
from django_grip import publish, websocket_only
from gripcontrol import WebSocketMessageFormat


def send(request, n):
    # Blocking, so the event is stored and published when this returns.
    send_event("test", "message", {"n": n}, async_publish=False)
    return HttpResponse("sent %d\n" % n)


@websocket_only
def ws_echo(request):
    ws = request.wscontext
    if ws.is_opening():
        ws.accept()
    while ws.can_recv():
        message = ws.recv()
        if message is None:
            ws.close()
            break
        ws.send(message)
    return HttpResponse()


@websocket_only
def ws_room(request):
    ws = request.wscontext
    if ws.is_opening():
        ws.accept()
        ws.subscribe("room")
    while ws.can_recv():
        message = ws.recv()
        if message is None:
            ws.close()
            break
        ws.send(message)
    return HttpResponse()


def say(request):
    publish("room", WebSocketMessageFormat(request.GET["m"]), blocking=True)
    return HttpResponse("said\n")


urlpatterns = [
    path("ws/room/", ws_room),
    path("say/", say),
    path("ws/echo/", ws_echo),
    path("events/", include(django_eventstream.urls), {"channels": ["test"]}),
    path("send/<int:n>/", send),
]

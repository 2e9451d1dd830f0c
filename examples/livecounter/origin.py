"""Live counter origin: the Fanout + Fastly "Live Counter" demo, rebuilt for
Holdfast (clients -> Holdfast -> Varnish -> this origin).

    GET  /                 the page (a counter shown live, a button)
    GET  /counters/<id>/   the value: as an SSE stream hold (GRIP, through
                           django-grip) for `Accept: text/event-stream`,
                           else as text; cacheable for 10 minutes
                           (s-maxage), tagged `Surrogate-Key: counter-<id>`
    POST /counters/<id>/   adds one, then publishes the new value to
                           Holdfast with a purge of `counter-<id>`; Holdfast
                           purges the caches, then delivers, at most once a
                           second per counter (the latest value)

Run: python origin.py [addr:port]   (default 127.0.0.1:8080)
Environment: HOLDFAST_PUBLISH (default http://127.0.0.1:5561/publish/).
Counters live in memory: a restarted origin starts from zero.
"""

import json
import os
import sys
import threading
import urllib.request
from pathlib import Path

import django
from django.conf import settings

HERE = Path(__file__).resolve().parent
PUBLISH = os.environ.get("HOLDFAST_PUBLISH", "http://127.0.0.1:5561/publish/")

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    SECRET_KEY="livecounter-example",
    ROOT_URLCONF=__name__,
    MIDDLEWARE=["django_grip.GripMiddleware"],
    # Holdfast's publish API; it also makes django-grip trust Grip-Sig.
    GRIP_URL=PUBLISH.rsplit("/publish/", 1)[0],
    USE_TZ=True,
)
django.setup()

from django.http import HttpResponse, HttpResponseNotAllowed  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402
from django_grip import set_hold_stream  # noqa: E402

_lock = threading.Lock()
_counters = {}


def _event(value):
    return "event: message\ndata: %d\n\n" % value


def _publish(counter_id, value):
    channel = "counter-%s" % counter_id
    item = {
        "channel": channel,
        "purge": [channel],
        "formats": {"http-stream": {"content": _event(value)}},
    }
    body = json.dumps({"items": [item]}).encode()
    req = urllib.request.Request(
        PUBLISH, data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        resp.read()


def page(request):
    html = (HERE / "index.html").read_text()
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    # The page never changes: cached too, so it loads while the origin is down.
    response["Cache-Control"] = "s-maxage=600"
    return response


@csrf_exempt
def counter(request, counter_id):
    if request.method == "POST":
        with _lock:
            value = _counters.get(counter_id, 0) + 1
            _counters[counter_id] = value
        _publish(counter_id, value)
        return HttpResponse("%d\n" % value, content_type="text/plain")
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
    with _lock:
        value = _counters.get(counter_id, 0)
    if "text/event-stream" in request.headers.get("Accept", ""):
        response = HttpResponse(_event(value), content_type="text/event-stream")
        set_hold_stream(request, "counter-%s" % counter_id)
    else:
        response = HttpResponse("%d\n" % value, content_type="text/plain")
    response["Cache-Control"] = "s-maxage=600"
    response["Vary"] = "Accept"
    response["Surrogate-Key"] = "counter-%s" % counter_id
    return response


urlpatterns = [
    path("", page),
    path("counters/<int:counter_id>/", counter),
]

if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    addr = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:8080"
    execute_from_command_line([sys.argv[0], "runserver", "--noreload", addr])

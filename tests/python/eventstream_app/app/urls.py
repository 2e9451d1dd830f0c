"""/events/ is the SSE stream of channel "test"; /send/<n>/ publishes event n."""

import django_eventstream
from django.http import HttpResponse
from django.urls import include, path
from django_eventstream import send_event


def send(request, n):
    # Blocking, so the event is stored and published when this returns.
    send_event("test", "message", {"n": n}, async_publish=False)
    return HttpResponse("sent %d\n" % n)


urlpatterns = [
    path("events/", include(django_eventstream.urls), {"channels": ["test"]}),
    path("send/<int:n>/", send),
]

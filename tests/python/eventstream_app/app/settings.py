"""A minimal Django project serving django-eventstream behind Holdfast.

Environment: GRIP_URL (Holdfast's publish API, e.g. http://127.0.0.1:5561)
and EVENTSTREAM_DB (the SQLite file events are stored in, so a reconnecting
client can be sent what it missed).
"""

import os

SECRET_KEY = "holdfast-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_eventstream",
]
MIDDLEWARE = ["django_grip.GripMiddleware"]
ROOT_URLCONF = "app.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["EVENTSTREAM_DB"],
    }
}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
GRIP_URL = os.environ["GRIP_URL"]
EVENTSTREAM_STORAGE_CLASS = "django_eventstream.storage.DjangoModelStorage"
LOGGING = {
    "version": 1,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}

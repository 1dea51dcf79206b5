"""Settings of the djtasks demo site, read from the environment (django-environ).

DATABASE_URL, SECRET_KEY, DEBUG and ALLOWED_HOSTS come from the environment (or a .env file). Without
DATABASE_URL the site uses a private PostgreSQL cluster under .local/ (``DJTASKS_DEMO_DIR``), which
``manage.py demo`` starts.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import environ

from devtools.localpg import LocalPostgres

BASE_DIR = Path(__file__).resolve().parent.parent
LOCAL_DB_NAME = "djtasks_demo"

env = environ.Env(DEBUG=(bool, False))
environ.Env.read_env(BASE_DIR / ".env")
LOCAL_DIR = Path(env("DJTASKS_DEMO_DIR", default=str(BASE_DIR / ".local")))  # the demo's state (tests move it)
LOCAL_PGDATA = LOCAL_DIR / "pgdata"


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in .local/ (never in git)."""
    key = env("SECRET_KEY", default="")
    if key:
        return key
    path = LOCAL_DIR / "secret_key"
    if not path.exists():
        LOCAL_DIR.mkdir(exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


DEBUG = env("DEBUG")
SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
USES_LOCAL_POSTGRES = not env("DATABASE_URL", default="")
DATABASES = {
    "default": env.db("DATABASE_URL", default=LocalPostgres(LOCAL_PGDATA).url(LOCAL_DB_NAME)),
}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "djtasks",
    "example_site.demo",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "example_site.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
WSGI_APPLICATION = "example_site.wsgi.application"
AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []
LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DJTASKS = {
    "QUEUES": {"default": {}, "slow": {}},
}

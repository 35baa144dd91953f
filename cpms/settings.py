"""One settings file, driven by the environment (see docs/configuration.md).

Embedded default (nothing set): SQLite file, in-memory channel layer, Celery over kombu's filesystem
transport. With DATABASE_URL / REDIS_URL: PostgreSQL, channels-redis and Redis as the Celery broker.
"""

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url

from cpms.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("CPMS_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)  # SQLite files, the embedded Celery broker, exports

DEBUG = env_bool("DJANGO_DEBUG", False)
# The fallback key only exists so that `make run` works out of the box; `check --deploy` flags it.
SECRET_KEY = env_str("DJANGO_SECRET_KEY", "django-insecure-dev-only-key-change-me-in-production-0123456789")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "django_filters",
    "guardian",
    "channels",
    "django_celery_beat",
    "django_htmx",
    "axes",
    "cpms",
    "accounts",
    "stations",
    "sessions.apps.ChargingConfig",
    "energy",
    "billing",
    "cpms.ocpi",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: turns a lockout into its response (cpms.portal.accounts.login_lockout_response).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "cpms.urls"
ASGI_APPLICATION = "cpms.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "cpms.portal.base.portal_context",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 600),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The OCPP loop writes from a thread pool: wait for SQLite's write lock instead of failing at once,
    # and take it at BEGIN so that read-then-write transactions cannot deadlock.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file (not in-memory) so end-to-end tests can point a server process at it; one per test run so
    # that two runs on one machine do not share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
elif env_int("DATABASE_POOL_MAX", 20) > 0:
    # Under ASGI every HTTP request runs in a thread of its own: persistent connections would be one per
    # request thread, never reused and never closed (Django's docs: disable them under ASGI). A pool per
    # process bounds them; a thread waits up to `timeout` for a free connection.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # Django's health check would cost a round trip at every checkout (every database call of the OCPP
    # loop) and sleeps between dead connections after a restart; our backend instead drops, at checkout,
    # connections the server closed (one poll() each; cpms/db_backends/postgresql/base.py).
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"]["ENGINE"] = "cpms.db_backends.postgresql"
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2,
        "max_size": env_int("DATABASE_POOL_MAX", 20),
        "timeout": env_float("DATABASE_POOL_TIMEOUT_S", 10.0),
        # While the database is down the pool retries a connection after 1, 2, 4, 8... s (psycopg_pool's
        # backoff), so after an outage of 30 s the next attempt could be 30 s away. Giving up each attempt
        # after 2 s lets the next checkout start a fresh one: reconnected within about a second of the
        # database's return, whatever the outage's length (docs/reliability.md case 31).
        "reconnect_timeout": 2.0,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    # First: refuses logins (portal, admin) of a locked-out username+address before any password check.
    # A subclass of axes.backends.AxesStandaloneBackend that lets in-process authenticate() calls without
    # a request (the test client's login(), a shell) through to the next backends.
    "accounts.backends.LoginLockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user row

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
# The drivers' pages in the site's language: the catalogs live in the cpms app, and makemessages run from the
# repository's top writes there (a top-level locale/ would be a new directory). .mo: manage.py compile_translations.
LOCALE_PATHS = [BASE_DIR / "cpms" / "locale"]
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
# Uploaded files (firmware images, charger diagnostics and logs). Never served as static files: firmware
# goes out through a token URL, uploads only to users who may see the station.
MEDIA_ROOT = Path(env_str("CPMS_MEDIA_ROOT", str(VAR_DIR / "media")))
# The platform's address as chargers reach it: firmware download and diagnostics upload URLs are built
# from it (chargers are on another network than the admin's browser).
CPMS_PUBLIC_URL = env_str("CPMS_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
# The platform's address as drivers reach it: the EVSEs' public URLs (QR labels, charger displays, the API's
# `public_url`) are built from it. Empty: from the request that asks (the portal's or the API's host), so
# set it where staff reach the platform under another name than drivers do.
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "").rstrip("/")
# Largest diagnostics/log file a charger may upload.
CPMS_MAX_UPLOAD_BYTES = env_int("CPMS_MAX_UPLOAD_BYTES", 50 * 1024 * 1024)
LOGIN_URL = "portal:login"
LOGIN_REDIRECT_URL = "portal:overview"
LOGOUT_REDIRECT_URL = "portal:login"

# --- Email (incident alerts, waitlist offers, user invitations) ------------------------------------
# Unset: mails are printed to the server's log. Set EMAIL_HOST (and friends) to send them.
EMAIL_HOST = env_str("EMAIL_HOST", "")
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "CPMS <cpms@localhost>")

# --- Login throttling (django-axes; docs/reliability.md case 41) ---------------------------------
# After AXES_FAILURE_LIMIT failed logins for one username from one address, that pair is locked out for
# AXES_COOLOFF_MINUTES (a correct password is refused too). The locked-out answer is the login page with
# the usual generic error, so that it tells nothing about whether the account exists.
AXES_ENABLED = env_bool("AXES_ENABLED", True)
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("AXES_COOLOFF_MINUTES", 15.0))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "cpms.portal.accounts.login_lockout_response"
# The client address: REMOTE_ADDR, or behind the TLS proxy the last X-Forwarded-For entry (the one the
# proxy appended; the earlier ones are whatever the client sent).
AXES_CLIENT_IP_CALLABLE = "accounts.backends.client_ip"
CLIENT_IP_FROM_FORWARDED_FOR = env_bool("BEHIND_TLS_PROXY", False)
AXES_ENABLE_ADMIN = True  # attempts and lockouts are listed in the admin (superusers reset them there)

SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 8 * 3600)
SESSION_SAVE_EVERY_REQUEST = True  # idle sessions expire: the age counts from the last request
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Production values: docs/production.env (what `check --deploy` is tested with, tests/deployment/).
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
    CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Chargers fetch firmware and upload diagnostics at the URLs we give them (CPMS_PUBLIC_URL); many cannot
# follow a redirect, so these token URLs are served as asked, never redirected to HTTPS.
SECURE_REDIRECT_EXEMPT = [r"^firmware/", r"^ocpp-upload/"]
if env_bool("BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Redis, channel layer, Celery -------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
# Job recovery after a worker is killed (docs/operations.md#job-recovery). A running job whose heartbeat
# is older than JOB_LEASE_S is taken as lost; the sweep (every JOB_SWEEP_S) queues it again, at most
# JOB_MAX_ATTEMPTS attempts in all, then fails it. CELERY_VISIBILITY_TIMEOUT_S: see the Redis broker.
JOB_LEASE_S = env_float("JOB_LEASE_S", 120.0)
JOB_SWEEP_S = env_float("JOB_SWEEP_S", 60.0)
JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 3)
CELERY_VISIBILITY_TIMEOUT_S = env_int("CELERY_VISIBILITY_TIMEOUT_S", 600)

# Redis pub/sub channels are shared by every database of a Redis server: two installations (or test runs) on one
# server with different db numbers would hear each other's group messages (a charger of one closed by the
# other's "superseded" broadcast). The layer's names carry this prefix; by default the db number of REDIS_URL.
CHANNEL_LAYER_PREFIX = env_str(
    "CHANNEL_LAYER_PREFIX", f"cpms{(urlsplit(REDIS_URL).path.strip('/') or '0')}." if REDIS_URL else "cpms."
)

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # The pub/sub layer delivers every group message; the list-based layer silently drops past
            # its capacity (docs/performance.md#channels-redis). socket_timeout keeps redis-py 8 from killing
            # consumers.
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": 30, "socket_keepalive": True}],
                "prefix": CHANNEL_LAYER_PREFIX,
            },
        }
    }
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        # A task whose worker died unacknowledged (acks_late) goes back to the queue this long after it
        # was delivered; kombu's default is an hour. Redelivery while a task still runs is harmless (tasks
        # are idempotent, jobs with a lease skip it) but repeats work: keep it above the longest task
        # without a lease and above every countdown (60 s). docs/operations.md#job-recovery
        "visibility_timeout": CELERY_VISIBILITY_TIMEOUT_S,
        # Look for such tasks every few seconds (kombu: every 10 x 10 s).
        "unacked_restore_interval": max(1, min(10, CELERY_VISIBILITY_TIMEOUT_S // 2)),
        "unacked_restore_throttle": 1,
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # A broker that needs no server: kombu's filesystem transport with atomic writes, quarantine of bad
    # files and redelivery after a worker crash (cpms/broker.py), shared by every local process.
    _broker_dir = VAR_DIR / "celery-broker"
    _broker_dir.mkdir(exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT = "cpms.broker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(VAR_DIR / "celery-processed"),
        "control_folder": str(VAR_DIR / "celery-control"),
        "store_processed": False,
    }

# The API throttle's counters (cpms/throttling.py): shared by every web process through Redis; without Redis,
# per process (the embedded mode has one web process). Short timeouts: a slow Redis must not hold requests.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "throttle": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "cpms-throttle",
        "OPTIONS": {"socket_timeout": 1, "socket_connect_timeout": 1},
    }
    if REDIS_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "cpms-throttle"},
}

# One queue per deployment sharing a broker (end-to-end tests give each test its own).
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "celery")
CELERY_TASK_ACKS_LATE = True  # a worker killed mid-task gets the task redelivered; tasks are idempotent
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    "purge-ocpp-message-log": {"task": "stations.tasks.message_log_purge", "schedule": 3600.0},
    "mark-silent-stations-offline": {"task": "stations.tasks.stations_mark_silent_offline", "schedule": 60.0},
    "expire-commands": {"task": "stations.tasks.commands_expire", "schedule": 60.0},
    "expire-reservations": {"task": "sessions.tasks.reservations_expire", "schedule": 60.0},
    "bill-completed-sessions": {
        "task": "billing.tasks.sessions_bill_pending",
        "schedule": env_float("BILLING_SWEEP_S", 60.0),
    },
    "recover-export-jobs": {"task": "billing.tasks.export_jobs_recover", "schedule": JOB_SWEEP_S},
    "recover-command-jobs": {"task": "stations.tasks.command_jobs_recover", "schedule": JOB_SWEEP_S},
    "send-running-costs": {"task": "billing.tasks.running_costs_send", "schedule": 60.0},
    "detect-offline-incidents": {"task": "stations.tasks.incidents_detect_offline", "schedule": 60.0},
    "send-incident-alerts": {"task": "stations.tasks.incidents_notify_pending", "schedule": 60.0},
    "advance-waitlists": {"task": "sessions.tasks.waitlists_advance", "schedule": 30.0},
    "compute-kpis": {
        "task": "billing.tasks.kpis_compute_recent",
        "schedule": env_float("KPI_COMPUTE_S", 900.0),
    },
    "rebalance-sites": {
        "task": "energy.tasks.sites_rebalance",
        "schedule": env_float("ENERGY_REBALANCE_S", 30.0),
    },
    "settle-payments": {
        "task": "billing.tasks.payments_sweep",
        "schedule": env_float("PAYMENT_SWEEP_S", 30.0),
    },
    "ocpi-push-sweep": {
        "task": "cpms.ocpi.tasks.push_sweep",
        "schedule": env_float("OCPI_PUSH_SWEEP_S", 10.0),
    },
    "ocpi-outbox-deliver": {
        "task": "cpms.ocpi.tasks.outbox_deliver_due",
        "schedule": env_float("OCPI_OUTBOX_SWEEP_S", 5.0),
    },
    "ocpi-outbox-purge": {"task": "cpms.ocpi.tasks.outbox_purge", "schedule": 3600.0},
    "ocpi-commands-sweep": {"task": "cpms.ocpi.tasks_commands.commands_sweep", "schedule": 10.0},
    "renew-station-certificates": {
        "task": "stations.tasks_certificates.certificates_renew",
        "schedule": env_float("STATION_CERT_RENEW_SWEEP_S", 3600.0),
    },
}

# --- Waitlists ----------------------------------------------------------------------------------
# How long a free connector offered to the next driver in a site's waitlist is held for them (seconds).
WAITLIST_HOLD_S = env_int("WAITLIST_HOLD_S", 600)

# --- Energy management ------------------------------------------------------------------------
# A new limit is sent only if it differs from the last one sent by this much (or pauses/resumes).
ENERGY_MIN_CHANGE_A = env_float("ENERGY_MIN_CHANGE_A", 1.0)
# An increase for an EVSE waits this long after its previous profile (decreases never wait).
ENERGY_MIN_SEND_INTERVAL_S = env_float("ENERGY_MIN_SEND_INTERVAL_S", 30.0)
# Keep each idle managed EVSE's fail-safe share free, so a car plugging in at its default never overloads a
# node before the next rebalance (safe; costs running sessions that headroom).
ENERGY_RESERVE_IDLE_SHARES = env_bool("ENERGY_RESERVE_IDLE_SHARES", True)
# How long a SetChargingProfile may take to be answered.
ENERGY_PROFILE_TIMEOUT_S = env_float("ENERGY_PROFILE_TIMEOUT_S", 15.0)

# --- Billing ----------------------------------------------------------------------------------
# Average power (W) at or below which a stretch between two register readings is idle (parking), not charging.
BILLING_IDLE_POWER_W = env_int("BILLING_IDLE_POWER_W", 0)
# The sweep bills completed sessions without a CDR that started within this many days.
BILLING_SWEEP_DAYS = env_int("BILLING_SWEEP_DAYS", 7)
# How often a 2.0.1 charger that supports it gets CostUpdated during a session (seconds; 0 = never).
BILLING_COST_UPDATE_S = env_int("BILLING_COST_UPDATE_S", 300)

# --- Ad-hoc payments (docs/payments.md) ---------------------------------------------------------
# A call to the payment provider that takes longer is treated as unanswered (its effect read back later).
PAYMENT_PROVIDER_TIMEOUT_S = env_float("PAYMENT_PROVIDER_TIMEOUT_S", 10.0)
# A webhook signed longer ago than this is refused as a replay.
PAYMENT_WEBHOOK_TOLERANCE_S = env_int("PAYMENT_WEBHOOK_TOLERANCE_S", 300)
# A failed capture is retried after 1, 2, 4, ... minutes, up to this many attempts, then left to the operator.
PAYMENT_CAPTURE_ATTEMPTS = env_int("PAYMENT_CAPTURE_ATTEMPTS", 8)
# How long the charger has to answer the start command for a paid session.
PAYMENT_START_COMMAND_TIMEOUT_S = env_float("PAYMENT_START_COMMAND_TIMEOUT_S", 30.0)
# A paid session is stopped when its cost so far reaches this fraction of its hold (0: never), so that what it
# costs stays within what can be captured.
PAYMENT_STOP_AT_HOLD_FRACTION = env_float("PAYMENT_STOP_AT_HOLD_FRACTION", 0.95)
# Requests per minute per client address on the drivers' public pages (pay, live, receipt).
PAYMENT_PUBLIC_RATE_PER_MIN = env_int("PAYMENT_PUBLIC_RATE_PER_MIN", 60)

# --- Certificates (docs/certificates.md) ------------------------------------------------------------
# How long a station certificate we sign is valid, and how many days before its expiry the station is asked
# for a new one.
STATION_CERT_VALID_DAYS = env_int("STATION_CERT_VALID_DAYS", 365)
STATION_CERT_RENEW_DAYS = env_int("STATION_CERT_RENEW_DAYS", 30)
# A CSR without an organisation (O) is refused (OCPP 2.0.1 A00.FR.404: O is the CSO's name).
STATION_CERT_REQUIRE_ORGANIZATION = env_bool("STATION_CERT_REQUIRE_ORGANIZATION", True)
# External signers per CA purpose ({"v2g": "dotted.path.Signer"}): set in code, not the environment.
CERTIFICATE_EXTERNAL_SIGNERS: dict[str, str] = {}

# --- Roaming (OCPI 2.2.1, docs/ocpi.md) ---------------------------------------------------------
# Our OCPI address as partners reach it (the versions URL in our credentials). Empty: PUBLIC_BASE_URL, else the
# address of the request that asks.
OCPI_BASE_URL = env_str("OCPI_BASE_URL", "").rstrip("/")
# Largest body a partner may send; larger is answered 413 with status 2001.
OCPI_MAX_BODY_BYTES = env_int("OCPI_MAX_BODY_BYTES", 1024 * 1024)
# Most objects per page of a list we serve (a larger `limit` is lowered to it; X-Limit says so).
OCPI_PAGE_LIMIT = env_int("OCPI_PAGE_LIMIT", 100)
# How long one request to a partner may take.
OCPI_PARTNER_TIMEOUT_S = env_float("OCPI_PARTNER_TIMEOUT_S", 10.0)
# Real-time authorisation of an unknown token at its eMSP while the charger waits: how long we wait for it
# (below the chargers' own timeout), then the partner's fallback applies.
OCPI_REALTIME_AUTH_TIMEOUT_S = env_float("OCPI_REALTIME_AUTH_TIMEOUT_S", 5.0)
# Outbox: items per delivery round, the worker's lease on a partner, the longest back-off for a partner that does
# not answer, how often a refused item is tried before it is set aside, how long delivered items are kept.
OCPI_OUTBOX_ROUND_ITEMS = env_int("OCPI_OUTBOX_ROUND_ITEMS", 200)
OCPI_OUTBOX_LEASE_S = env_int("OCPI_OUTBOX_LEASE_S", 300)
OCPI_OUTBOX_BACKOFF_MAX_S = env_int("OCPI_OUTBOX_BACKOFF_MAX_S", 300)
OCPI_OUTBOX_REFUSED_ATTEMPTS = env_int("OCPI_OUTBOX_REFUSED_ATTEMPTS", 5)
OCPI_OUTBOX_KEEP_DAYS = env_int("OCPI_OUTBOX_KEEP_DAYS", 30)

# --- REST API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token auth whose failures are throttled per client address (docs/reliability.md case 41;
        # cpms/throttling.py).
        "cpms.throttling.ThrottledTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "cpms.api.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["cpms.throttling.ApiRateThrottle"],
}
# Failed token authentications one client address may make per window before every token from it gets 429
# (0: no limit); requests per user, and per address for anonymous endpoints ("6000/min", "off").
API_AUTH_FAILURES_PER_ADDRESS = env_int("API_AUTH_FAILURES_PER_ADDRESS", 20)
API_AUTH_FAILURE_WINDOW_S = env_int("API_AUTH_FAILURE_WINDOW_S", 600)
API_THROTTLE_USER_RATE = env_str("API_THROTTLE_USER_RATE", "6000/min")
API_THROTTLE_ANON_RATE = env_str("API_THROTTLE_ANON_RATE", "60/min")
SPECTACULAR_SETTINGS = {
    "TITLE": "CPMS API",
    "DESCRIPTION": "Charge Point Management System REST API (OCPP 1.6J and 2.0.1 back office).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Many models have a "status" or "kind": name each choice set after its enum.
    "ENUM_NAME_OVERRIDES": {
        "CommandStatusEnum": "stations.enums.CommandStatus",
        "CommandSourceEnum": "stations.enums.CommandSource",
        "JobKindEnum": "stations.enums.JobKind",
        "JobStatusEnum": "stations.enums.JobStatus",
        "JobTargetStatusEnum": "stations.enums.JobTargetStatus",
        "UploadKindEnum": "stations.enums.UploadKind",
        "StationEventKindEnum": "stations.enums.StationEventKind",
        "SecurityEventKindEnum": "stations.enums.SecurityEventKind",
        "SessionStatusEnum": "sessions.enums.SessionStatus",
        "ReservationStatusEnum": "sessions.enums.ReservationStatus",
        "IdTokenStatusEnum": "sessions.enums.IdTokenStatus",
    },
}

# --- OCPP -------------------------------------------------------------------------------------
OCPP_HEARTBEAT_INTERVAL_S = env_int("OCPP_HEARTBEAT_INTERVAL_S", 300)
# Last-seen times are gathered per web process and written together this often (cpms/ocpp/seen.py): one
# batch instead of a database write per Heartbeat. 0: each is written at once.
OCPP_SEEN_FLUSH_S = env_float("OCPP_SEEN_FLUSH_S", 5.0)
# The portal's live status events are gathered per web process and group and sent together this often
# (cpms/portal/live.py): one channel-layer message per group instead of one per event. 0: each at once.
LIVE_BATCH_S = env_float("LIVE_BATCH_S", 0.5)
# What follows a boot or a session's start/stop (default profiles, rebalances) is queued per web process in one
# Celery job per kind every this many seconds, with every station of the interval (cpms/ocpp/task_queue.py).
OCPP_TASK_BATCH_S = env_float("OCPP_TASK_BATCH_S", 0.5)
# A station that has sent nothing for this many heartbeat intervals is marked offline.
OCPP_OFFLINE_AFTER_HEARTBEATS = env_float("OCPP_OFFLINE_AFTER_HEARTBEATS", 2.5)
# A station that is disconnected (and silent) this long gets an offline incident (seconds).
INCIDENT_OFFLINE_AFTER_S = env_int("INCIDENT_OFFLINE_AFTER_S", 300)
OCPP_CALL_TIMEOUT_S = env_float("OCPP_CALL_TIMEOUT_S", 30.0)
# A command to a connected station that no server process has taken after this long fails (NotDelivered).
OCPP_COMMAND_DELIVERY_S = env_float("OCPP_COMMAND_DELIVERY_S", 5.0)
# Every server process looks for pending commands of the stations it holds this often (commands whose
# channel-layer message was lost, from processes without a channel layer, and outbox commands).
OCPP_COMMAND_POLL_S = env_float("OCPP_COMMAND_POLL_S", 1.0)
# How a command's issuer tells the process holding the station (stations.services.commands.CommandTransport,
# a dotted path); empty: no word at all, the holder's poller finds the command and the issuer polls.
OCPP_COMMAND_TRANSPORT = env_str("OCPP_COMMAND_TRANSPORT", "cpms.ocpp.transport.ChannelLayerTransport")
OCPP_MAX_FRAME_BYTES = env_int("OCPP_MAX_FRAME_BYTES", 256 * 1024)
# What a web process holds for one connection beyond what the kernel took (a charger that stops reading):
# past it the connection is aborted (docs/reliability.md case 35; cpms/daphne_compat.py). 0: no limit.
OCPP_SEND_BUFFER_MAX_BYTES = env_int("OCPP_SEND_BUFFER_MAX_BYTES", 1024 * 1024)
# Per connection: messages per second sustained, after a burst; past it the connection's messages are
# handled no faster than this (and the first time is logged). 0 turns the limit off.
OCPP_MESSAGES_PER_S = env_float("OCPP_MESSAGES_PER_S", 20.0)
OCPP_MESSAGE_BURST = env_int("OCPP_MESSAGE_BURST", 200)
OCPP_MESSAGE_LOG_DAYS = env_int("OCPP_MESSAGE_LOG_DAYS", 14)
# "all" logs every frame, "none" none; the log is written in batches off the message path.
OCPP_MESSAGE_LOG = env_str("OCPP_MESSAGE_LOG", "all")
OCPP_CLOCK_SKEW_FLAG_S = env_int("OCPP_CLOCK_SKEW_FLAG_S", 300)
# Charger timestamps accepted as event times: at most this old, at most this far ahead of our receive time.
# Outside, the time is kept as sent on a SessionAnomaly, the session flagged `clock_out_of_window`, and our
# receive time used (docs/reliability.md case 45; docs/configuration.md says why these defaults).
OCPP_TIMESTAMP_MAX_AGE_DAYS = env_int("OCPP_TIMESTAMP_MAX_AGE_DAYS", 30)
OCPP_TIMESTAMP_MAX_AHEAD_S = env_int("OCPP_TIMESTAMP_MAX_AHEAD_S", 3600)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}
# Check our own answers against the response schemas (tests turn this on; it costs ~15 us per message).
OCPP_VALIDATE_RESPONSES = env_bool("OCPP_VALIDATE_RESPONSES", False)
# Failed handshakes tolerated per minute from one address for one identity / for any identity (then 429).
OCPP_HANDSHAKE_FAILURES_PER_IDENTITY = env_int("OCPP_HANDSHAKE_FAILURES_PER_IDENTITY", 10)
OCPP_HANDSHAKE_FAILURES_PER_ADDRESS = env_int("OCPP_HANDSHAKE_FAILURES_PER_ADDRESS", 100)
# A storm of handshakes (cpms/ocpp/throttle.py HandshakeQueue): per server process, this many do their checks
# at once, this many more wait their turn; past that a handshake is refused at once with 503 (the charger
# retries later) rather than left to time out.
OCPP_HANDSHAKES_IN_FLIGHT = env_int("OCPP_HANDSHAKES_IN_FLIGHT", 200)
OCPP_HANDSHAKE_BACKLOG = env_int("OCPP_HANDSHAKE_BACKLOG", 2000)
# A handshake that waited this long for its turn is refused with 503 too: the server's connect deadline is 10 s.
OCPP_HANDSHAKE_QUEUE_WAIT_S = env_float("OCPP_HANDSHAKE_QUEUE_WAIT_S", 5.0)
# gc.freeze() in the server processes after start and after bursts of admissions (cpms/gc_tuning.py): no
# full-collection pauses with tens of thousands of connections; reclaimed (one full collection) at most every
# OCPP_GC_RECLAIM_S.
OCPP_GC_FREEZE = env_bool("OCPP_GC_FREEZE", True)
OCPP_GC_FREEZE_QUIET_S = env_float("OCPP_GC_FREEZE_QUIET_S", 3.0)
OCPP_GC_FREEZE_MIN_CONNECTIONS = env_int("OCPP_GC_FREEZE_MIN_CONNECTIONS", 100)
OCPP_GC_FREEZE_MAX_WAIT_S = env_float("OCPP_GC_FREEZE_MAX_WAIT_S", 60.0)
OCPP_GC_RECLAIM_S = env_float("OCPP_GC_RECLAIM_S", 3600.0)
# The TLS terminators in front of the server (IPs or CIDRs; docs/deployment.md#tls-and-mutual-tls): only from
# these peers are X-Forwarded-Proto, X-Forwarded-For and the client-certificate headers believed (from any
# other peer they are ignored and logged). Empty: the server is reached directly.
OCPP_TRUSTED_PROXIES = env_list("OCPP_TRUSTED_PROXIES", [])
# The terminator's verified client certificate (nginx $ssl_client_escaped_cert: URL-encoded PEM) and its
# verification result (nginx $ssl_client_verify: SUCCESS, NONE or FAILED:<reason>).
OCPP_CLIENT_CERT_HEADER = env_str("OCPP_CLIENT_CERT_HEADER", "X-SSL-Client-Cert")
OCPP_CLIENT_VERIFY_HEADER = env_str("OCPP_CLIENT_VERIFY_HEADER", "X-SSL-Client-Verify")
# Where 2.0.1 chargers connect after a security-profile upgrade (SetNetworkProfile ocppCsmsUrl, without the
# identity), e.g. wss://cpms.example.com/ocpp/. Empty: CPMS_PUBLIC_URL's host with wss://.
OCPP_TLS_URL = env_str("OCPP_TLS_URL", "")

"""Renotify settings, all read from the environment through one ``env`` object.

Every setting has a safe default for local use (SQLite, embedded broker, a file
outbox under ``var/``). Production (``DEBUG`` off) refuses to start without real
secrets: see ``config.checks``.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import environ
from celery.schedules import crontab
from kombu import Exchange, Queue

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")  # optional; missing file is fine

VAR_DIR = Path(env("RENOTIFY_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DEBUG", default=False)


def _local_secret(name: str) -> str:
    """A random secret kept in var/ so local runs survive restarts (never used in production)."""
    path = VAR_DIR / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


# The environment's value as given (None when unset), for production's checks
# (config.checks): an empty or weak key is refused there, not quietly replaced.
SECRET_KEY_FROM_ENV: str | None = os.environ.get("SECRET_KEY")  # env() reads "" as unset
SECRET_KEY = SECRET_KEY_FROM_ENV or _local_secret("secret_key")
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])

# Key of the consent ledger's HMAC hash chain. It must never change once events
# exist (verification would fail), so production requires it explicitly.
LEDGER_HMAC_KEY = env("LEDGER_HMAC_KEY", default="")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_countries",
    "anymail",
    "csp",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "config",
    "audit",
    "accounts",
    "campaigns",
    "pages",
    "api",
    "evidence",
    "gates",
    "console",
    # The API docs page's scripts and styles come from this site's static files.
    "ninja",
]

MIDDLEWARE = [
    # First, so that it sees every /api/ response last: errors as problem details, rate
    # limit headers, and bodies too large or not JSON refused before anything reads them.
    "api.middleware.ApiEdgeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.is_verified(): the session passed the second step of the sign-in.
    "django_otp.middleware.OTPMiddleware",
    # Staff on /admin/ or /console/ without it go to that step (RENOTIFY_STAFF_2FA).
    "console.middleware.StaffTwoFactorMiddleware",
    # The request behind each staff audit entry (its hashed address and path).
    "audit.middleware.AuditContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "console.context.console_nav",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'renotify.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while a worker writes; IMMEDIATE transactions
    # take the write lock up front instead of failing with "database is locked"
    # half-way through.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    if env.bool("DB_PREPARED_STATEMENTS", default=True):
        # Statements a connection runs again and again (every page view's and objection's)
        # are prepared once per connection: planning the notice page's statement costs
        # more than running it. Needs server-side binding (psycopg 3). Turn it
        # off behind a pooler that cannot keep prepared statements (PgBouncer in
        # transaction mode before 1.21).
        DATABASES["default"].setdefault("OPTIONS", {}).update(
            {"server_side_binding": True, "prepare_threshold": 5}
        )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache and Celery ---------------------------------------------------
REDIS_URL = env("REDIS_URL", default="")

# Seconds to connect to, and to wait for an answer from, the shared cache (every process:
# the rate limits' script client is the cache's own); and a web request's broker publish
# (campaigns.enqueue). A Redis that accepts connections but never answers costs a request
# at most these, never a gunicorn timeout.
RENOTIFY_CACHE_TIMEOUT = env.float("RENOTIFY_CACHE_TIMEOUT", default=0.5)
RENOTIFY_KICK_TIMEOUT = env.float("RENOTIFY_KICK_TIMEOUT", default=0.5)

if REDIS_URL:
    # django-redis, not Django's own RedisCache: that builds a new redis client for every
    # call and increments in two round trips. The notice pages' POST rate limits
    # (config.ratelimit) count on its raw client, every limit in one pipeline.
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "renotify",
            "OPTIONS": {
                "SOCKET_CONNECT_TIMEOUT": RENOTIFY_CACHE_TIMEOUT,
                "SOCKET_TIMEOUT": RENOTIFY_CACHE_TIMEOUT,
            },
        }
    }
else:
    # A file cache is shared by the web, worker and beat processes of one host.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

# The broker defaults to REDIS_URL; CELERY_BROKER_URL names another (RabbitMQ: amqp://...,
# docs/production.md#choosing-a-broker).
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
RENOTIFY_BROKER_IS_AMQP = CELERY_BROKER_URL.startswith(("amqp://", "amqps://", "pyamqp://"))
if RENOTIFY_BROKER_IS_AMQP:
    # RabbitMQ: quorum queues (replicated, acknowledged, no visibility timeout). They refuse
    # the global QoS Celery would ask for (detected and turned off per consumer) and a
    # worker may not hold a countdown's message until it is due, so countdowns (the sender
    # chain's next link, retries' backoff) use native delayed delivery: RabbitMQ keeps the
    # message in its delay exchanges and routes it to the queue when due, which needs the
    # queues' own exchanges to be topic exchanges (below).
    CELERY_TASK_DEFAULT_QUEUE_TYPE = "quorum"
    CELERY_TASK_CREATE_MISSING_QUEUE_TYPE = "quorum"
    CELERY_WORKER_DETECT_QUORUM_QUEUES = True
    CELERY_BROKER_NATIVE_DELAYED_DELIVERY_QUEUE_TYPE = "quorum"
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # Must exceed the longest task, or Redis hands an unacked task to a second worker.
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {"visibility_timeout": 3600}
elif CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    # The filesystem transport has no fan-out exchange for remote control.
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False

# Two queues, so that what members and ESPs are waiting for never queues behind a large
# send. "celery" (the default) takes the short tasks: ESP events, objection receipts, the
# feed, outbound webhooks, beat's sweeps. "bulk" takes the long ones: sender chains,
# fan-outs, evidence packs, the ledger's full walk. A worker started without -Q consumes
# both; production gives "celery" processes of its own (docs/production.md#queues).
CELERY_TASK_DEFAULT_QUEUE = "celery"
RENOTIFY_BULK_QUEUE = "bulk"
# Each on an exchange and routing key of its own: a queue declared by name alone is bound
# with the default's key, and would be handed the default queue's messages as well. On
# RabbitMQ each is a quorum queue on a topic exchange (native delayed delivery, above); the
# routing keys have no dots or wildcards, so topic routing is the direct one.
CELERY_TASK_QUEUES = tuple(
    Queue(
        name,
        Exchange(name, type="topic" if RENOTIFY_BROKER_IS_AMQP else "direct"),
        routing_key=name,
        queue_arguments={"x-queue-type": "quorum"} if RENOTIFY_BROKER_IS_AMQP else None,
    )
    for name in (CELERY_TASK_DEFAULT_QUEUE, RENOTIFY_BULK_QUEUE)
)
CELERY_TASK_ROUTES = {
    name: {"queue": RENOTIFY_BULK_QUEUE}
    for name in (
        "campaigns.tasks.campaign_send",
        "campaigns.tasks.campaign_fan_out_task",
        "campaigns.tasks.reminders_create_task",
        "evidence.tasks.evidence_pack_build_task",
        "accounts.tasks.ledger_verify",
    )
}
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=600)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=540)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
if REDIS_URL:
    # One active beat per deployment: RedBeat keeps the schedule in Redis and holds a
    # lock there, refreshed every tick. A second beat (a rolling deploy, a mistake)
    # waits for the lock and takes over only when the first stops refreshing it.
    CELERY_BEAT_SCHEDULER = "config.beat.RenotifyBeatScheduler"
    _beat_lock_seconds = env.int("RENOTIFY_BEAT_LOCK_SECONDS", default=60)
    CELERY_BEAT_MAX_LOOP_INTERVAL = max(1, _beat_lock_seconds // 5)
    # RedBeat reads its settings by their own names: config.celery adds these as they are.
    REDBEAT_SETTINGS = {
        "redbeat_redis_url": REDIS_URL,
        "redbeat_redis_options": {},
        "redbeat_key_prefix": env("RENOTIFY_BEAT_KEY_PREFIX", default="renotify:beat:"),
        "redbeat_lock_timeout": _beat_lock_seconds,
    }
# The consent ledger's head is checked this often (from the last verified head on,
# cheap); the whole chain is walked nightly.

RENOTIFY_LEDGER_HEAD_CHECK_SECONDS = env.float("RENOTIFY_LEDGER_HEAD_CHECK_SECONDS", default=300.0)
# The staff console (docs/console.md): how long it keeps figures too costly to count on
# every view (a campaign's deliveries by status, its reach, suppressions per purpose and
# jurisdiction), and how far behind the feed an API consumer is listed as needing
# attention.
RENOTIFY_CONSOLE_PROGRESS_SECONDS = env.float("RENOTIFY_CONSOLE_PROGRESS_SECONDS", default=5.0)
RENOTIFY_CONSOLE_REACH_SECONDS = env.float("RENOTIFY_CONSOLE_REACH_SECONDS", default=60.0)
RENOTIFY_CONSOLE_COUNTS_SECONDS = env.float("RENOTIFY_CONSOLE_COUNTS_SECONDS", default=60.0)
RENOTIFY_CONSOLE_FEED_LAG_SECONDS = env.float("RENOTIFY_CONSOLE_FEED_LAG_SECONDS", default=900.0)
# Beat's sweeps for work a request's kick did not start (events, receipts).
RENOTIFY_SWEEP_SECONDS = 30.0
# Outbound webhooks (api.services.webhook_sending): beat follows the ledger and sends
# what is due this often, so an event reaches its endpoints within about two of these.
RENOTIFY_WEBHOOK_SECONDS = env.float("RENOTIFY_WEBHOOK_SECONDS", default=5.0)
# Each request's connect and read timeout, and how long one sending run may take.
RENOTIFY_WEBHOOK_TIMEOUT = env.float("RENOTIFY_WEBHOOK_TIMEOUT", default=5.0)
RENOTIFY_WEBHOOK_BUDGET = env.float("RENOTIFY_WEBHOOK_BUDGET", default=20.0)
CELERY_BEAT_SCHEDULE = {
    "dispatch-webhooks": {
        "task": "api.tasks.webhooks_dispatch",
        "schedule": RENOTIFY_WEBHOOK_SECONDS,
    },
    "deliver-webhooks": {
        "task": "api.tasks.webhooks_deliver_due",
        "schedule": RENOTIFY_WEBHOOK_SECONDS,
    },
    "start-due-campaigns": {"task": "campaigns.tasks.campaigns_start_due", "schedule": 60.0},
    "resume-evidence-packs": {
        "task": "evidence.tasks.evidence_packs_resume_task",
        "schedule": 60.0,
    },
    "reconcile-deliveries": {
        "task": "campaigns.tasks.deliveries_reconcile_task",
        "schedule": 60.0,
    },
    "process-delivery-events": {
        "task": "campaigns.tasks.delivery_events_process",
        "schedule": RENOTIFY_SWEEP_SECONDS,
    },
    "send-objection-receipts": {
        "task": "campaigns.tasks.objection_receipts_send_task",
        "schedule": RENOTIFY_SWEEP_SECONDS,
    },
    "create-reminder-waves": {
        "task": "campaigns.tasks.reminders_create_task",
        "schedule": crontab(hour=9, minute=0),
    },
    "verify-consent-ledger": {
        "task": "accounts.tasks.ledger_verify",
        "schedule": crontab(hour=3, minute=17),
    },
    "verify-consent-ledger-head": {
        "task": "accounts.tasks.ledger_head_verify",
        "schedule": RENOTIFY_LEDGER_HEAD_CHECK_SECONDS,
    },
    # The suppression feed follows the ledger's choices, and is compared in full now and
    # then to repair what a crash between a commit and its sync left behind
    # (accounts.services.suppression_feed).
    "suppression-feed-catch-up": {
        "task": "accounts.tasks.suppression_feed_catch_up_task",
        "schedule": env.float("RENOTIFY_FEED_CATCH_UP_SECONDS", default=5.0),
    },
    "reconcile-suppression-feed": {
        "task": "accounts.tasks.suppression_feed_reconcile",
        "schedule": env.float("RENOTIFY_FEED_RECONCILE_SECONDS", default=3600.0),
    },
}

# --- Email ---------------------------------------------------------------------
# EMAIL_URL (smtp://, smtp+tls://, consolemail://, filemail://...) wins; else
# EMAIL_BACKEND, e.g. "anymail.backends.postmark.EmailBackend" with ANYMAIL_*
# keys; else a local file outbox under var/outbox/.
if "EMAIL_URL" in os.environ:
    globals().update(env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = env("EMAIL_BACKEND", default="config.mail.OutboxBackend")
EMAIL_FILE_PATH = str(VAR_DIR / "outbox")
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="Privacy team <privacy@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Every ANYMAIL_<NAME> environment variable becomes ANYMAIL["<NAME>"].
ANYMAIL: dict[str, Any] = {
    key.removeprefix("ANYMAIL_"): value
    for key, value in os.environ.items()
    if key.startswith("ANYMAIL_")
}

# --- Security ------------------------------------------------------------------
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_TLS_PROXY", default=False) else None
)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_CONTENT_TYPE_NOSNIFF = True
# Site-wide: only same-origin requests carry a referrer. Under "no-referrer" Chromium
# sends form POSTs with "Origin: null", which Django's CSRF check refuses (the admin
# login would fail). Public pages tighten it to no-referrer (pages.views).
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Public pages: nothing but our own styles, no scripts at all, never framed. The
# staff console is left out: its previews show email HTML with inline styles.
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": ["/admin/"],
    "DIRECTIVES": {
        "default-src": ["'none'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "form-action": ["'self'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
    },
}
# POSTs per member link (repeated taps), and POSTs with a bad or forged link per client
# address (floods of guessed links); a valid link is never refused for its address.
RENOTIFY_RATE_PER_TOKEN = env("RENOTIFY_RATE_PER_TOKEN", default="20/m")
RENOTIFY_RATE_PER_IP = env("RENOTIFY_RATE_PER_IP", default="120/m")
# The proxies in front of the app (config.clientip): empty = none, the client is the TCP
# peer; a number of proxy hops; or their IPs/CIDRs, one per hop, outermost first.
RENOTIFY_TRUSTED_PROXIES = env("RENOTIFY_TRUSTED_PROXIES", default="")

# Staff logins (django-axes): after RENOTIFY_LOGIN_FAILURE_LIMIT wrong passwords for one
# username from one address, that pair is locked out for RENOTIFY_LOGIN_COOLOFF_MINUTES
# (HTTP 429); a correct login resets the count. Counting by the pair means an attacker
# cannot lock a colleague out from elsewhere, and cannot try one password on every
# username from one address without each name's count rising.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("RENOTIFY_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("RENOTIFY_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "console/login_locked_out.html"
# Failures are counted by the client's address as the member pages see it: the TCP peer,
# or what the configured trusted proxies report (config.clientip), never a header a
# client could vary; failed attempts are kept for the cool-off only, and successful
# logins are not logged with their address.
AXES_CLIENT_IP_CALLABLE = "config.clientip.client_ip"
AXES_DISABLE_ACCESS_LOG = True
AXES_VERBOSE = False  # no start-up banner in every command's output
# Lockouts are listed (and lifted) by accounts.admin's own admin, which needs explicit
# permissions like every other; axes' admin would offer a clean-up to any viewer.
AXES_ENABLE_ADMIN = False

# Staff sign in at the console (the admin's own login page sends them there), with a
# second step: a code from an authenticator app (TOTP) or a one-time recovery code.
LOGIN_URL = "console:login"
LOGIN_REDIRECT_URL = "/console/"
# "required": staff on /admin/ and /console/ must have passed the second step (the
# default with DEBUG off); "optional": offered, never forced (the default with DEBUG
# on); "sso": never asked, for a deployment whose identity provider already demands a
# second factor in front of Renotify (config.checks refuses any other value).
RENOTIFY_STAFF_2FA = env("RENOTIFY_STAFF_2FA", default="optional" if DEBUG else "required")
# Wrong codes in one sign-in before it has to start again with the password (each
# device also makes every wrong code wait twice as long as the last: django-otp).
RENOTIFY_2FA_FAILURE_LIMIT = env.int("RENOTIFY_2FA_FAILURE_LIMIT", default=5)
OTP_TOTP_ISSUER = env("RENOTIFY_2FA_ISSUER", default="Renotify")
OTP_TOTP_THROTTLE_FACTOR = 1
OTP_STATIC_THROTTLE_FACTOR = 1
# django-otp's own device admins are not registered (console.apps): keys never show.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- I18N, static ----------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("de", "Deutsch"), ("fr", "Français")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"

# --- Logging: structured enough to grep, never an email address or an IP. --------
# Member links act for the member and never expire: every handler redacts them
# (config.logredact), and Django's own loggers (requests, runserver) lose their default
# handlers and log through ours.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"member_links": {"()": "config.logredact.MemberLinkFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["member_links"],
        }
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "django": {"level": "INFO", "propagate": True},
        "django.server": {"level": "INFO", "propagate": True},
    },
}

# --- Renotify ---------------------------------------------------------------------
# Rows per statement when the importer stages rows and when exports fetch rows.
RENOTIFY_IMPORT_BATCH_SIZE = env.int("RENOTIFY_IMPORT_BATCH_SIZE", default=5000)
RENOTIFY_EXPORT_CHUNK_SIZE = env.int("RENOTIFY_EXPORT_CHUNK_SIZE", default=5000)
# Suppression feed: members compared per transaction (each holds the feed's lock, which
# a member's choice waits for), and entries per page of the changes endpoint at most.
RENOTIFY_FEED_SYNC_CHUNK = env.int("RENOTIFY_FEED_SYNC_CHUNK", default=20_000)
RENOTIFY_FEED_PAGE_MAX = 10_000

# Sending: claim this many deliveries per task, hand them to the transport this
# many at a time (also the throttle's burst), and hold a claim this long before
# the reconciler takes it back.
RENOTIFY_CHUNK_SIZE = env.int("RENOTIFY_CHUNK_SIZE", default=1000)
RENOTIFY_SEND_BATCH = env.int("RENOTIFY_SEND_BATCH", default=50)
RENOTIFY_LEASE_SECONDS = env.int("RENOTIFY_LEASE_SECONDS", default=300)
RENOTIFY_MAX_ATTEMPTS = env.int("RENOTIFY_MAX_ATTEMPTS", default=6)
RENOTIFY_SENDERS_PER_CAMPAIGN = env.int("RENOTIFY_SENDERS_PER_CAMPAIGN", default=2)
RENOTIFY_FANOUT_SLICE = env.int("RENOTIFY_FANOUT_SLICE", default=100_000)
# Circuit breaker: pause a campaign whose bounce or complaint rate says the list is bad.
RENOTIFY_BREAKER_MIN_SENDS = env.int("RENOTIFY_BREAKER_MIN_SENDS", default=500)
RENOTIFY_BREAKER_BOUNCE_RATE = env.float("RENOTIFY_BREAKER_BOUNCE_RATE", default=0.05)
RENOTIFY_BREAKER_COMPLAINT_RATE = env.float("RENOTIFY_BREAKER_COMPLAINT_RATE", default=0.001)
RENOTIFY_BREAKER_REJECTIONS_IN_A_ROW = env.int("RENOTIFY_BREAKER_REJECTIONS_IN_A_ROW", default=50)
RENOTIFY_MESSAGE_ID_DOMAIN = env(
    "RENOTIFY_MESSAGE_ID_DOMAIN", default=SITE_URL.split("://", 1)[-1].split("/")[0].split(":")[0]
)
# Opens and clicks sooner than this after sending are a link scanner, not a person.
RENOTIFY_MACHINE_SECONDS = env.int("RENOTIFY_MACHINE_SECONDS", default=10)
# Where each ledger check also writes the head it verified, out of the database's
# reach: a file path (JSON lines appended), "syslog:" (or "syslog:/dev/log",
# "syslog:host:port") or an https:// URL (JSON POSTed). Empty: nowhere.
RENOTIFY_LEDGER_HEAD_SINK = env("RENOTIFY_LEDGER_HEAD_SINK", default="")
RENOTIFY_LEDGER_HEAD_SINK_TIMEOUT = env.float("RENOTIFY_LEDGER_HEAD_SINK_TIMEOUT", default=5.0)
# Webhook basic-auth credentials, "user:password", comma-separated so that a new
# secret can be added before the old one is removed (rotation).
ANYMAIL["WEBHOOK_SECRET"] = env.list("ANYMAIL_WEBHOOK_SECRET", default=[])


def _anymail_esp(backend: str) -> list[str]:
    """["postmark"] for "anymail.backends.postmark.EmailBackend"; [] for other backends."""
    parts = backend.split(".")
    return [parts[2]] if len(parts) == 4 and parts[:2] == ["anymail", "backends"] else []


# ESPs whose tracking webhooks accept events, as anymail's URLs name them (postmark,
# sendgrid, mailgun, amazon_ses...); the others answer 404 before reading anything.
RENOTIFY_WEBHOOK_ESPS = env.list(
    "RENOTIFY_WEBHOOK_ESPS", default=_anymail_esp(globals().get("EMAIL_BACKEND", ""))
)

# --- Platform API: rate limits and request bodies ----------------------------------
# Requests per client whose own rate (ApiClient.rate) is blank; and requests with a wrong
# key per client address (a valid key is never refused for its address).
RENOTIFY_API_RATE = env("RENOTIFY_API_RATE", default="1200/m")
RENOTIFY_API_RATE_BAD_KEY = env("RENOTIFY_API_RATE_BAD_KEY", default="60/m")
# The largest API request body (bytes); larger ones are 413 before they are read. Bodies
# over DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB by default) are refused whatever this says.
RENOTIFY_API_MAX_BODY = env.int("RENOTIFY_API_MAX_BODY", default=2 * 1024 * 1024)

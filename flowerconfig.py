"""Flower settings for the Procfile's `web` process (`celery -A tasks flower --conf=flowerconfig.py`).

Flower executes this file after it has read its FLOWER_* environment variables, and what is set
here wins over them, so a setting is only given a default here when its FLOWER_* variable is unset.
The values come from core.settings.load_web() (core/settings.py is the one reader of the
environment).

Authentication is required: `web` refuses to start unless one of these is set
    WEB_USER + WEB_PASSWORD        HTTP basic auth (any characters, commas included)
    FLOWER_BASIC_AUTH=user:pass    Flower's own variable (several as user1:pass1,user2:pass2)
    FLOWER_AUTH_PROVIDER + FLOWER_AUTH (+ FLOWER_OAUTH2_*)   Flower's Google/GitHub/GitLab/Okta OAuth
or WEB_NO_AUTH=1 says, explicitly, that Flower may run open (a private network, a local demo).
Even with authentication, Flower answers /healthcheck and /metrics (Prometheus: task names,
worker hostnames, runtimes) to anyone. With WEB_NO_AUTH=1 the pages are open but Flower still
refuses its /api/ to anonymous callers unless FLOWER_UNAUTHENTICATED_API=1.
"""

import sys

from core.config_parsers import web_basic_auth  # noqa: F401  (the rule; tests read it from here)
from core.errors import ConfigError
from core.settings import load_web

try:
    _web = load_web()
except ConfigError as exc:
    print(f"web: configuration error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None
_auth, _error = _web.basic_auth, _web.auth_error
if _error:
    print(_error, file=sys.stderr)
    raise SystemExit(2)
if _auth is not None:
    basic_auth = _auth

# Bounded memory on a small dyno: the in-memory task list keeps this many tasks (Flower's default
# is 100,000; the feeder publishes a task every few milliseconds under load).
if _web.max_tasks is not None:
    max_tasks = _web.max_tasks
# Heroku restarts each dyno daily under a new hostname: forget workers offline for 10 minutes.
if _web.purge_offline_workers is not None:
    purge_offline_workers = _web.purge_offline_workers

# One structured, redacted line per event, like the other processes (core/logs.py).
from core.logs import setup as _setup_logging  # noqa: E402

_setup_logging(_web.log.level, _web.log.fmt, secrets=_web.log.secrets)

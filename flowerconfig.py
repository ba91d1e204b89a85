"""Flower settings for the Procfile's `web` process (`celery -A tasks flower --conf=flowerconfig.py`).

Flower executes this file after it has read its FLOWER_* environment variables, and what is set
here wins over them, so a setting is only given a default here when its FLOWER_* variable is unset.

Authentication is required: `web` refuses to start unless one of these is set
    WEB_USER + WEB_PASSWORD        HTTP basic auth (any characters, commas included)
    FLOWER_BASIC_AUTH=user:pass    Flower's own variable (several as user1:pass1,user2:pass2)
    FLOWER_AUTH_PROVIDER + FLOWER_AUTH (+ FLOWER_OAUTH2_*)   Flower's Google/GitHub/GitLab/Okta OAuth
or WEB_NO_AUTH=1 says, explicitly, that Flower may run open (a private network, a local demo).
Even with authentication, Flower answers /healthcheck and /metrics (Prometheus: task names,
worker hostnames, runtimes) to anyone. With WEB_NO_AUTH=1 the pages are open but Flower still
refuses its /api/ to anonymous callers unless FLOWER_UNAUTHENTICATED_API=1.
"""
import os
import sys


def web_basic_auth(env):
    """-> (basic_auth list to set here or None, error message or None). Pure: env in, values out."""
    user, password = env.get("WEB_USER", ""), env.get("WEB_PASSWORD", "")
    if user or password:
        if not (user and password):
            return None, "web: set both WEB_USER and WEB_PASSWORD (or neither)"
        if ":" in user:
            return None, "web: WEB_USER must not contain ':' (HTTP basic auth splits on it)"
        return [f"{user}:{password}"], None
    if env.get("FLOWER_BASIC_AUTH") or (env.get("FLOWER_AUTH_PROVIDER") and env.get("FLOWER_AUTH")):
        return None, None  # Flower applies its own variables
    if env.get("WEB_NO_AUTH", "").strip().lower() in ("1", "true", "yes"):
        return None, None
    return None, ("web: refusing to start Flower without authentication. Set WEB_USER and "
                  "WEB_PASSWORD (or FLOWER_BASIC_AUTH=user:password), or WEB_NO_AUTH=1 to run it "
                  "open on purpose.")


_auth, _error = web_basic_auth(os.environ)
if _error:
    print(_error, file=sys.stderr)
    raise SystemExit(2)
if _auth is not None:
    basic_auth = _auth

# Bounded memory on a small dyno: the in-memory task list keeps this many tasks (Flower's default
# is 100,000; the feeder publishes a task every few milliseconds under load).
if "FLOWER_MAX_TASKS" not in os.environ:
    max_tasks = 10_000
# Heroku restarts each dyno daily under a new hostname: forget workers offline for 10 minutes.
if "FLOWER_PURGE_OFFLINE_WORKERS" not in os.environ:
    purge_offline_workers = 600

# One structured, redacted line per event, like the other processes (core/logs.py).
try:
    from core.logs import setup as _setup_logging
except ImportError:  # Flower started outside the project: keep Flower's own logging
    pass
else:
    _setup_logging(os.environ.get("LOG_LEVEL", "INFO"))

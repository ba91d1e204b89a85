"""`python -m web`: the read API, the dashboard and Flower (under /flower) on $PORT.

The Procfile's `web: exec python -m web`. Refuses to start (exit 2, one line) without an
authentication choice: WEB_USER + WEB_PASSWORD or FLOWER_BASIC_AUTH (Basic, shared with Flower),
WEB_API_TOKEN (Bearer), or WEB_NO_AUTH=1 (open on purpose). WEB_FLOWER=0 runs the API without
the Flower child (the bench, API-only tests). Exit 1 when Flower cannot be kept running
(web/flower.py) or Redis/MongoDB settings are unusable at startup. WEB_STATE_CACHE_MAX sizes
the latest-state cache (web/state_cache.py; 0 = off).
"""

from __future__ import annotations

import argparse
import sys

PROG = "web"

# uvicorn's settings, shared with bench/asgi_hello.py (the floor the bench measures beside the
# API). No access log (core/logs.py logs what matters). http/loop stay "auto": uvicorn takes
# httptools and uvloop when installed (they are not dependencies here: docs/read-api.md).
UVICORN_OPTIONS: dict[str, object] = {
    "log_config": None,  # core/logs.py's handlers: one redacted line per event
    "access_log": False,
    "proxy_headers": True,
}


def main(argv: list[str] | None = None) -> int:
    from core.cli_errors import EXIT_CODES_EPILOG, run_cli, worker_targets

    argparse.ArgumentParser(
        prog=f"python -m {PROG}",
        description="The read API (/api/v1, /docs), the dashboard (/) and Flower (/flower).",
        epilog=EXIT_CODES_EPILOG,
    ).parse_args(argv)
    return run_cli(PROG, _serve, worker_targets, log_level=None)


def _serve() -> int:
    import uvicorn

    from core.errors import ConfigError
    from core.logs import setup as setup_logging
    from core.settings import WorkerSettings, load_web
    from web.app import create_app
    from web.auth import Credentials
    from web.flower import FlowerChild
    from web.health import WorkerProbe, celery_ping
    from web.stores import Stores

    web = load_web()
    creds = Credentials.from_settings(web)
    if web.flower and web.auth_error:
        raise ConfigError(web.auth_error.removeprefix("web: "))
    if not creds.configured:
        raise ConfigError(
            "no credentials for the API: Flower's OAuth has no password to check; set "
            "WEB_API_TOKEN (Bearer) or WEB_USER + WEB_PASSWORD, or WEB_NO_AUTH=1"
        )
    setup_logging(web.log.level, web.log.fmt, secrets=web.log.secrets)
    stores = Stores.from_settings(WorkerSettings.from_env())
    gave_up = []
    server: uvicorn.Server | None = None

    def give_up() -> None:  # Flower keeps dying: end the process, the platform restarts it
        gave_up.append(True)
        if server is not None:
            server.should_exit = True

    flower = None
    if web.flower:
        flower = FlowerChild(
            web.flower_port,
            give_up=give_up,
            shutting_down=lambda: server is not None and bool(server.should_exit),
        )
    probe = WorkerProbe(ping=celery_ping, mongo_ping=lambda: stores.mongo.command("ping"))
    app = create_app(
        stores, creds, worker_probe=probe, flower=flower, state_cache_max=web.state_cache_max
    )
    config = uvicorn.Config(
        app,
        host="0.0.0.0",  # noqa: S104 - the platform's router reaches the dyno on $PORT
        port=web.port,
        **UVICORN_OPTIONS,  # type: ignore[arg-type]
    )
    server = uvicorn.Server(config)
    server.run()
    stores.close()
    if gave_up:
        print(
            f"{PROG}: Flower kept exiting; stopping so the platform restarts web", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

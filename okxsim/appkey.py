"""The aiohttp application key under which the Exchange is stored."""

from typing import Any

from aiohttp import web

EXCHANGE: web.AppKey[Any] = web.AppKey("okxsim_exchange", object)

"""The dev inbox's own ``web.AppKey``s (the store and SMTP address are in resetd.keys)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .events import InboxEvents
    from .guesses import GuessThrottle
    from .parser import ParserProcess
    from .sink import SinkStats
    from .writer import InboxWriter

events: web.AppKey[InboxEvents] = web.AppKey("inbox_events")
writer: web.AppKey[InboxWriter] = web.AppKey("inbox_writer")
stats: web.AppKey[SinkStats] = web.AppKey("inbox_stats")
# Wrong inbox passwords, over HTTP and SMTP AUTH together.
guesses: web.AppKey[GuessThrottle] = web.AppKey("inbox_guesses")
parser: web.AppKey[ParserProcess] = web.AppKey("inbox_parser")

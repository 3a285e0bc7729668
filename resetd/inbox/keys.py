"""The dev inbox's ``web.AppKey``s, set by :func:`~resetd.inbox.inbox_ctx`.

Only resetd.inbox reads them; the rest of resetd asks the package
(:func:`resetd.inbox.smtp_address`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .capture import SinkStats
    from .events import InboxEvents
    from .guesses import GuessThrottle
    from .parser import ParserProcess
    from .store import InboxStore
    from .tls import TlsInfo
    from .webhook import InboxWebhook
    from .writer import InboxWriter

store: web.AppKey[InboxStore] = web.AppKey("inbox_store")
# (host, port) the SMTP sink actually bound (port 0 in tests picks a free one).
smtp_address: web.AppKey[tuple[str, int]] = web.AppKey("inbox_smtp_address")
# (host, port) of the implicit-TLS listener, when [dev_inbox] smtps_port is set.
smtps_address: web.AppKey[tuple[str, int] | None] = web.AppKey("inbox_smtps_address")
# The certificate the sink presents, when it speaks TLS.
tls_info: web.AppKey[TlsInfo | None] = web.AppKey("inbox_tls_info")
events: web.AppKey[InboxEvents] = web.AppKey("inbox_events")
writer: web.AppKey[InboxWriter] = web.AppKey("inbox_writer")
stats: web.AppKey[SinkStats] = web.AppKey("inbox_stats")
# Wrong inbox passwords, over HTTP and SMTP AUTH together.
guesses: web.AppKey[GuessThrottle] = web.AppKey("inbox_guesses")
parser: web.AppKey[ParserProcess] = web.AppKey("inbox_parser")
# None when [dev_inbox] webhook_url is empty.
webhook: web.AppKey[InboxWebhook | None] = web.AppKey("inbox_webhook")

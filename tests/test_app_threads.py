"""The threads the app works in are its own: made at start-up, ended at clean-up.

Hashing runs in a pool that the app's ``hashing_ctx`` owns, as the database's
writer thread is owned by the database; none of them outlives the app, so
two apps (tests, or a host embedding resetd) never share or leak them.
"""

from __future__ import annotations

import threading

from aiohttp.test_utils import TestClient, TestServer

from resetd import keys
from resetd.app import create_app

from .helpers import GOOD_PASSWORD, ConfigFactory, add_user, sign_in


def resetd_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("resetd-")}


async def test_hashing_and_writer_threads_start_and_end_with_the_app(
    make_config: ConfigFactory,
) -> None:
    before = resetd_threads()
    app = create_app(make_config(dev_inbox={"enabled": False}))
    assert keys.hasher not in app  # made at start-up, with its threads
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        await add_user(app)
        assert (await sign_in(client, "susan", GOOD_PASSWORD)).status == 303
        running = resetd_threads() - before
        assert any(name.startswith("resetd-hash") for name in running), running
        assert any(name.startswith("resetd-writer") for name in running), running
    finally:
        await client.close()
    assert resetd_threads() - before == set()

"""The README's Flask code for "Tell the app (webhooks)", run as it stands there.

Its two blocks (microblog's model with Flask-Login's alternative token, and the
webhook endpoint) are read from README.md and run in a Flask app with
Flask-Login over a microblog-style SQLite database that resetd serves as
``[users] store = "sqlite"``. A user signed in to the app resets the password
through resetd; the event resetd really delivered (to a receiver on loopback)
is handed to the endpoint, and the user's session in the app is over. Forged,
altered and stale requests get 400.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

flask = pytest.importorskip("flask")
flask_login = pytest.importorskip("flask_login")

import sqlalchemy as sa  # noqa: E402
import sqlalchemy.orm as so  # noqa: E402
from werkzeug.security import generate_password_hash  # noqa: E402

from resetd.app import create_app  # noqa: E402
from resetd.outbox.webhook import signature  # noqa: E402

from .helpers import (  # noqa: E402
    GOOD_PASSWORD,
    ConfigFactory,
    request_reset,
    set_new_password,
    token_in,
)
from .relays import Relay  # noqa: E402
from .webhook_receiver import WEBHOOK_SECRET, Receiver  # noqa: E402

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_blocks() -> list[str]:
    """The ```python blocks of the README's "Tell the app (webhooks)" section."""
    text = README.read_text(encoding="utf-8")
    start = text.index("### Tell the app (webhooks)")
    end = text.find("\n## ", start)
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


def run_block(code: str, scope: dict[str, Any]) -> dict[str, Any]:
    """Run a README block in ``scope``, minus its imports of the app's own modules
    (``scope`` gives it those), as a module of its own: without this file's
    ``from __future__ import annotations``."""
    code = "\n".join(line for line in code.splitlines() if not line.startswith("from app"))
    exec(compile(code, "README.md", "exec", dont_inherit=True), scope)
    return scope


class Base(so.DeclarativeBase):
    pass


class MicroblogModel(Base):
    """What microblog's User declares besides what the README changes."""

    __abstract__ = True
    __tablename__ = "user"
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    username: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    email: so.Mapped[str] = so.mapped_column(sa.String(120), unique=True)
    password_hash: so.Mapped[str | None] = so.mapped_column(sa.String(256))


@pytest.fixture
def microblog(tmp_path: Path) -> Iterator[SimpleNamespace]:
    """The Flask app, its database (with susan), and its User model from the README."""
    models, hook = readme_blocks()
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    app = flask.Flask("microblog")
    app.config.update(SECRET_KEY="flask-secret-" + "x" * 32, RESETD_WEBHOOK_SECRET=WEBHOOK_SECRET)
    db = SimpleNamespace(Model=MicroblogModel, session=so.scoped_session(so.sessionmaker(engine)))
    login = flask_login.LoginManager(app)
    scope = {"UserMixin": flask_login.UserMixin, "db": db, "so": so, "sa": sa, "login": login}
    user_model = run_block(models, {"__name__": "app.models", **scope})["User"]
    run_block(hook, {"__name__": "app.resetd_hook", "app": app, "db": db, "User": user_model})
    Base.metadata.create_all(engine)

    @app.teardown_appcontext
    def end_session(_exc: BaseException | None) -> None:
        db.session.remove()

    @app.get("/index")
    @flask_login.login_required
    def index() -> str:
        return f"Hi, {flask_login.current_user.username}!"

    @app.post("/test-login/<username>")
    def test_login(username: str) -> str:
        user = db.session.scalar(sa.select(user_model).where(user_model.username == username))
        flask_login.login_user(user)
        return "signed in"

    with db.session() as session:
        session.add(
            user_model(
                username="susan",
                email="susan@example.com",
                password_hash=generate_password_hash(GOOD_PASSWORD),
            )
        )
        session.commit()
    try:
        yield SimpleNamespace(app=app, db_path=tmp_path / "app.db", User=user_model)
    finally:
        Base.metadata.remove(Base.metadata.tables["user"])
        engine.dispose()


def post_hook(client: Any, body: bytes, sig: str | None) -> Any:
    headers = {"Content-Type": "application/json"}
    if sig is not None:
        headers["Resetd-Signature"] = sig
    return client.post("/hooks/resetd", data=body, headers=headers)


async def test_readme_handler_signs_the_user_out_of_the_app_after_a_real_reset(
    aiohttp_client: Any, make_config: ConfigFactory, relay: Relay, microblog: SimpleNamespace
) -> None:
    flask_client = microblog.app.test_client()
    assert flask_client.post("/test-login/susan").status_code == 200
    assert flask_client.get("/index").get_data(as_text=True) == "Hi, susan!"

    receiver = Receiver()
    await receiver.start()
    try:
        cfg = make_config(
            dev_inbox={"enabled": False},
            mail={"port": relay.port},
            users={"store": "sqlite", "path": str(microblog.db_path)},
            webhooks={"url": receiver.url, "secret": WEBHOOK_SECRET},
        )
        client = await aiohttp_client(create_app(cfg))
        assert (await request_reset(client, "susan@example.com")).status == 303
        [mail] = await relay.wait_for(1)
        assert (await set_new_password(client, token_in(mail))).status == 303
        [delivery] = await receiver.wait_for(1)
    finally:
        await receiver.stop()

    sig = delivery.headers["Resetd-Signature"]
    # Altered, unsigned, wrongly signed, malformed: refused, and nothing changes.
    altered = delivery.body.replace(b'"user_id":1', b'"user_id":2')
    assert altered != delivery.body
    assert post_hook(flask_client, altered, sig).status_code == 400
    assert post_hook(flask_client, delivery.body, None).status_code == 400
    t = sig.split(",")[0].removeprefix("t=")
    assert post_hook(flask_client, delivery.body, f"t={t},v1={'0' * 64}").status_code == 400
    for garbage in ("t=x,v1=é", "v1", "t=²,v1=00", ",,,"):
        assert post_hook(flask_client, delivery.body, garbage).status_code == 400
    # Signed with the secret, but ten minutes old: a replay.
    old = signature(WEBHOOK_SECRET, int(time.time()) - 600, delivery.body)
    assert post_hook(flask_client, delivery.body, old).status_code == 400
    assert flask_client.get("/index").status_code == 200  # still signed in

    # The real delivery, as resetd sent it: the app's session is over.
    assert post_hook(flask_client, delivery.body, sig).status_code == 204
    assert flask_client.get("/index").status_code == 401
    # A repeat of the same event does no harm.
    assert post_hook(flask_client, delivery.body, sig).status_code == 204
    # A new sign-in works with the new token.
    assert flask_client.post("/test-login/susan").status_code == 200
    assert flask_client.get("/index").status_code == 200

"""Where the Jinja2 templates and the static files live, and the operator's own.

The top-level ``templates/`` directory is installed as ``resetd/templates`` by
pyproject's package-dir mapping, so a non-editable ``pip install .`` finds it
next to this file; a checkout or editable install finds it one level up.

``[server] templates`` and ``[server] static`` name directories searched
before the shipped ones (a Jinja ``ChoiceLoader``, as Django's template
directories work): a file there replaces the shipped file of the same relative
name, everything else falls back to the shipped set.
"""

from __future__ import annotations

import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import jinja2
from aiohttp import web
from jinja2 import nodes

from . import i18n
from .config import ConfigError, ServerConfig

_HERE = Path(__file__).resolve().parent

STATIC_DIR = _HERE / "static"
# Looked for, in this order, in [server] static: the header shows the first found.
LOGO_NAMES = ("logo.svg", "logo.png")
_SUFFIXES = (".html", ".txt")  # what counts as a template in a template directory


def template_dir() -> Path:
    for candidate in (_HERE / "templates", _HERE.parent / "templates"):
        if (candidate / "base.html").is_file():
            return candidate
    raise FileNotFoundError("resetd templates not found; reinstall the package")


def template_dirs(server: ServerConfig) -> list[Path]:
    """The operator's template directory (if any), then the shipped one."""
    return [Path(server.templates)] * bool(server.templates) + [template_dir()]


def static_dirs(server: ServerConfig) -> list[Path]:
    """The operator's static directory (if any), then the shipped one."""
    return [Path(server.static)] * bool(server.static) + [STATIC_DIR]


def logo(server: ServerConfig) -> str | None:
    """The file name of the operator's logo in ``[server] static``, or None."""
    if not server.static:
        return None
    return next((n for n in LOGO_NAMES if (Path(server.static) / n).is_file()), None)


class MissingIsError(jinja2.StrictUndefined):
    """A variable the template uses but the context lacks raises
    :class:`jinja2.UndefinedError` when printed, iterated or looked into,
    rather than rendering as nothing; only a test of it (``{% if notice %}``)
    is false, so a template can ask whether an optional value was given."""

    def __bool__(self) -> bool:  # type: ignore[override]
        return False


def configure(env: jinja2.Environment, server: ServerConfig) -> jinja2.Environment:
    """What every resetd environment shares: gettext in the language in use
    (:mod:`resetd.i18n`), the site's name and logo as globals."""
    i18n.install(env)
    env.globals["site_name"] = server.site_name
    env.globals["logo"] = logo(server)
    return env


def environment_options(server: ServerConfig, subdir: str = "") -> dict[str, Any]:
    """Keyword arguments for a ``jinja2.Environment`` loading from the
    operator's directory first, then the shipped one (``subdir`` of each)."""
    return {
        "loader": jinja2.ChoiceLoader(
            [jinja2.FileSystemLoader(d / subdir) for d in template_dirs(server)]
        ),
        "autoescape": jinja2.select_autoescape(["html"]),
        "undefined": MissingIsError,
    }


def check_templates(env: jinja2.Environment, dirs: Sequence[Path]) -> int:
    """Compile every template file in each of ``dirs``, the shipped ones too even
    where the operator's replace them; returns how many.

    Raises :class:`~resetd.config.ConfigError` naming the first file that does
    not compile, or that extends, includes or imports a template by a name no
    directory has, and its line, so ``serve`` stops before taking traffic
    instead of failing on the first visitor of that page."""
    count = 0
    for root in dirs:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if path.suffix not in _SUFFIXES:
                continue
            name = path.relative_to(root).as_posix()
            try:
                tree = env.parse(path.read_text(encoding="utf-8"), name, str(path))
                env.compile(tree, name, str(path))
            except jinja2.TemplateSyntaxError as exc:
                _refuse(path, exc.lineno, exc.message or "syntax error")
            except UnicodeDecodeError:
                _refuse(path, None, "not UTF-8 text")
            _check_references(env, path, tree)
            count += 1
    return count


def _check_references(env: jinja2.Environment, path: Path, tree: nodes.Template) -> None:
    """Each template ``tree`` names literally (extends, include, import) exists."""
    kinds = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)
    assert env.loader is not None
    for node in tree.find_all(kinds):
        assert isinstance(node, nodes.Extends | nodes.Include | nodes.Import | nodes.FromImport)
        target = node.template
        if not isinstance(target, nodes.Const) or not isinstance(target.value, str):
            continue  # a name computed at render time
        if isinstance(node, nodes.Include) and node.ignore_missing:
            continue
        try:
            env.loader.get_source(env, target.value)
        except jinja2.TemplateNotFound:
            _refuse(path, node.lineno, f"template {target.value!r} not found")


def render_problem(exc: jinja2.TemplateError) -> ConfigError:
    """A template that failed while rendering sample values at start, as one line
    naming the template file and line (Jinja maps its frames to them)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(_SUFFIXES)]
    where = f"{frames[-1].filename}, line {frames[-1].lineno}: " if frames else ""
    return ConfigError(f"[server] templates: {where}{type(exc).__name__}: {exc}")


def _refuse(path: Path, line: int | None, why: str) -> NoReturn:
    where = f"{path}, line {line}" if line else str(path)
    raise ConfigError(f"[server] templates: {where}: {why}")


def static_handler(
    dirs: Sequence[Path],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """``GET /static/{filename}``: the first of ``dirs`` that holds the file.

    Only used with ``[server] static`` (otherwise aiohttp's own static route
    serves the shipped directory). A name with an empty, dot-led or ``..``
    part, or one that resolves outside its directory (a symbolic link out),
    is not found."""
    roots = [d.resolve() for d in dirs]

    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["filename"]
        parts = name.split("/")
        if any(not p or p.startswith(".") or "\\" in p for p in parts):
            raise web.HTTPNotFound()
        for root in roots:
            candidate = (root / name).resolve()
            if candidate.is_relative_to(root) and candidate.is_file():
                return web.FileResponse(candidate)
        raise web.HTTPNotFound()

    return static

"""The linear scanners read well-formed input as the stdlib does, and any input in one pass.

Addresses, encoded words and links were read by the stdlib (``getaddresses``,
``decode_header``, ``HTMLParser``) or by regexes that backtracked; the
scanners that replace them must agree with the stdlib where it is right.
Their time is measured where it matters, on the server
(tests/test_hostile_mail.py); here the storms that defeated the old readers
must read as what they are.
"""

from __future__ import annotations

from email.header import Header, decode_header, make_header
from email.utils import formataddr, getaddresses
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st

from resetd.inbox import html_scan
from resetd.inbox.addresses import parse_addresses
from resetd.inbox.headertext import decode_words, valid

ATOM = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-_+", min_size=1, max_size=12).filter(
    lambda s: not s.startswith(".") and not s.endswith(".") and ".." not in s
)
ADDRESS = st.builds(lambda local, host: f"{local}@{host}.example", ATOM, ATOM)
NAME = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=20
)


@settings(max_examples=200, deadline=None)
@given(people=st.lists(st.tuples(NAME, ADDRESS), min_size=1, max_size=8))
def test_address_lists_read_as_the_stdlib_reads_them(people: list[tuple[str, str]]) -> None:
    value = ", ".join(formataddr((name.strip(), addr)) for name, addr in people)
    found, count = parse_addresses(value, 100)
    assert count == len(people)
    expected = [(" ".join(name.split()), addr) for name, addr in people]
    assert [(" ".join(a.name.split()), a.address) for a in found] == expected
    plain = ", ".join(addr for _, addr in people)
    assert [a.address for a in parse_addresses(plain, 100)[0]] == [
        addr for _, addr in getaddresses([plain])
    ]


@settings(max_examples=200, deadline=None)
@given(
    words=st.lists(
        st.tuples(
            st.text(
                alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                min_size=1,
                max_size=15,
            ),
            st.sampled_from(["utf-8", "iso-8859-1", "utf-7"]),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_encoded_words_decode_as_the_stdlib_decodes_them(words: list[tuple[str, str]]) -> None:
    header = Header()
    for word, charset in words:
        try:
            word.encode(charset)
        except UnicodeEncodeError:
            charset = "utf-8"
        header.append(word, charset)
    encoded = header.encode(maxlinelen=76)
    assert decode_words(encoded) == valid(str(make_header(decode_header(encoded))))


class _Anchors(HTMLParser):
    """The stdlib's reading of ``<a href>``, as the inbox used it before."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._close()
            self._href = (dict(attrs).get("href") or "").strip() or None
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._close()

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def _close(self) -> None:
        if self._href:
            self.found.append((self._href, " ".join("".join(self._text).split())))
        self._href = None


LINK_TEXT = st.text(alphabet="abc xyz&;<>", max_size=10).map(
    lambda s: s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
)


@settings(max_examples=200, deadline=None)
@given(
    links=st.lists(
        st.tuples(st.sampled_from(["a", "A"]), ADDRESS, LINK_TEXT, st.sampled_from(['"', "'"])),
        max_size=6,
    ),
    filler=st.sampled_from(["", "<p>", "<b>bold</b>", "<!-- <a href=x>no</a> -->", "<br/>"]),
)
def test_links_read_as_the_stdlib_parser_reads_them(
    links: list[tuple[str, str, str, str]], filler: str
) -> None:
    html = filler.join(
        f"<{tag} class=x href={q}https://{addr}/?a=1&amp;b=2{q}>{text}</{tag}>"
        for tag, addr, text, q in links
    )
    parser = _Anchors()
    parser.feed(html)
    parser.close()
    parser._close()
    assert html_scan.anchors(html, 100) == parser.found


def test_storms_that_defeated_the_old_readers_read_as_plain_text() -> None:
    assert parse_addresses("\r\n " * 100_000, 1000) == ([], 0)
    assert parse_addresses("(" * 300_000, 1000) == ([], 0)  # one unclosed comment
    assert decode_words("=?x?q?" * 50_000) == "=?x?q?" * 50_000
    assert decode_words("=?utf-7?q?+2AA-?=" * 1000) == "\ufffd" * 200 + "=?utf-7?q?+2AA-?=" * 800
    assert html_scan.html_to_text("<a" * 150_000, 10) == "<a<a<a<a<a"
    assert html_scan.anchors("<a" * 150_000, 500) == []
    assert html_scan.html_to_text("<script>x" * 40_000, 10) == "x x x x x"
    assert html_scan.anchors("<a href=x>" + "<!--" * 75_000, 500) == [("x", "<!--" * 250)]

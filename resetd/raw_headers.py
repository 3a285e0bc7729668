"""A received message's header block edited as bytes: fields dropped, the rest as they were.

For mail that passes through resetd on its way elsewhere (a release from the
dev inbox, ``resetd sendmail -t``): only the named fields go, folded lines
with them, and every other byte of the message is kept. One linear pass.
"""

from __future__ import annotations


def split_head(raw: bytes) -> tuple[bytes, bytes]:
    """(header block with its last line's ending, the rest from the empty line on)."""
    crlf, lf = raw.find(b"\r\n\r\n"), raw.find(b"\n\n")
    if crlf < 0 and lf < 0:
        return raw, b""
    cut = crlf + 2 if lf < 0 or 0 <= crlf < lf else lf + 1
    return raw[:cut], raw[cut:]


def without_fields(raw: bytes, names: tuple[bytes, ...]) -> bytes:
    """``raw`` without the header fields named (lower-case names, e.g. ``b"bcc"``)."""
    head, body = split_head(raw)
    kept: list[bytes] = []
    dropping = False
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t"):  # a folded field's continuation
            if not dropping:
                kept.append(line)
            continue
        dropping = line.partition(b":")[0].strip().lower() in names
        if not dropping:
            kept.append(line)
    return b"".join(kept) + body

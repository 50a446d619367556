"""Render: escaping of user text (case and source names, exception messages) per report format.

A report mixes gradcheck's own text with text from the user's code, and the user's text must
never change the report's structure: end a line, start a GitHub workflow command, break a
Markdown table or code fence, or make an XML file that parsers refuse.

* :func:`printable` (text, Markdown, terminals): control characters (C0, DEL, C1, so ANSI
  colour codes too), U+2028/U+2029 and lone surrogates become visible escapes such as
  ``\\x1b``; a line of user text stays one line.
* :func:`markdown_cell`: a table cell: ``|`` (the column break) and the characters that start
  HTML, links, images, code or emphasis are backslash-escaped.
* :func:`fence`: a code fence longer than any run of backticks in the block it encloses.
* :func:`xml_text`: characters XML 1.0 forbids (all C0 but tab, LF, CR; lone surrogates;
  U+FFFE, U+FFFF) become visible escapes; ElementTree escapes ``<``, ``&`` and quotes itself.
* :func:`no_surrogates`: lone surrogates alone become escapes, for HTML (after
  :func:`html.escape`) and JSON (where ``\\udXXX`` reads back as the same string).

JSON needs nothing more (``json.dumps`` escapes control characters); GitHub workflow
commands are escaped in ``gradcheck._report.github``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# C0 controls, DEL and C1 controls (ESC of ANSI codes among them), the line and paragraph
# separators (str.splitlines and many viewers end a line there), and lone surrogates.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# What XML 1.0 forbids: C0 but tab, LF and CR; lone surrogates; U+FFFE and U+FFFF.
_XML_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# In a GitHub-flavoured Markdown table cell: the column break, raw HTML, links and images,
# code spans, emphasis, strikethrough, entities, and the backslash itself.
_MARKDOWN_SPECIAL = re.compile(r"([\\|<>\[\]`*~&])")
_BACKTICKS = re.compile(r"`+")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _visible(match: re.Match[str]) -> str:
    char = match.group(0)
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    if char in named:
        return named[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` on one line, with control characters shown as escapes (``\\x1b``, ``\\n``)."""
    return _CONTROL.sub(_visible, text)


def printable_lines(text: str) -> list[str]:
    """A multi-line text (an exception message) as lines, each :func:`printable`."""
    return [printable(line) for line in text.splitlines()] or [""]


def markdown_cell(text: str) -> str:
    """One table cell of GitHub-flavoured Markdown: one line, no structure of its own."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", printable(text))


def fence(lines: Iterable[str]) -> str:
    """A backtick fence longer than any backtick run in ``lines`` (at least three)."""
    longest = max((len(run) for line in lines for run in _BACKTICKS.findall(line)), default=0)
    return "`" * max(3, longest + 1)


def no_surrogates(text: str) -> str:
    """``text`` with each lone surrogate (which no UTF-8 file can hold) as a ``\\udXXX`` escape;
    everything else, line breaks included, as it is (HTML, JSON)."""
    return _SURROGATE.sub(_visible, text)


def xml_text(text: str) -> str:
    """``text`` with the characters XML 1.0 cannot hold shown as escapes."""
    return _XML_FORBIDDEN.sub(_visible, text)

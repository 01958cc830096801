"""Whether a piece of text is a plain number: ASCII digits only.

``str.isdigit()`` is also true for superscripts and other digit-like characters ("³",
"①") that ``int()`` refuses, so a check with it followed by ``int()`` turns such input into
a ValueError where a clear refusal was meant (found by fuzzing the API: a filter path
segment "³" was a 500). Ports, database numbers, stream ids, Retry-After seconds, array
indexes and ages are ASCII in every protocol and format the gateway reads.
"""


def is_ascii_digits(text: str) -> bool:
    """True when ``text`` is one or more of 0-9 (what ``int()`` then always parses)."""
    return text.isascii() and text.isdigit()

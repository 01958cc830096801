"""Every rule for keeping secrets out of what the gateway shows: logs, the API, the CLI, the
console and the delivery log.

What is secret is declared, never guessed from a host name: the gateway's own credentials
(``secret``, ``admin_token``, ``metrics_token``), each sink's ``secret``/``secrets``, and
the options its sink type declares secret (``SinkType(secret_options=...)``, e.g. Slack's
``url``, Zapier's ``api_keys``). Two markers, by audience:

* :data:`HIDDEN` (``[hidden]``) where a value is withheld on purpose: API and CLI output,
  the delivery log's request headers;
* :data:`REDACTED` (``[redacted]``) where the log filter caught a value in free text: a
  known secret, or something shaped like one (signatures, bearer tokens, ``whsec_`` keys,
  credentials in URLs, long hex runs).
"""

from __future__ import annotations

import base64
import functools
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:  # pragma: no cover, no mutate (imports for annotations only)
    from gateway.config import Settings, SinkConfig

HIDDEN = "[hidden]"
REDACTED = "[redacted]"
MASK = "…"
EXCERPT_BYTES = 2048
"""How much of a response body the delivery log keeps."""

# -- free text: the log filter's net ---------------------------------------------------------

# Things that are secrets whatever their context. Ids such as dlv_<hex> and evt_<hex> are
# kept: the word character before the hex run stops the \b match.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"whsec_[A-Za-z0-9+/=_-]+"), "whsec_" + REDACTED),
    (re.compile(r"\bv1[,=][A-Za-z0-9+/_-]{16,}={0,2}"), "v1," + REDACTED),
    (re.compile(r"(?i)\bsha256=[0-9a-f]{16,}"), "sha256=" + REDACTED),
    (re.compile(r"\b[0-9a-fA-F]{32,}\b"), REDACTED),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + REDACTED),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@:\"']+:[^\s/@\"']+@"), r"\1" + REDACTED + "@"),
    (re.compile(r"(?i)\b((?:x-)?(?:webhook-)?(?:secrets?|token|password|passwd|api[_-]?keys?|signature|"
                r"authorization|admin_token)[\"']?\s*[:=]\s*[\"']?)(?!\[redacted\])[^\s\"',;&}\]]+"),
     r"\1" + REDACTED),
)
# Every pattern above needs one of these (lowercased) or a long hex run; text with none of
# them (nearly every line) skips the substitutions, which keeps the filter to a microsecond
# or two per string.
_TRIGGERS = ("whsec_", "v1,", "v1=", "sha256=", "bearer", "basic", "://", "secret", "token", "passw", "api_key",
             "api-key", "apikey", "signature", "authorization")
# As in _PATTERNS: a run standing alone, so ids such as dlv_<hex> do not count.
_LONG_HEX = re.compile(r"\b[0-9a-fA-F]{32,}\b")
_known_secrets: set[str] = set()
_known_lock = threading.Lock()
_known_pattern: re.Pattern[str] | None = None


def register_secrets(values: Iterable[str | None]) -> None:
    """Add exact values (configured secrets, tokens, API keys) that must never be logged.
    Values shorter than 6 characters are ignored: redacting them would garble ordinary text.
    (Process-wide on purpose: the log handler it feeds is process-wide too.)"""
    global _known_pattern
    new = {v for v in values if isinstance(v, str) and len(v) >= 6}
    with _known_lock:
        if new <= _known_secrets:
            return
        _known_secrets.update(new)
        ordered = sorted(_known_secrets, key=len, reverse=True)
        _known_pattern = re.compile("|".join(re.escape(v) for v in ordered))


def register_settings_secrets(settings: Settings) -> None:
    """Register every secret a configuration holds: the gateway's own credentials and every
    sink's secret values (:func:`sink_secret_values`)."""
    values: list[str | None] = [settings.secret, settings.admin_token, settings.metrics_token]
    values.extend(token for _, token in settings.admin_tokens)
    for sink in settings.sinks:
        values.extend(sink_secret_values(sink))
    register_secrets(values)


def _suspicious(text: str) -> bool:
    lowered = text.lower()
    for trigger in _TRIGGERS:  # a plain loop: measurably cheaper than any() over a generator
        if trigger in lowered:
            return True
    return len(text) >= 32 and _LONG_HEX.search(text) is not None


def redact(text: str) -> str:
    """``text`` with known secrets and secret-looking values replaced by ``[redacted]``."""
    pattern = _known_pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    if not _suspicious(text):
        return text
    for regex, replacement in _PATTERNS:
        text = regex.sub(replacement, text)
    return text


def redact_value(value: Any) -> Any:
    """:func:`redact` applied to every string inside ``value`` (mappings, lists, tuples)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v) for v in value]
    return value


# -- URLs --------------------------------------------------------------------------------------

def redact_url(url: str, secret: bool = False) -> str:
    """A URL as it may be shown: scheme, host (IPv6 in brackets) and port, and the first
    path segment when more follows, the rest masked (webhook URLs carry tokens in their
    paths); never credentials, query or fragment. A path of one segment is masked whole:
    that segment may be the token itself (``https://webhook.site/<uuid>``). A ``secret``
    URL (a sink type said so) shows no path."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return MASK
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if port:
        host = f"{host}:{port}"
    segments = parts.path.split("/")
    path = ""
    if not parts.path.strip("/"):
        pass
    elif secret or not (len(segments) > 2 and segments[1] and any(segments[2:])):
        path = "/" + MASK
    else:
        path = "/" + segments[1] + "/" + MASK
    if parts.query or parts.fragment:
        path += "?" + MASK
    return f"{parts.scheme}://{host}{path}"


_SHOWN_URLS: dict[tuple[str, bool], str] = {}


def carries_secret(url: str, secrets: Iterable[str]) -> bool:
    """True when ``url`` contains one of a sink's secret values (its ``url`` is a secret
    option, as Slack's is): it is then shown as a secret URL, with no path at all."""
    return any(value and value in url for value in secrets)


def shown_url(url: str, secret: bool = False) -> str:
    """:func:`redact_url`, remembered: a sink sends to the same few URLs over and over."""
    shown = _SHOWN_URLS.get((url, secret))
    if shown is None:
        if len(_SHOWN_URLS) >= 1024:  # pragma: no mutate (a cache bound: never changes what is shown)
            _SHOWN_URLS.clear()
        shown = _SHOWN_URLS[(url, secret)] = redact_url(url, secret=secret)
    return shown


def without_password(url: str) -> str:
    """``url`` with the password of its credentials, and a ``sentinel_password`` in its
    query (Redis Sentinel URLs), replaced by ``***`` (for a Redis URL in a banner: the
    rest of it says where the data is)."""
    parts = urlsplit(url)
    if parts.password is None and "password" not in parts.query:
        return url
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    if "password" in parts.query:
        query = "&".join(f"{k}=***" if "password" in k else (f"{k}={v}" if v else k)
                         for k, _, v in (item.partition("=") for item in parts.query.split("&")))
        parts = parts._replace(query=query)
    return parts.geturl()


# -- sinks -------------------------------------------------------------------------------------

def sink_secret_values(sink: SinkConfig) -> list[str]:
    """Every secret value a sink's configuration holds: its signing secrets and the values
    of its secret options (strings, list items, mapping values), and URL passwords."""
    found = [s for s in sink.secrets if s]
    found.extend(s for s, _ in sink.retiring if s)
    for key in sink.secret_options:
        found.extend(_strings(sink.options.get(key)))
    url = sink.options.get("url")
    if isinstance(url, str):
        found.extend(_url_credentials(url))
    return found


LABEL = "label"
"""In a secret option's list of tables (``api_keys = [{label = "...", key = "..."}]``), the
one key that is not secret: it tells an admin which credential is which."""


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, Mapping):
        return [str(v) for v in value.values() if v]
    if isinstance(value, (list, tuple, set, frozenset)):
        found: list[str] = []
        for item in value:
            if isinstance(item, Mapping):
                found.extend(str(v) for k, v in item.items() if v and k != LABEL)
            elif item:
                found.append(str(item))
        return found
    return []


def public_options(sink: SinkConfig, common_keys: Iterable[str]) -> dict[str, Any]:
    """A sink's own options as the API, CLI and console show them: secret options withheld
    (a URL masked to its host, a mapping's names kept, a list's length kept and, for a
    list of tables, each table's ``label``), URLs masked after their first path segment."""
    common = set(common_keys)
    return {key: public_value(key, value, key in sink.secret_options)
            for key, value in sink.options.items() if key not in common}


def public_value(key: str, value: Any, secret: bool) -> Any:
    """One option's value as it may be shown: a URL masked (to its host when ``secret``), a
    secret mapping's names kept, a secret list's length kept (and, for a list of tables,
    each table's ``label``), any other secret ``[hidden]``."""
    if isinstance(value, str) and key.endswith("url"):
        return redact_url(value, secret=secret)
    if not secret:
        return value
    if isinstance(value, Mapping):
        return {name: HIDDEN for name in value}
    if isinstance(value, (list, tuple)):
        return [{k: (v if k == LABEL else HIDDEN) for k, v in item.items()} if isinstance(item, Mapping)
                else HIDDEN for item in value]
    return HIDDEN if value is not None else None


# -- the delivery log: what was sent, and what came back ----------------------------------------

_SENSITIVE_HEADER_WORDS = ("authorization", "signature", "secret", "token", "api-key", "apikey", "cookie",
                           "password")


@functools.lru_cache(maxsize=1024)  # pragma: no mutate (a pure function: the size never changes an answer)
def _sensitive_name(name: str) -> bool:
    # Header names repeat from attempt to attempt (a sink renders the same ones each time).
    lowered = name.lower()
    return any(word in lowered for word in _SENSITIVE_HEADER_WORDS)


def hide_headers(headers: Mapping[str, str], secrets: Sequence[str]) -> dict[str, str]:
    """Request headers as the delivery log shows them: signature, credential and any header
    carrying a configured secret replaced by ``[hidden]``."""
    shown: dict[str, str] = {}
    for name, value in headers.items():
        if _sensitive_name(name) or any(s and s in value for s in secrets):
            shown[name] = HIDDEN
        else:
            shown[name] = value
    return shown


def _url_credentials(url: str) -> list[str]:
    # The client sends URL credentials as Basic auth, so hide that form too.
    parts = urlsplit(url)
    if not parts.password:
        return []
    credentials = unquote(f"{parts.username or ''}:{parts.password}")
    return [parts.password, unquote(parts.password),
            base64.b64encode(credentials.encode("latin-1", "replace")).decode(),
            base64.b64encode(credentials.encode("utf-8")).decode()]


@functools.lru_cache(maxsize=256)  # pragma: no mutate (a pure function: the size never changes an answer)
def _static_secrets(url: str, secrets: tuple[str, ...]) -> frozenset[str]:
    # The same for every attempt to one URL: worked out once, not per attempt.
    return frozenset({s for s in secrets if s} | set(_url_credentials(url)))


def sent_secrets(headers: Mapping[str, str], secrets: Sequence[str], url: str,
                 shown: Mapping[str, str] | None = None) -> list[str]:
    """Every secret value a request carried: the configured secrets, the URL's password, and
    each header value :func:`hide_headers` hides, whole and token by token (signatures and
    credentials: ``v1,<base64>`` entries, ``Basic <base64>``), longest first. ``shown`` is
    ``hide_headers(headers, secrets)`` when the caller has it already."""
    found = set(_static_secrets(url, tuple(secrets)))
    if shown is None:
        shown = hide_headers(headers, secrets)
    for name, value in shown.items():
        if value == HIDDEN and headers[name]:
            found.add(headers[name])
            found.update(part for part in headers[name].replace(",", " ").split() if len(part) >= 8)
    return sorted(found, key=len, reverse=True)


def plugin_error_text(exc: BaseException, hidden: Sequence[str] = (), limit: int = 500) -> str:
    """``TypeName: message`` of an exception a plugin raised, for the delivery log: every
    ``hidden`` value (the sink's secrets) replaced, then the log filter's net applied (a
    plugin's message can quote anything), cut to ``limit`` characters."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    for value in hidden:
        if value:
            text = text.replace(value, HIDDEN)
    text = redact(text)
    return text if len(text) <= limit else text[: limit - 1] + MASK


def excerpt(body: bytes, hidden: Sequence[str] = ()) -> str:
    """The start of a response body for the delivery log, with every ``hidden`` value
    replaced: destinations echo requests back (request inspectors, "signature mismatch: got
    ..." errors), and what we sent that is secret must not reach the log that way."""
    text = body.decode("utf-8", "replace")
    for value in hidden:
        text = text.replace(value, HIDDEN)
    return text.encode("utf-8")[:EXCERPT_BYTES].decode("utf-8", "ignore")

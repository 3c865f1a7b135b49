"""What a broker URL may hold, and how to print one.

A broker URL is printed: in plans (the ``broker`` setting), error messages and logs. So it
may not carry credentials, and a URL shown in a message is passed through
:func:`redact_url` first, in case it is the one being refused.

Here, below both the settings (which refuse such a ``broker``) and the transports (which
refuse such a ``--broker``), and importing nothing of either.

>>> redact_url("kafka://app:hunter2@b1:9092?sasl_password=x&client_id=c")
'kafka://***@b1:9092?sasl_password=***&client_id=c'
>>> credentials_in("kafka://b1:9092") is None
True
"""
from __future__ import annotations

import re

REDACTED = "***"
# A query option whose name holds one of these words is a secret (`sasl_password`, `token`).
SECRET_WORDS = ("password", "secret", "token", "credential")
# What follows `local://` is a path and `memory://` a name: an @ there is no user name.
_NO_AUTHORITY = ("local://", "memory://")
HOW_TO_PASS = ("hint: pass them as DATAFLOW_KAFKA_SASL_USERNAME and DATAFLOW_KAFKA_SASL_PASSWORD in the environment, "
               "or as the kafka_sasl_username and kafka_sasl_password settings (docs/kafka.md)")


def _split(url: str) -> tuple[str, str, str, str]:
    """(scheme with ``://`` or empty, userinfo with ``@`` or empty, the rest up to the query, the query
    with ``?`` or empty). Split by hand: urllib reads ``local://relative/dir`` as a host."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    else:
        scheme += sep
    rest, qmark, query = rest.partition("?")
    if scheme.lower() in _NO_AUTHORITY:
        return scheme, "", rest, qmark + query
    authority_end = min((i for i in (rest.find("/"), rest.find("#")) if i >= 0), default=len(rest))
    userinfo, at, _ = rest[:authority_end].rpartition("@")
    if at:
        return scheme, userinfo + at, rest[len(userinfo) + 1:], qmark + query
    return scheme, "", rest, qmark + query


def _is_secret(name: str) -> bool:
    return any(word in name.lower() for word in SECRET_WORDS)


def redact_url(url: str) -> str:
    """``url`` safe to print: user name and password, and the values of secret query options,
    become ``***``; everything else is kept as written.

    >>> redact_url("user:pw@host:9092")
    '***@host:9092'
    >>> redact_url("memory://orders")
    'memory://orders'
    """
    scheme, userinfo, rest, query = _split(url)
    if query:
        pairs = []
        for pair in query[1:].split("&"):
            name, eq, value = pair.partition("=")
            pairs.append(f"{name}={REDACTED}" if eq and _is_secret(name) else pair)
        query = "?" + "&".join(pairs)
    return scheme + (REDACTED + "@" if userinfo else "") + rest + query


def credentials_in(url: str) -> str | None:
    """What credential ``url`` holds (``"a user name and password"``, ``"the option 'token'"``),
    or None when it holds none.

    >>> credentials_in("kafka://app:pw@b1:9092")
    'a user name and password'
    >>> credentials_in("kafka://b1:9092?sasl_password=pw")
    "the option 'sasl_password'"
    """
    _, userinfo, _, query = _split(url)
    if userinfo:
        return "a user name and password" if ":" in userinfo else "a user name"
    for pair in query[1:].split("&") if query else []:
        name = pair.partition("=")[0]
        if _is_secret(name):
            return f"the option '{name}'"
    return None


def refusal(url: str, what: str = "a broker url") -> str | None:
    """The message refusing ``url`` because it holds credentials, or None if it holds none.

    >>> print(refusal("kafka://app:pw@b1:9092"))
    a broker url may not hold credentials: kafka://***@b1:9092 holds a user name and password, and urls are printed in plans, logs and errors; hint: pass them as DATAFLOW_KAFKA_SASL_USERNAME and DATAFLOW_KAFKA_SASL_PASSWORD in the environment, or as the kafka_sasl_username and kafka_sasl_password settings (docs/kafka.md)
    """
    found = credentials_in(url)
    if found is None:
        return None
    return (f"{what} may not hold credentials: {redact_url(url)} holds {found}, and urls are printed in plans, "
            f"logs and errors; {HOW_TO_PASS}")


# `scheme://userinfo@` anywhere in a text, e.g. a source line shown under a diagnostic.
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s\"']*@")


def redact_urls_in(text: str) -> str:
    """``text`` with the userinfo of every ``scheme://user:password@`` in it redacted.

    >>> redact_urls_in('  broker "kafka://app:pw@b1:9092"')
    '  broker "kafka://***@b1:9092"'
    """
    return _USERINFO.sub(lambda m: m.group(1) + REDACTED + "@", text)


__all__ = ["redact_url", "redact_urls_in", "credentials_in", "refusal", "REDACTED"]

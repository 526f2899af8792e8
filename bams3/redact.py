"""The one redactor: every message bams3 prints, every error a store raises and every trace line
pass through :func:`redact`, which masks what could be a credential: the values of credential
variables in the environment, passwords in URLs (``scheme://user:password@host``), and request
signatures and tokens in query strings and headers."""

from __future__ import annotations

import os
import re

_SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "GOOGLE_SERVICE_ACCOUNT_KEY",
                "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN")
_SIGNED = re.compile(r"(X-Amz-[A-Za-z-]+=|Signature=|Credential=|sig=|token=)[^&\s\"'<]+", re.I)


def redact(text: str) -> str:
    """``text`` with credentials masked (``***``): a last line of defence under every message."""
    for var in _SECRET_VARS:
        value = os.environ.get(var)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return _SIGNED.sub(r"\1***", redact_userinfo(text))


_URL_START = re.compile(r"(?i)\b[a-z][a-z0-9+.\-]*://")


def redact_userinfo(text: str) -> str:
    """``scheme://user:password@host`` -> ``scheme://***@host`` wherever a URL appears in ``text``.

    A password may hold ``@``, ``/`` or spaces as typed: everything from ``://`` to the last
    ``@`` on the line (before any next URL) is masked when it holds a ``:`` (user:password) or
    is a plain ``user@``. A key such as ``s3://b/run@v2`` (no colon, a ``/``) is left alone;
    an odd ``host:port/a@b`` is masked too, which costs a message nothing it needs.
    """
    out, pos = [], 0
    for m in _URL_START.finditer(text):
        if m.start() < pos:
            continue
        end = text.find("\n", m.end())
        end = len(text) if end == -1 else end
        following = _URL_START.search(text, m.end(), end)
        end = following.start() if following else end
        at = text.rfind("@", m.end(), end)
        if at == -1:
            continue
        info = text[m.end():at]
        if ":" in info or not re.search(r"[/\s]", info):
            out.append(text[pos:m.end()] + "***")
            pos = at
    return "".join(out) + text[pos:]

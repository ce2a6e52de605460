"""Hiding credentials written inside URLs (``http://user:password@host``) wherever pipecast shows or stores text.

A connection setting such as ``-c base_url=http://admin:secret@airflow:8080`` reaches the engine as given,
but what pipecast prints (CLI output, error messages) and records (the run store's URL, detail and
metadata) goes through :func:`redact_credentials` first.
"""

from __future__ import annotations

import re

# scheme://user:password@ — the password runs to the last "@" before the host (an unencoded "@" in a
# password is common in hand-written URLs) and stops at whitespace, quotes and "/" so that it never
# spans two URLs or leaves a JSON string.
_USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@\"'<>]*):(?P<password>[^\s/\"'<>]+)@")

MASK = "***"


def redact_credentials(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***`` (``http://user:***@host``)."""
    if "@" not in text:
        return text
    return _USERINFO.sub(lambda match: f"{match['head']}:{MASK}@", text)


"""JSOC export addresses: the check before an export and the masking in every log line.

JSOC sends export notices to a registered e-mail address, and drms writes
request URLs (``notify=<address>``) into its log. The address is checked
before the first export (:func:`check_email`) and never logged in full: the
package's own messages use :func:`mask_email`, and a filter on drms's logger
masks every address, plain or URL-encoded (:func:`mask_drms_logs`).
"""

from __future__ import annotations

import logging
import re

from enhance_hmi.errors import ConfigError

__all__ = ["mask_email", "check_email", "mask_emails", "mask_drms_logs"]

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def mask_email(email: str | None) -> str:
    """``j***@example.org``: enough to recognise the address, never all of it."""
    if not email:
        return "<none>"
    user, _, domain = str(email).partition("@")
    return f"{user[:1]}***@{domain}" if domain else f"{user[:1]}***"


def check_email(email: str | None) -> str:
    """Return the address stripped, or raise :class:`ConfigError` if absent or malformed."""
    if email is None or not str(email).strip():
        raise ConfigError(
            "a JSOC export needs a registered e-mail address: set ENHANCE_JSOC_EMAIL or "
            "pass --email-file (register at jsoc.stanford.edu/ajax/register_email.html)"
        )
    email = str(email).strip()
    if not _EMAIL_RE.match(email):
        raise ConfigError(f"e-mail address {mask_email(email)} is malformed")
    return email


class _MaskEmail(logging.Filter):
    """Mask e-mail addresses (plain or URL-encoded) in drms's log records."""

    _REQUESTER = re.compile(r"(requester=)([^&\s*])[^&\s]*")
    # the domain needs a dot and a top level starting with a letter: record sets
    # such as "[2014.01.01_00:00:00_TAI/1d@12m]" hold an "@" but no address
    _ADDRESS = re.compile(
        r"([A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]*(@|%40)"
        r"((?:[A-Za-z0-9\-]+\.)+[A-Za-z][A-Za-z0-9\-]*)"
    )

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_emails(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def mask_emails(text: str) -> str:
    """``text`` with every e-mail address (plain or URL-encoded) masked."""
    masked = _MaskEmail._ADDRESS.sub(r"\1***\2\3", str(text))
    return _MaskEmail._REQUESTER.sub(r"\1\2***", masked)


def mask_drms_logs() -> None:
    """Add the masking filter to drms's logger (once; adding it again does nothing)."""
    logger = logging.getLogger("drms")
    if not any(isinstance(f, _MaskEmail) for f in logger.filters):
        logger.addFilter(_MaskEmail())

"""The two places where ``enhance`` works around :mod:`drms`; nothing else touches its inside.

- Import without the logging side effect: drms 0.9 calls
  ``logging.basicConfig(level=INFO)`` when imported, which would print every
  library's INFO messages and defeat the application's own logging set-up
  (``enhance -v``). This module imports drms and removes exactly what that
  call added to the root logger.
- The server's error text of a failed export request: drms keeps it in a
  private attribute and shows it only in the message of the
  :class:`drms.DrmsExportError` that reading :attr:`drms.ExportRequest.data`
  raises (``"<text> [status=N]"``). :func:`export_error_text` reads it from
  that public exception; ``tests/test_acquire_units.py`` checks the message
  format against the JSOC stand-in, so a drms release that changes it fails
  there, not in an acquisition.
"""

from __future__ import annotations

import logging
import re

_ROOT = logging.getLogger()
_BEFORE = (list(_ROOT.handlers), _ROOT.level)

import drms  # noqa: E402

for _handler in list(_ROOT.handlers):
    if _handler not in _BEFORE[0]:
        _ROOT.removeHandler(_handler)
_ROOT.setLevel(_BEFORE[1])

__all__ = ["drms", "export_error_text"]

#: What drms appends to the server's text, and what it says when there is none.
_STATUS_SUFFIX = re.compile(r"\s*\[status=-?\d+\]\s*$")
_NO_TEXT = "DRMS export request failed."


def export_error_text(request: drms.ExportRequest) -> str:
    """The server's error text of a failed export request; ``""`` if none or not failed.

    Reads no network: a failed request has finished, so drms raises from its
    last answer.
    """
    if not request.has_failed(skip_update=True):
        return ""
    try:
        request.data  # noqa: B018 - raises DrmsExportError with the server's text
    except drms.DrmsExportError as exc:
        text = _STATUS_SUFFIX.sub("", str(exc)).strip()
        return "" if text == _NO_TEXT else text
    return ""

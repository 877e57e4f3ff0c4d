"""Import :mod:`drms` without its logging side effect.

drms 0.9 calls ``logging.basicConfig(level=INFO)`` when imported, which would
print every library's INFO messages and defeat the application's own logging
set-up (``enhance -v``). This module imports drms and removes exactly what
that call added to the root logger.
"""

from __future__ import annotations

import logging

_ROOT = logging.getLogger()
_BEFORE = (list(_ROOT.handlers), _ROOT.level)

import drms  # noqa: E402

for _handler in list(_ROOT.handlers):
    if _handler not in _BEFORE[0]:
        _ROOT.removeHandler(_handler)
_ROOT.setLevel(_BEFORE[1])

__all__ = ["drms"]

"""Header card helper: set a keyword with as much of its comment as fits.

A FITS card is 80 characters (Pence et al. 2010, A&A 524, A42, Sect. 4);
astropy warns and truncates when value plus comment overflow. Provenance
values (hashes, file names) are long, so comments are shortened here instead.
"""

from __future__ import annotations

from astropy.io import fits

__all__ = ["set_card"]

_CARD_LENGTH = 80
#: Shorter comment room than this and the comment is left out (a stub helps nobody).
_MIN_COMMENT = 12


def set_card(header: fits.Header, keyword: str, value: object, comment: str = "") -> None:
    """Set ``header[keyword] = value`` with ``comment`` cut to fit one card.

    Strings longer than one card use astropy's long-string (CONTINUE)
    convention and get no comment.
    """
    bare = fits.Card(keyword, value)
    used = len(bare.image.rstrip())
    room = _CARD_LENGTH - used - 3  # " / " separator
    if used > _CARD_LENGTH or room < _MIN_COMMENT or not comment:
        header[keyword] = value
        return
    header[keyword] = (value, comment[:room])

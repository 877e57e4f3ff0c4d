"""The knobs of an acquisition beyond its range, and the one way a mapping becomes them.

The workflow config's ``jsoc`` section, the ``enhance fetch`` flags and a
validation job's settings all name the same options; :func:`acquire_options`
turns any of them into :class:`AcquireOptions`, so a new option is read in
one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from enhance_hmi.acquire.download import DEFAULT_DEADLINE, MAX_FILE_BYTES
from enhance_hmi.acquire.jsoc import JsocOptions
from enhance_hmi.errors import ConfigError

__all__ = ["AcquireOptions", "acquire_options"]


@dataclasses.dataclass(frozen=True)
class AcquireOptions:
    """Knobs of :func:`enhance_hmi.acquire.acquire` beyond the essentials (seconds for times).

    Attributes
    ----------
    max_per_request
        Largest number of slots in one export request.
    max_concurrent
        Parallel downloads (keep low: JSOC blocks bulk users).
    download_retries, download_timeout
        Attempts per file and the socket timeout of one attempt.
    save_every
        Seconds between manifest saves while downloading.
    download_deadline
        Wall-clock seconds one download attempt may take (a server that
        trickles bytes is cut off).
    max_file_bytes
        Largest file accepted from the server.
    allow_hosts
        Hosts besides the server's own download origin that files may come
        from (``host``, ``host:port`` or ``http(s)://host[:port]``).
    jsoc
        Query/export polling and retry knobs.
    """

    max_per_request: int = 500
    max_concurrent: int = 2
    download_retries: int = 3
    download_timeout: float = 120.0
    save_every: float = 2.0
    download_deadline: float = DEFAULT_DEADLINE
    max_file_bytes: int = MAX_FILE_BYTES
    allow_hosts: tuple[str, ...] = ()
    jsoc: JsocOptions = dataclasses.field(default_factory=JsocOptions)


_OWN = frozenset(f.name for f in dataclasses.fields(AcquireOptions)) - {"jsoc"}
_JSOC = frozenset(f.name for f in dataclasses.fields(JsocOptions))


def acquire_options(settings: Mapping[str, Any] | None = None) -> AcquireOptions:
    """The :class:`AcquireOptions` that a flat mapping of option names gives.

    The names are the fields of :class:`AcquireOptions` and of
    :class:`~enhance_hmi.acquire.jsoc.JsocOptions` side by side, as the
    workflow config's ``jsoc`` section (``retries``, ``retry_wait``,
    ``export_timeout``) and the ``enhance fetch`` flags write them; a name
    left out, or given as None, keeps its default.

    Parameters
    ----------
    settings : mapping, optional
        Option names and values; None or empty for the defaults.

    Returns
    -------
    AcquireOptions

    Raises
    ------
    ConfigError
        A name that is no acquisition option.
    """
    given = {key: value for key, value in (settings or {}).items() if value is not None}
    unknown = sorted(set(given) - _OWN - _JSOC)
    if unknown:
        raise ConfigError(
            f"unknown acquisition option(s) {', '.join(unknown)}; known: "
            f"{', '.join(sorted(_OWN | _JSOC))}"
        )
    own = {key: value for key, value in given.items() if key in _OWN}
    if "allow_hosts" in own:
        own["allow_hosts"] = tuple(own["allow_hosts"])
    jsoc = JsocOptions(**{key: value for key, value in given.items() if key in _JSOC})
    return AcquireOptions(**own, jsoc=jsoc)

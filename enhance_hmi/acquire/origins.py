"""Where downloads may come from: the server's own origin and the hosts a user allows.

drms 0.9.0 builds download URLs from whatever directory the server names,
``file://`` and other hosts included. Here a URL (and every HTTP redirect)
must have the scheme, host and port of the server's own download URL, or of
a host the user allowed (:func:`allowed_origins`); anything else is refused
with :class:`RefusedDownloadError`, never opened. A redirect from http to
https on the same host is the one exception.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from collections.abc import Iterable

from enhance_hmi.errors import ConfigError, JsocError

__all__ = [
    "Origin",
    "RefusedDownloadError",
    "allowed_origins",
    "check_url",
    "origin_of",
    "CheckedRedirects",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}

#: ``(scheme, host, port)`` of a URL, host in lower case, port made explicit.
Origin = tuple[str, str, int]


class RefusedDownloadError(JsocError):
    """A download refused for what the server asked, not for a transient fault.

    A URL off the allowed origins, or a size beyond
    :data:`enhance_hmi.acquire.download.MAX_FILE_BYTES`:
    retrying cannot help, so it is not retried.
    """


def origin_of(url: str) -> Origin:
    """``(scheme, host, port)`` of an http(s) URL; :class:`RefusedDownloadError` otherwise."""
    parts = urllib.parse.urlsplit(str(url).strip())
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise RefusedDownloadError(
            f"refusing to download {url!r}: only http and https URLs are fetched"
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise RefusedDownloadError(f"refusing to download {url!r}: malformed port") from exc
    if not parts.hostname:
        raise RefusedDownloadError(f"refusing to download {url!r}: no host")
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme]


def _origin_text(origin: Origin) -> str:
    scheme, host, port = origin
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" + ("" if _DEFAULT_PORTS[scheme] == port else f":{port}")


def allowed_origins(base_url: str, allow_hosts: Iterable[str] = ()) -> frozenset[Origin]:
    """The origins downloads may come from: the server's own and the ones a user allows.

    Parameters
    ----------
    base_url : str
        The server's download base URL (drms ``http_download_baseurl``).
    allow_hosts : iterable of str
        More origins, each ``host``, ``host:port`` or ``scheme://host[:port]``
        (http or https). Without a scheme both are allowed, on the given port
        or on each scheme's default one.

    Raises
    ------
    ConfigError
        If an entry is not of those forms (``file://`` can never be allowed).
    """
    try:
        allowed = {origin_of(base_url)}
    except RefusedDownloadError as exc:
        raise ConfigError(f"server download URL {base_url!r} is not http(s)") from exc
    for entry in allow_hosts:
        text = str(entry).strip()
        has_scheme = "://" in text
        parts = urllib.parse.urlsplit(text if has_scheme else "//" + text)
        scheme = parts.scheme.lower()
        try:
            port = parts.port
        except ValueError:
            port = -1
        if (
            (has_scheme and scheme not in _DEFAULT_PORTS)
            or not parts.hostname
            or port == -1
            or parts.path not in ("", "/")
            or parts.query
            or parts.username
        ):
            raise ConfigError(
                f"allowed download host {text!r} is not host, host:port or "
                "http(s)://host[:port] (file:// and other schemes are never allowed)"
            )
        for each in [scheme] if has_scheme else list(_DEFAULT_PORTS):
            allowed.add((each, parts.hostname.lower(), port or _DEFAULT_PORTS[each]))
    return frozenset(allowed)


def check_url(url: str, allowed: frozenset[Origin]) -> None:
    """Raise :class:`RefusedDownloadError` unless ``url`` is on one of ``allowed``."""
    origin = origin_of(url)
    if origin not in allowed:
        shown = ", ".join(sorted(_origin_text(o) for o in allowed))
        raise RefusedDownloadError(
            f"refusing to download {url!r}: not from the server's own origin ({shown}); "
            "if that host is a mirror you trust, allow it (--allow-host "
            f"{_origin_text(origin)})"
        )


def _redirect_allowed(url: str, target: str, allowed: frozenset[Origin]) -> None:
    """Allow a redirect onto an allowed origin, or from http to https on the same host."""
    origin = origin_of(target)
    if origin in allowed:
        return
    here = origin_of(url)
    if here[0] == "http" and origin[0] == "https" and here[1] == origin[1]:
        return
    check_url(target, allowed)


class CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Follow an HTTP redirect only onto an allowed origin (or an https upgrade)."""

    def __init__(self, allowed: frozenset[Origin]) -> None:
        super().__init__()
        self.allowed = allowed

    def http_error_302(self, req, fp, code, msg, headers):  # noqa: ANN001, ANN201
        """Refuse a redirect to a host that is not allowed; follow the others."""
        # checked before urllib's own scheme test, which raises an HTTPError (refused at once
        # too, but without saying which origin was refused)
        target = headers.get("location") or headers.get("uri")
        if target:
            newurl = urllib.parse.urljoin(req.full_url, target)
            try:
                _redirect_allowed(req.full_url, newurl, self.allowed)
            except RefusedDownloadError:
                fp.close()  # the redirect's own response: no socket left open
                raise
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

"""A JSOC stand-in: a small threaded HTTP server speaking drms's protocol.

It answers ``jsoc_info`` (``series_struct``, ``rs_list``) and ``jsoc_fetch``
(``exp_request``, ``exp_status``) under ``/cgi-bin/ajax/`` and serves the
exported files from its root, as ``docs/jsoc.md`` (../shared/docs) describes.
The files are real HMI FITS files: the bundled sample's real JSOC headers
(``enhance_hmi/data/sample``) with a small centre crop of the real image, and
``T_REC``, ``T_OBS``, ``DATE-OBS``, ``QUALITY``, ``DRMS_ID``, ``RECNUM``
rewritten per record (fixed-width 80-byte cards, patched in place).

Knobs make it misbehave the way JSOC does: exports pending for N polls,
"pending export requests" refusals, HTTP 500s, downloads cut half way,
corrupt or wrong files, records with QUALITY 0x80000000 (no file), missing
records, failed exports, and a download that stalls until released (to kill
a client mid-download). Hostile knobs make it misbehave as no honest server
should: export directories on ``file://`` or another host, file downloads
redirected elsewhere, bytes trickled slowly, a Content-Length smaller than
the body or absurdly large, a consistent but short file, an HTML page instead
of FITS, one file name for several records, file names of its choosing
(``filenames``, e.g. the client's manifest name), and a flipped bit in the
compressed data that only the ``DATASUM`` keyword reveals.

Used by ``tests/test_acquire_*.py`` (fixture ``jsoc_standin``) and by
``bench/acquire_throughput.py``.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import io
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from astropy.io import fits

from enhance_hmi.acquire.series import SERIES, HmiSeries
from enhance_hmi.acquire.timespec import parse_cadence
from enhance_hmi.time import file_time, format_t_rec, parse_t_rec

SAMPLE = Path(__file__).resolve().parents[1] / "enhance_hmi" / "data" / "sample"
TEMPLATE_FILES = {
    "magnetogram": SAMPLE / "hmi.M_720s.20111217_060000_TAI.1.magnetogram.fits",
    "continuum": SAMPLE / "hmi.Ic_45s.20140301_000130_TAI.2.continuum.fits",
}
#: Keywords the stand-in's series define (EXPTIME deliberately absent, as in hmi.M_720s).
SERIES_KEYWORDS = {
    "T_REC": "time",
    "T_OBS": "time",
    "QUALITY": "int",
    "CAMERA": "int",
    "CRPIX1": "float",
    "CRPIX2": "float",
    "CDELT1": "float",
    "CDELT2": "float",
    "CROTA2": "float",
    "CRVAL1": "float",
    "CRVAL2": "float",
    "RSUN_OBS": "double",
    "DSUN_OBS": "double",
    "CRLN_OBS": "float",
    "CRLT_OBS": "float",
    "DATAMIN": "float",
    "DATAMAX": "float",
}
_PATCHED = ("T_REC", "T_OBS", "DATE-OBS", "QUALITY", "DRMS_ID", "RECNUM")
_DS_RE = re.compile(
    r"^(?P<series>[\w.]+)\[(?P<start>[^/\]]+)/(?P<dur>\d+[smhd])@(?P<step>\d+[smhd])\]"
    r"(?:\{(?P<seg>\w+)\})?$"
)
NODATA = 0x80000000


def _crop_template(path: Path, series: HmiSeries, size: int) -> tuple[bytes, dict[str, int]]:
    """A real JSOC-layout file of ``size`` x ``size`` px and its patchable card offsets."""
    with fits.open(path, do_not_scale_image_data=True) as hdul:
        header = hdul[1].header.copy()
        raw = np.asarray(hdul[1].data)
    ny, nx = raw.shape
    y0, x0 = (ny - size) // 2, (nx - size) // 2
    crop = np.ascontiguousarray(raw[y0 : y0 + size, x0 : x0 + size])
    header["CRPIX1"] -= x0
    header["CRPIX2"] -= y0
    header["CADENCE"] = series.step.total_seconds()
    header["TRECSTEP"] = series.step.total_seconds()
    header["CONTENT"] = series.content
    header["DRMS_ID"] = f"{series.name}:{0:09d}:{series.segment}"
    header["RECNUM"] = 0
    header["T_OBS"] = "2000.01.01_00:00:00.00_TAI"
    header.add_history("JSOC stand-in: centre crop of the enhance sample file " + path.name)
    if "BSCALE" in header and np.issubdtype(crop.dtype, np.integer):
        bscale, bzero = header["BSCALE"], header.get("BZERO", 0.0)
        comp = fits.CompImageHDU(data=crop * bscale + bzero, header=header)
        comp.scale("int32", bscale=bscale, bzero=bzero)
    else:
        comp = fits.CompImageHDU(
            data=crop.astype(np.float32),
            header=header,
            compression_type="GZIP_2",
            quantize_level=0.0,
        )
    buf = io.BytesIO()
    # DATASUM (and CHECKSUM) as JSOC writes them; the per-record keyword patches
    # below leave DATASUM right (data unchanged) and CHECKSUM stale
    fits.HDUList([fits.PrimaryHDU(), comp]).writeto(buf, checksum=True)
    blob = buf.getvalue()
    offsets: dict[str, int] = {}
    with fits.open(io.BytesIO(blob)) as hdul:
        offsets["data"] = hdul.fileinfo(1)["datLoc"]
    hdu1 = blob.find(b"XTENSION= 'BINTABLE'")
    for key in _PATCHED:
        needle = key.ljust(8).encode() + b"= "
        pos = blob.find(needle, hdu1)
        while pos % 80:
            pos = blob.find(needle, pos + 1)
        offsets[key] = pos
    return blob, offsets


@dataclasses.dataclass
class Export:
    """One export request held by the stand-in."""

    id: str
    series: HmiSeries
    records: list[dt.datetime]
    filenamefmt: str
    polls: int = 0
    fail: str | None = None


class JsocStandin:
    """The server's state and knobs; start with :meth:`start`, stop with :meth:`stop`.

    Records exist on every native slot of a series between ``first`` and
    ``last`` (default: always), except ``missing``; ``quality`` sets QUALITY
    per slot (``NODATA`` makes a record without a file).
    """

    def __init__(self, *, crop: int = 32, port: int = 0) -> None:
        self.crop = crop
        self.port = port  # 0: an ephemeral port; a fixed one lets a client start first
        self.first: dt.datetime | None = None
        self.last: dt.datetime | None = None
        self.missing: set[dt.datetime] = set()
        self.quality: dict[dt.datetime, int] = {}
        self.registered: set[str] = set()  # addresses checkAddress.sh accepts
        # misbehaviour knobs
        self.pending_polls = 0  # exp_status answers "pending" this many times per request
        self.refuse_exports = 0  # exp_request refusals ("pending export requests")
        self.fail_exports = 0  # requests that end with status 4
        self.http_errors: collections.Counter[str] = collections.Counter()  # op -> 500s
        self.file_status: dict[dt.datetime, int] = {}  # record -> HTTP error every download gets
        # op -> calls answered normally before every later call of it gets a 503 (an outage)
        self.fail_after: dict[str, int] = {}
        self.cut: collections.Counter[dt.datetime] = collections.Counter()
        self.corrupt: collections.Counter[dt.datetime] = collections.Counter()
        self.wrong: collections.Counter[dt.datetime] = collections.Counter()
        self.stall: set[dt.datetime] = set()
        self.stall_started = threading.Event()
        self.release = threading.Event()
        # hostile knobs
        self.export_dir: str | None = None  # exp_status "dir" instead of /SUM1/D<n>/S00000
        self.redirect: dict[dt.datetime, str] = {}  # record -> 302 Location, once
        self.trickle: set[dt.datetime] = set()  # records sent 16 bytes per trickle_interval
        self.trickle_interval = 0.05
        self.overlong: set[dt.datetime] = set()  # Content-Length 2880 bytes short of the body
        self.short_file: set[dt.datetime] = set()  # last FITS block missing, length consistent
        self.huge_length: set[dt.datetime] = set()  # Content-Length of 1 TB
        self.html: set[dt.datetime] = set()  # a 200 HTML page instead of the file
        self.same_name: set[dt.datetime] = set()  # listed with the export's first file name
        self.filenames: dict[dt.datetime, str] = {}  # record -> file name it is listed with
        self.bitflip: set[dt.datetime] = set()  # one bit flipped in the compressed data
        self.no_datasum: set[dt.datetime] = set()  # DATASUM, CHECKSUM cards blanked, length kept
        # record -> a valid file with other content: {"cards": {KEY: value}, "fill": value}
        self.variants: dict[dt.datetime, dict] = {}
        # bookkeeping
        self.calls: collections.Counter[str] = collections.Counter()
        self.downloads: collections.Counter[str] = collections.Counter()
        self.served: collections.Counter[dt.datetime] = collections.Counter()  # by T_REC
        self.exports: dict[str, Export] = {}
        self._templates: dict[str, tuple[bytes, dict[str, int]]] = {}
        self._header_values: dict[str, fits.Header] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- life
    def config(self, *, check_address: bool = False) -> object:
        """A drms ServerConfig for this server (optionally with the e-mail check CGI)."""
        from enhance_hmi.acquire._drms import drms

        extra = {"cgi_check_address": "checkAddress.sh"} if check_address else {}
        return drms.ServerConfig(
            name="STANDIN",
            cgi_baseurl=self.url + "cgi-bin/ajax/",
            cgi_jsoc_info="jsoc_info",
            cgi_jsoc_fetch="jsoc_fetch",
            http_download_baseurl=self.url,
            **extra,
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> JsocStandin:
        standin = self

        class Handler(_Handler):
            state = standin

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # ------------------------------------------------------------- records
    def exists(self, series: HmiSeries, when: dt.datetime) -> bool:
        if when in self.missing or not series.on_grid(when):
            return False
        if self.first is not None and when < self.first:
            return False
        return self.last is None or when <= self.last

    def template(self, series: HmiSeries) -> tuple[bytes, dict[str, int]]:
        with self._lock:
            if series.name not in self._templates:
                blob, offsets = _crop_template(TEMPLATE_FILES[series.observable], series, self.crop)
                self._templates[series.name] = (blob, offsets)
                with fits.open(io.BytesIO(blob)) as hdul:
                    self._header_values[series.name] = hdul[1].header.copy()
            return self._templates[series.name]

    def header(self, series: HmiSeries) -> fits.Header:
        self.template(series)
        return self._header_values[series.name]

    @staticmethod
    def recnum(series: HmiSeries, when: dt.datetime) -> int:
        return int((when - dt.datetime(2010, 1, 1)).total_seconds() // series.step.total_seconds())

    def file_bytes(self, series: HmiSeries, when: dt.datetime) -> bytes:
        """The FITS file of one record: the template with its keywords rewritten."""
        blob, offsets = self.template(series)
        out = bytearray(blob)
        quality = self.quality.get(when, 0)
        recnum = self.recnum(series, when)
        values = {
            "T_REC": when.strftime("%Y.%m.%d_%H:%M:%S.000_TAI"),
            "T_OBS": (when - dt.timedelta(seconds=8)).strftime("%Y.%m.%d_%H:%M:%S.00_TAI"),
            "DATE-OBS": (when - dt.timedelta(seconds=40)).strftime("%Y-%m-%dT%H:%M:%S.00"),
            "QUALITY": quality - (1 << 32) if quality >= 1 << 31 else quality,
            "DRMS_ID": f"{series.name}:{recnum:09d}:{series.segment}",
            "RECNUM": recnum,
        }
        for key, value in values.items():
            card = fits.Card(key, value).image.encode()
            assert len(card) == 80, key
            out[offsets[key] : offsets[key] + 80] = card
        variant = self.variants.get(when)
        return bytes(out) if variant is None else _variant(bytes(out), **variant)

    def camera(self, series: HmiSeries) -> int:
        return int(self.header(series).get("CAMERA", 1))


def _variant(blob: bytes, *, cards: dict | None = None, fill: float | None = None) -> bytes:
    """``blob`` rewritten as a valid file (DATASUM right) with other cards or data.

    The image is stored uncompressed (gzip would date the bytes), and the
    checksum comments' dates and CHECKSUM are fixed, so every download of a
    variant gives the same bytes (DATASUM right; CHECKSUM stale, as in the
    template).
    """
    with fits.open(io.BytesIO(blob)) as hdul:
        header = hdul[1].header.copy()
        data = np.array(hdul[1].data, dtype=np.float32)
    for key, value in (cards or {}).items():
        header[key] = value
    if fill is not None:
        data[:] = fill
    for key in ("BSCALE", "BZERO", "BLANK", "EXTNAME", "CHECKSUM", "DATASUM"):
        header.remove(key, ignore_missing=True)
    image = fits.ImageHDU(data=data, header=header)
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), image]).writeto(buf, checksum=True)
    dated = rb"updated \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"
    fixed = re.sub(dated, b"updated 2014-01-01T00:00:00", buf.getvalue())
    return re.sub(rb"CHECKSUM= '.{16}'", b"CHECKSUM= '0000000000000000'", fixed)


def _duration(text: str) -> dt.timedelta:
    return parse_cadence(text)


class _Handler(BaseHTTPRequestHandler):
    state: JsocStandin
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return  # quiet

    # -------------------------------------------------------------- replies
    def _json(self, payload: dict, status: int = 200) -> None:
        body = json.dumps(payload).encode("latin1")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, text: str) -> None:
        body = f"<html><body>{status} {text}</body></html>".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _take(self, counter: collections.Counter, key: object) -> bool:
        with self.state._lock:
            if counter[key] > 0:
                counter[key] -= 1
                return True
        return False

    # -------------------------------------------------------------- routing
    def do_GET(self) -> None:  # noqa: N802
        parsed = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        if parsed.path.endswith(("/cgi-bin/ajax/jsoc_info", "/cgi-bin/ajax/jsoc_fetch")):
            op = query.get("op", "")
        elif parsed.path.endswith("/cgi-bin/ajax/checkAddress.sh"):
            op = "check_address"
        else:
            op = "file"
        with self.state._lock:
            self.state.calls[op] += 1
        if self._take(self.state.http_errors, op):
            self._error(500, "Internal Server Error")
            return
        if op in self.state.fail_after and self.state.calls[op] > self.state.fail_after[op]:
            self._error(503, "Service Unavailable")
            return
        handler = {
            "series_struct": self._series_struct,
            "rs_list": self._rs_list,
            "exp_request": self._exp_request,
            "exp_status": self._exp_status,
            "check_address": self._check_address,
            "file": self._file,
        }.get(op)
        if handler is None:
            self._json({"status": 1, "error": f"unknown op {op!r}"})
            return
        handler(parsed.path, query)

    @staticmethod
    def _series(name: str) -> HmiSeries | None:
        for key, series in SERIES.items():
            if key.lower() == name.lower():
                return series
        return None

    def _series_struct(self, _path: str, query: dict[str, str]) -> None:
        series = self._series(query.get("ds", ""))
        if series is None:
            self._json({"status": 1, "error": f"series {query.get('ds')} does not exist"})
            return
        keywords = [
            {
                "name": k,
                "type": t,
                "recscope": "ts_eq" if k == "T_REC" else "variable",
                "defval": "",
                "units": "",
                "note": k,
                "linkinfo": "",
            }
            for k, t in SERIES_KEYWORDS.items()
        ]
        self._json(
            {
                "status": 0,
                "note": f"stand-in {series.name}",
                "retention": 10000,
                "unitsize": 16,
                "archive": 1,
                "tapegroup": 1,
                "primekeys": ["T_REC", "CAMERA"],
                "dbindex": ["T_REC", "CAMERA"],
                "keywords": keywords,
                "links": [],
                "segments": [
                    {
                        "name": series.segment,
                        "type": "int",
                        "units": "",
                        "protocol": "fits",
                        "dims": "4096x4096",
                        "note": series.segment,
                    }
                ],
            }
        )

    def _records(self, ds: str) -> tuple[HmiSeries, list[dt.datetime], str] | None:
        match = _DS_RE.match(ds)
        if match is None:
            return None
        series = self._series(match["series"])
        start = parse_t_rec(match["start"])
        if series is None or start is None:
            return None
        dur, step = _duration(match["dur"]), _duration(match["step"])
        times, when = [], start
        while when < start + dur:
            if self.state.exists(series, when):
                times.append(when)
            when += step
        return series, times, match["seg"] or series.segment

    def _rs_list(self, _path: str, query: dict[str, str]) -> None:
        parsed = self._records(query.get("ds", ""))
        if parsed is None:
            self._json({"status": 1, "error": f"bad record set {query.get('ds')!r}"})
            return
        series, times, _seg = parsed
        header = self.state.header(series)
        camera = self.state.camera(series)
        keys = [k for k in query.get("key", "").split(",") if k]
        columns = []
        for key in keys:
            values = []
            constant = str(header.get(key, "nan"))  # astropy's Header.get is slow per cell
            for when in times:
                quality = self.state.quality.get(when, 0)
                if key == "T_REC":
                    values.append(format_t_rec(when))
                elif key == "QUALITY":
                    values.append(f"0x{quality:08X}")
                elif key not in SERIES_KEYWORDS:
                    values.append("Invalid KeyLink")
                elif quality & NODATA and key not in ("CAMERA",):
                    values.append("MISSING" if SERIES_KEYWORDS[key] == "time" else "nan")
                elif key == "T_OBS":
                    values.append(
                        (when - dt.timedelta(seconds=8)).strftime("%Y.%m.%d_%H:%M:%S.00_TAI")
                    )
                else:
                    values.append(constant)
            columns.append({"name": key, "values": values})
        payload = {"keywords": columns, "count": len(times), "runtime": 0.01, "status": 0}
        if query.get("R") == "1":
            payload["recinfo"] = [
                {"name": f"{series.name}[{format_t_rec(t)}][{camera}]"} for t in times
            ]
        self._json(payload)

    def _check_address(self, _path: str, query: dict[str, str]) -> None:
        # drms sends quote_plus(address) inside the query: decode it once more
        address = urllib.parse.unquote_plus(query.get("address", ""))
        if address in self.state.registered:
            self._json({"status": 2, "msg": "address registered"})
        else:
            self._json({"status": 4, "msg": "address not registered"})

    def _exp_request(self, _path: str, query: dict[str, str]) -> None:
        state = self.state
        if self._take_int("refuse_exports"):
            self._json(
                {
                    "status": 7,
                    "error": f"User {query.get('notify')} has 1 pending "
                    "export requests, please wait",
                }
            )
            return
        parsed = self._records(query.get("ds", ""))
        if parsed is None:
            self._json({"status": 4, "error": f"bad record set {query.get('ds')!r}"})
            return
        series, times, _seg = parsed
        with state._lock:
            number = len(state.exports) + 1
            export = Export(
                id=f"JSOC_20260101_{number:03d}",
                series=series,
                records=times,
                filenamefmt=query.get("filenamefmt", ""),
            )
            if state.fail_exports > 0:
                state.fail_exports -= 1
                export.fail = "Cant save new export-request hash"
            state.exports[export.id] = export
        self._json(
            {
                "status": 2,
                "requestid": export.id,
                "method": query.get("method", "url"),
                "protocol": "FITS",
                "wait": 0,
                "rcount": len(times),
            }
        )

    def _take_int(self, name: str) -> bool:
        with self.state._lock:
            value = getattr(self.state, name)
            if value > 0:
                setattr(self.state, name, value - 1)
                return True
        return False

    def _filename(self, export: Export, when: dt.datetime) -> str:
        if when in self.state.filenames:
            return self.state.filenames[when]
        if when in self.state.same_name and export.records:
            when = export.records[0]
        fmt = export.filenamefmt or f"{export.series.name}.{{T_REC:A}}.{{segment}}"
        name = (
            fmt.replace("{T_REC:A}", file_time(when))
            .replace("{CAMERA}", str(self.state.camera(export.series)))
            .replace("{segment}", export.series.segment)
        )
        return name + ".fits"

    def _exp_status(self, _path: str, query: dict[str, str]) -> None:
        state = self.state
        export = state.exports.get(query.get("requestid", ""))
        if export is None:
            self._json(
                {"status": 6, "requestid": query.get("requestid", ""), "error": "request not found"}
            )
            return
        with state._lock:
            export.polls += 1
            pending = export.polls <= state.pending_polls
        if pending:
            self._json({"status": 1, "requestid": export.id, "wait": 0})
            return
        if export.fail:
            self._json({"status": 4, "requestid": export.id, "error": export.fail})
            return
        number = export.id.rsplit("_", 1)[1]
        data = []
        for when in export.records:
            nodata = state.quality.get(when, 0) & NODATA
            data.append(
                {
                    "record": f"{export.series.name}[{format_t_rec(when)}]"
                    f"[{state.camera(export.series)}]{{{export.series.segment}}}",
                    "filename": "NoDataFile" if nodata else self._filename(export, when),
                }
            )
        self._json(
            {
                "status": 0,
                "requestid": export.id,
                "method": "url",
                "protocol": "FITS",
                "dir": state.export_dir or f"/SUM1/D{number}/S00000",
                "wait": 0,
                "count": len(data),
                "size": 1,
                "data": data,
                "tarfile": "",
                "keywords": "",
            }
        )

    def _file(self, path: str, _query: dict[str, str]) -> None:
        state = self.state
        name = urllib.parse.unquote(path.rsplit("/", 1)[-1])  # as a web server decodes it
        number = path.split("/D", 1)[-1].split("/", 1)[0] if "/D" in path else ""
        export = state.exports.get(f"JSOC_20260101_{number}")
        target = None
        if export is not None:
            for when in export.records:
                if self._filename(export, when) == name:
                    target = when
                    break  # a name given to several records serves the first
        if target is None:
            self._error(404, "Not Found")
            return
        with state._lock:
            state.downloads[name] += 1
            state.served[target] += 1
        if target in state.file_status:
            status = state.file_status[target]
            self._error(status, self.responses.get(status, ("Error",))[0])
            return
        with state._lock:
            location = state.redirect.pop(target, None)
        if location is not None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        series = export.series
        body = state.file_bytes(series, target)
        if target in state.html:
            self._html_page()
            return
        if target in state.short_file:
            body = body[:-2880]
        if target in state.bitflip:  # decompresses fine, to wrong pixels (magnetograms)
            flipped = bytearray(body)
            flipped[state.template(series)[1]["data"] + 256] ^= 0x10
            body = bytes(flipped)
        if target in state.no_datasum:  # nothing left in the file to verify the data with
            blanked = bytearray(body)
            for card in re.finditer(rb"(DATASUM |CHECKSUM)= ", body):
                if card.start() % 80 == 0:
                    blanked[card.start() : card.start() + 80] = b" " * 80
            body = bytes(blanked)
        if self._take(state.wrong, target):
            body = state.file_bytes(series, target + series.step)
        if self._take(state.corrupt, target):
            body = np.random.default_rng(len(body)).bytes(len(body))
        self.send_response(200)
        self.send_header("Content-Type", "application/fits")
        announced = len(body) - 2880 if target in state.overlong else len(body)
        announced = 10**12 if target in state.huge_length else announced
        self.send_header("Content-Length", str(announced))
        self.end_headers()
        if target in state.trickle:
            self._trickle(body)
            return
        if target in state.huge_length:
            self.wfile.write(body)
            self.close_connection = True
            return
        if target in state.stall:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            state.stall_started.set()
            state.release.wait(60)
            self.close_connection = True
            return
        if self._take(state.cut, target):
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def _html_page(self) -> None:
        body = b"<!DOCTYPE html><html><body><h1>JSOC is down for maintenance</h1></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _trickle(self, body: bytes) -> None:
        """Send ``body`` 16 bytes at a time until done, the client leaves or the server stops."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            for i in range(0, len(body), 16):
                self.wfile.write(body[i : i + 16])
                self.wfile.flush()
                if self.state.release.wait(self.state.trickle_interval):
                    return


@contextlib.contextmanager
def running_standin(**kwargs: object) -> Iterator[JsocStandin]:
    """Start a :class:`JsocStandin` on 127.0.0.1 (ephemeral port); stop it afterwards.

    Test modules wrap it in a fixture::

        @pytest.fixture
        def standin():
            with running_standin() as server:
                yield server
    """
    server = JsocStandin(**kwargs).start()
    try:
        yield server
    finally:
        server.stop()

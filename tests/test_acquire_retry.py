"""The retry policy (enhance_hmi.acquire.retry) on every network operation, against the stand-in.

Attempt counts, the doubling and capped waits (recorded through the ``sleep``
hook instead of slept), which failures are retried and which end at once,
and the drms workaround that reads a failed export's error text.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import socket
import ssl
import time
import urllib.error

import pytest
from jsoc_standin import running_standin
from test_acquire_jsoc import at, key, run

from enhance_hmi.acquire import JsocOptions, JsocSource, Manifest, get_series
from enhance_hmi.acquire._drms import drms, export_error_text
from enhance_hmi.acquire.download import DownloadTask, allowed_origins, download_all, local_name
from enhance_hmi.acquire.retry import is_permanent, is_transient, retry_policy
from enhance_hmi.acquire.timespec import expected_slots, record_set
from enhance_hmi.errors import JsocError, OutputError

EMAIL = "john.doe@example.org"
M720 = get_series("hmi.M_720s")
T0 = dt.datetime(2014, 1, 1)
SLOTS = expected_slots(M720, T0, T0 + dt.timedelta(minutes=24), dt.timedelta(minutes=12))
DS = record_set(M720, SLOTS[0], len(SLOTS), dt.timedelta(minutes=12))


@pytest.fixture
def standin():
    with running_standin() as server:
        yield server


def source(standin, waits: list[float], **knobs: float) -> JsocSource:
    options = JsocOptions(
        retries=int(knobs.pop("retries", 5)),
        retry_wait=knobs.pop("retry_wait", 1.0),
        poll_max_interval=knobs.pop("poll_max_interval", 3.0),
        poll_interval=0.001,
        export_timeout=10,
    )
    return JsocSource(standin.config(), email=EMAIL, options=options, sleep=waits.append)


def test_http_500s_are_retried_with_doubling_capped_waits(standin) -> None:
    waits: list[float] = []
    standin.http_errors["series_struct"] = 3
    keys = source(standin, waits).available_keywords(M720, ("T_OBS",))
    assert keys == ["T_OBS"]
    assert standin.calls["series_struct"] == 4
    assert waits == [1.0, 2.0, 3.0]  # 1, 2, then 4 capped at poll_max_interval


def test_an_outage_ends_after_every_attempt_in_one_jsoc_error(standin) -> None:
    waits: list[float] = []
    standin.fail_after["series_struct"] = 0  # every call a 503
    with pytest.raises(JsocError, match="failed 5 times, last with HTTPError") as info:
        source(standin, waits).available_keywords(M720, ("T_OBS",))
    assert standin.calls["series_struct"] == 5
    assert waits == [1.0, 2.0, 3.0, 3.0]  # no wait after the last attempt
    assert isinstance(info.value.__cause__, urllib.error.HTTPError)


def test_a_query_error_is_not_retried(standin) -> None:
    waits: list[float] = []
    with pytest.raises(JsocError, match="failed"):
        source(standin, waits)._retry(
            "query", lambda: (_ for _ in ()).throw(drms.DrmsQueryError("bad series"))
        )
    assert waits == []


def test_refused_exports_are_submitted_again_after_a_wait(standin) -> None:
    waits: list[float] = []
    standin.refuse_exports = 2
    request = source(standin, waits).submit_export(DS)
    assert request.id == "JSOC_20260101_001"
    assert standin.calls["exp_request"] == 3
    assert waits == [1.0, 2.0]


def test_exports_refused_every_time_name_the_pending_request(standin) -> None:
    waits: list[float] = []
    standin.refuse_exports = 10
    with pytest.raises(JsocError, match="refused the export .* 3 times.*still pending"):
        source(standin, waits, retries=3).submit_export(DS)
    assert standin.calls["exp_request"] == 3
    assert waits == [1.0, 2.0]


def test_export_error_text_reads_the_server_s_message(standin) -> None:
    """The drms workaround: fails when drms changes how it reports a failed export."""
    client = drms.Client(server=standin.config())
    standin.fail_exports = 1
    failed = client.export(DS, method="url", protocol="fits", email=EMAIL)
    assert export_error_text(failed) == ""  # pending: not failed (and nothing polled)
    assert failed.has_finished()  # one exp_status poll: failed
    assert int(failed.status) == 4
    assert export_error_text(failed) == "Cant save new export-request hash"
    standin.refuse_exports = 1
    refused = client.export(DS, method="url", protocol="fits", email=EMAIL)
    assert int(refused.status) == 7
    assert "has 1 pending export requests" in export_error_text(refused)
    done = client.export(DS, method="url", protocol="fits", email=EMAIL)
    assert done.has_finished() and int(done.status) == 0
    assert export_error_text(done) == ""


def _tasks(standin, tmp_path, jsoc: JsocSource) -> list[DownloadTask]:
    request = jsoc.submit_export(DS)
    assert jsoc.wait(request) == (True, "")
    return [
        DownloadTask(f.t_rec, f.url, tmp_path / local_name(M720, f.t_rec), M720)
        for f in jsoc.files(request)
    ]


def test_downloads_cut_short_are_fetched_again_with_doubling_waits(standin, tmp_path) -> None:
    waits: list[float] = []
    tasks = _tasks(standin, tmp_path, source(standin, []))
    standin.cut[SLOTS[1]] = 2
    results = list(
        download_all(
            tasks,
            max_concurrent=1,
            retries=4,
            retry_wait=0.5,
            allowed=allowed_origins(standin.url),
            sleep=waits.append,
        )
    )
    by_time = {r.task.t_rec: r for r in results}
    assert all(r.error is None for r in results)
    assert by_time[SLOTS[1]].attempts == 3 and by_time[SLOTS[0]].attempts == 1
    assert standin.served[SLOTS[1]] == 3
    assert waits == [0.5, 1.0]  # uncapped doubling, per file


def test_downloads_give_up_after_the_attempts_and_4xx_at_once(standin, tmp_path) -> None:
    waits: list[float] = []
    tasks = _tasks(standin, tmp_path, source(standin, []))
    standin.cut[SLOTS[0]] = 10
    missing = DownloadTask(SLOTS[2], tasks[0].url + "x", tmp_path / "x.fits", M720)
    results = list(
        download_all(
            [tasks[0], missing],
            max_concurrent=1,
            retries=3,
            retry_wait=0.25,
            allowed=allowed_origins(standin.url),
            sleep=waits.append,
        )
    )
    by_dest = {r.task.dest.name: r for r in results}
    cut = by_dest[tasks[0].dest.name]
    assert cut.attempts == 3 and "IncompleteDownloadError" in cut.error
    assert by_dest["x.fits"].attempts == 1 and by_dest["x.fits"].error.startswith("HTTP 404")
    assert waits == [0.25, 0.5]
    assert not list(tmp_path.glob("*.part"))


def _http_error(code: int) -> urllib.error.HTTPError:
    return urllib.error.HTTPError("http://127.0.0.1/x.fits", code, "reason", {}, None)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (_http_error(500), True),
        (_http_error(503), True),
        (_http_error(408), True),
        (_http_error(425), True),
        (_http_error(429), True),
        (_http_error(400), False),
        (_http_error(401), False),
        (_http_error(403), False),
        (_http_error(404), False),
        (_http_error(410), False),
        (_http_error(304), False),  # a response urllib did not follow
        (urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")), True),
        (urllib.error.URLError(TimeoutError("timed out")), True),
        (urllib.error.URLError(socket.gaierror(-3, "Temporary failure")), True),
        (TimeoutError("timed out"), True),
        (ConnectionResetError(104, "reset"), True),
        (http.client.IncompleteRead(b"x", 10), True),
        (http.client.RemoteDisconnected("closed"), True),
        (json.JSONDecodeError("Expecting value", "", 0), True),
        (http.client.InvalidURL("URL can't contain control characters"), False),
        (ValueError("Invalid IPv6 URL"), False),
        (urllib.error.URLError("unknown url type: ftp"), False),
        (urllib.error.URLError("no host given"), False),
        (
            urllib.error.URLError(ssl.SSLCertVerificationError(1, "certificate verify failed")),
            False,
        ),
    ],
    ids=lambda v: v if isinstance(v, bool) else f"{type(v).__name__}-{getattr(v, 'code', '')}",
)
def test_what_a_wait_can_heal_is_retried_and_nothing_else(error, transient) -> None:
    assert is_transient(error) is transient
    assert is_permanent(error) is not transient


def test_a_url_urllib_refuses_is_tried_once_never_sent(standin, tmp_path) -> None:
    waits: list[float] = []
    base = standin.url + "SUM1/D001/S00000/"
    tasks = [  # as drms 0.9.0 joins a name with a space; a bracket left open
        DownloadTask(SLOTS[0], base + "a b.fits", tmp_path / "a.fits", M720),
        DownloadTask(SLOTS[1], "http://[::1/x.fits", tmp_path / "b.fits", M720),
    ]
    results = list(download_all(tasks, retries=3, retry_wait=0.25, sleep=waits.append))
    by_dest = {r.task.dest.name: r for r in results}
    assert by_dest["a.fits"].error.startswith("InvalidURL: URL can't contain control")
    assert by_dest["b.fits"].error.startswith("ValueError: Invalid IPv6 URL")
    for result in results:
        assert result.attempts == 1 and "not retried" in result.error
        assert "\n" not in result.error
    assert waits == [] and standin.calls["file"] == 0
    assert not list(tmp_path.iterdir())


def _failed_run(standin, tmp_path) -> dict[str, str]:
    with pytest.raises(JsocError, match="failed every retry"):
        run(standin, tmp_path)
    manifest = Manifest.load(tmp_path / "hmi.M_720s.manifest.csv", "hmi.M_720s")
    assert manifest.counts()["verified"] == 5
    return manifest.get(key(24))


@pytest.mark.parametrize("status", [403, 404, 410])
def test_a_refused_file_is_tried_once_and_recorded_with_its_cause(
    standin, tmp_path, status
) -> None:
    standin.file_status[at(24)] = status
    row = _failed_run(standin, tmp_path)
    assert row["state"] == "failed"
    assert row["reason"].startswith(f"HTTP {status} ") and "not retried" in row["reason"]
    assert standin.served[at(24)] == 1 and standin.calls["file"] == 6


@pytest.mark.parametrize("status", [500, 503, 408, 429])
def test_a_status_a_wait_may_heal_is_retried_to_the_last_attempt(standin, tmp_path, status) -> None:
    standin.file_status[at(24)] = status
    row = _failed_run(standin, tmp_path)
    assert row["state"] == "failed" and row["reason"].startswith(f"HTTP {status} ")
    assert "not retried" not in row["reason"]
    assert standin.served[at(24)] == 3  # download_retries
    del standin.file_status[at(24)]
    assert run(standin, tmp_path).counts()["verified"] == 6


def test_transient_500s_on_files_heal(standin, tmp_path) -> None:
    standin.http_errors["file"] = 2
    assert run(standin, tmp_path).counts()["verified"] == 6
    assert standin.calls["file"] == 8 and sum(standin.served.values()) == 6


def test_policy_stops_early_and_lets_other_errors_through() -> None:
    waits: list[float] = []
    calls = []

    def flaky() -> int:
        calls.append(1)
        raise TimeoutError("slow")

    stopped = [False]
    policy = retry_policy(
        attempts=5,
        first_wait=1.0,
        retry_on=lambda exc: isinstance(exc, TimeoutError),
        stop_when=lambda: len(calls) >= 2 or stopped[0],
        sleep=waits.append,
    )
    with pytest.raises(TimeoutError):
        policy(flaky)
    assert len(calls) == 2 and waits == [1.0]
    with pytest.raises(OutputError):  # not a retried failure: raised at the first call
        retry_policy(attempts=5, first_wait=1.0, sleep=waits.append)(
            lambda: (_ for _ in ()).throw(OutputError("disk full"))
        )
    assert waits == [1.0]
    with pytest.raises(ValueError, match="at least one attempt"):
        retry_policy(attempts=0, first_wait=1.0)


def test_polls_wait_growing_by_the_backoff_up_to_the_cap(standin) -> None:
    waits: list[float] = []
    options = JsocOptions(
        poll_interval=1.0, poll_backoff=1.5, poll_max_interval=2.0, export_timeout=600
    )
    jsoc = JsocSource(standin.config(), email=EMAIL, options=options, sleep=waits.append)
    standin.pending_polls = 4
    request = jsoc.submit_export(DS)
    assert jsoc.wait(request) == (True, "")
    assert waits == [1.0, 1.5, 2.0, 2.0]  # 1, 1.5, 2.25 and 3.375 capped at 2


def test_a_poll_past_the_deadline_is_not_started(standin) -> None:
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    options = JsocOptions(
        poll_interval=0.05, poll_backoff=2.0, poll_max_interval=0.1, export_timeout=0.3
    )
    jsoc = JsocSource(standin.config(), email=EMAIL, options=options, sleep=sleep)
    standin.pending_polls = 8  # done after 0.75 s of waits, past the 0.3 s deadline
    request = jsoc.submit_export(DS)
    with pytest.raises(JsocError, match="still pending .* rerun later to resume it"):
        jsoc.wait(request)
    assert waits[:2] == [0.05, 0.1] and sum(waits) <= 0.3  # never slept past the deadline

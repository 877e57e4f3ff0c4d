"""Two verdicts, two words: JSOC's QUALITY bits and enhance's tolerances, in the figures.

The completeness timeline shows what JSOC said about each input ("QUALITY
bits set") and what enhance said about its own output ("out of tolerance");
the per-frame quality figure shows only enhance's verdict. Neither says
"flagged", which once meant both. The words are read from the matplotlib
objects the figures are drawn with, not from pixels.
"""

from __future__ import annotations

import math

import pandas as pd

from enhance_hmi.cube.completeness import completeness_figure, completeness_table
from enhance_hmi.io.frame_quality import QUALITY_KEYWORDS
from enhance_hmi.validation.archive import quality_plot

JSOC = "QUALITY bits set"
ENHANCE = "out of tolerance"


def _texts(fig) -> list[str]:
    """Every text of ``fig``: title, axis labels, tick labels and legend entries."""
    out = [fig.get_suptitle()]
    for ax in fig.axes:
        out += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        out += [t.get_text() for t in ax.get_yticklabels()]
        legend = ax.get_legend()
        if legend is not None:
            out += [t.get_text() for t in legend.get_texts()]
    return [t for t in out if t]


def _legend(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]


def _completeness() -> pd.DataFrame:
    """Manifest rows as the reader gives them, one slot of every kind that needs a word."""
    rows = [
        {"t_rec": "2014.01.01_00:00:00_TAI", "state": "verified"},
        {"t_rec": "2014.01.01_00:12:00_TAI", "state": "flagged", "quality_bits": "ECLIPSE"},
        {"t_rec": "2014.01.01_00:24:00_TAI", "state": "verified"},
        {"t_rec": "2014.01.01_00:36:00_TAI", "state": "flagged", "quality_bits": "ISSTARGET"},
    ]
    cube = {
        "cube": "20140101",
        "t_rec": ["2014.01.01_00:00:00_TAI", "2014.01.01_00:12:00_TAI"],
        "kept_out": [{"t_rec": "2014.01.01_00:24:00_TAI", "out_of_tolerance": "ripple"}],
    }
    return completeness_table(rows, [cube])


def _quality_rows(outside: tuple[bool, ...]) -> list[dict[str, object]]:
    rows = []
    for i, bad in enumerate(outside):
        row: dict[str, object] = dict.fromkeys(QUALITY_KEYWORDS, 1.0)
        row.update(
            t_rec=f"2014.01.01_00:{12 * i:02d}:00_TAI",
            quality=0x400 if i == 0 else 0,  # JSOC bits set on a frame within tolerance
            contrast=math.nan,
            input_contrast=math.nan,
            flags="ripple" if bad else "",
            ripple=3.0 if bad else 1.0,
        )
        rows.append(row)
    return rows


def test_the_completeness_legend_names_jsoc_quality_and_enhance_tolerance_apart():
    fig = completeness_figure(_completeness(), title="hmi.M_720s: 4 slots")
    legend = _legend(fig)
    assert sorted(legend) == [
        "in cube (QUALITY bits set): 1",
        "in cube: 1",
        "kept out of cube (out of tolerance): 1",
        "queried (QUALITY bits set): 1",
    ]
    # each entry carries at most one of the two words, and none says "flagged"
    assert not [text for text in legend if JSOC in text and ENHANCE in text]
    assert not [text for text in _texts(fig) if "flag" in text.lower()]


def test_the_quality_figure_speaks_only_of_tolerance():
    fig = quality_plot(
        {"20140101.h5": _quality_rows((False, True, False))},
        "magnetogram",
        title="hmi.M_720s",
    )
    texts = _texts(fig)
    assert _legend(fig) == ["within tolerance", ENHANCE]
    assert "hmi.M_720s: per-frame quality, 3 frames, 1 out of tolerance" in texts
    # JSOC's QUALITY is not drawn here: a frame with QUALITY bits set is within tolerance
    assert not [text for text in texts if "QUALITY" in text or "flag" in text.lower()]
    # one name for the noise figure, in both panels that use it
    assert "input noise σ (G)" in texts and "forward residual / input noise σ" in texts


def test_the_words_have_teeth():
    """The checks above fail on the old words: a legend entry "flagged" is caught."""
    fig = quality_plot({"c.h5": _quality_rows((True,))}, "magnetogram", title="t")
    fig.axes[0].plot([], [], label="flagged")
    fig.axes[0].legend()
    assert [text for text in _texts(fig) if "flag" in text.lower()] == ["flagged"]

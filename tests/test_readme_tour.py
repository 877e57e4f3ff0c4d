"""The README's tour runs as written, on the data shipped with the package.

The tour is the part of ``README.md`` between ``<!-- tour`` and
``<!-- /tour -->``. Its fenced ``bash`` blocks are split into commands (lines
joined at a trailing backslash, comment lines dropped), and every command runs,
in order and unchanged, in one ``bash -euo pipefail`` in an empty temporary
directory, with ``HOME`` and ``XDG_CONFIG_HOME`` inside it (``enhance profile
install`` writes there). Its ``python`` blocks run as scripts in the same
directory afterwards.

A command is left out only for a reason listed in :data:`NOT_RUN` (it needs
JSOC, a SLURM cluster, a GPU that is not here, or a file the user brings);
each reason must match at least one command, so a stale entry fails too.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from astropy.io import fits

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
TOUR_START = "<!-- tour"
TOUR_END = "<!-- /tour -->"
HAS_CUDA = torch.cuda.is_available()

#: Commands not run here: a pattern searched in the command, and why.
NOT_RUN: list[tuple[str, str]] = [
    (
        r"^enhance fetch (?!.*--server \$DATA/)",
        "downloads from JSOC: needs the network and a JSOC-registered address",
    ),
    (
        r"^snakemake --profile profiles/local --configfile config/examples/jsoc_range\.yaml",
        "runs the workflow on JSOC data: needs the network "
        "(tests/test_config_examples.py dry-runs the example)",
    ),
    (
        r"--profile slurm\b",
        "needs a SLURM cluster and JSOC (tests/test_config_examples.py dry-runs the examples "
        "through the installed profile; tests/test_slurm.py runs the workflow on a real SLURM)",
    ),
    (
        r"^enhance import-keras network/keepsize_weights\.hdf5",
        "needs the 2018 Keras weights file, which is not distributed "
        "(tests/test_keras_import.py converts Keras files written by the test)",
    ),
]
if not HAS_CUDA:
    NOT_RUN.append((r"--device cuda\b", "needs a CUDA GPU (run where one is present)"))


def tour_text() -> str:
    text = README.read_text()
    start = text.index(TOUR_START)
    return text[start : text.index(TOUR_END, start)]


def fenced_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)


def shell_commands(block: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comment and blank lines dropped."""
    commands, current = [], ""
    for line in block.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1].rstrip() + " "
            continue
        commands.append(current + line.strip())
        current = ""
    assert not current, f"a command ends with a backslash: {current!r}"
    return commands


def why_not_run(command: str) -> str | None:
    for pattern, reason in NOT_RUN:
        if re.search(pattern, command):
            return reason
    return None


def test_tour_commands_are_found_and_every_left_out_one_has_a_reason():
    commands = [c for block in fenced_blocks(tour_text(), "bash") for c in shell_commands(block)]
    assert commands[0].startswith("DATA=$(python -c")
    assert sum(c.startswith("enhance predict ") for c in commands) >= 3
    for pattern, reason in NOT_RUN:  # no stale reasons
        assert any(re.search(pattern, c) for c in commands), (pattern, reason)
    run = [c for c in commands if why_not_run(c) is None]
    # the tour is mostly runnable: what it leaves out needs the outside world
    assert len(run) >= 10, run
    # no placeholder inputs: each file a command reads is bundled or made by an earlier command
    for command in run:
        words = command.split()
        for before, word in itertools.pairwise(words):
            if word.endswith((".fits", ".safetensors")) and before not in ("-o", "--out"):
                assert word.startswith(("$DATA/", "runs/demo/")), (word, command)


@pytest.mark.slow
def test_tour_runs_as_written(tmp_path):
    commands = [c for block in fenced_blocks(tour_text(), "bash") for c in shell_commands(block)]
    skipped = {c: why_not_run(c) for c in commands if why_not_run(c)}
    for command, reason in skipped.items():
        print(f"not run: {command}\n  because it {reason}")
    script = "set -x\n" + "\n".join(c for c in commands if c not in skipped) + "\n"
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)  # a real home has one; astropy warns without it
    env = {
        **os.environ,
        # the interpreter running the tests, and its `enhance` command, first
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "MPLBACKEND": "Agg",
    }
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert "Traceback" not in output and "Warning" not in output, output[-6000:]

    # what the commands were to make
    sources = {}
    for name in ("magnetogram.fits", "continuum.fits", "given_noise.fits"):
        with fits.open(tmp_path / name) as hdul:
            sources[name] = next(h.header["ENHNSRC"] for h in hdul if "ENHNSRC" in h.header)
    # estimated from the frames themselves, except where the tour gives it
    assert sources == {
        "magnetogram.fits": "histogram",
        "continuum.fits": "spectral",
        "given_noise.fits": "given",
    }
    with fits.open(tmp_path / "two_passes.fits") as hdul:
        assert [h.header["ENHSYMM"] for h in hdul if "ENHSYMM" in h.header][0] == "2"
    assert (tmp_path / "archive" / "hmi.M_720s.manifest.csv").is_file()
    assert (home / ".config" / "snakemake" / "slurm" / "config.v8+.yaml").is_file()
    assert (tmp_path / "runs" / "demo" / "magnetogram.safetensors").is_file()
    assert (tmp_path / "eval_demo" / "evaluation.json").is_file()
    assert (tmp_path / "eval" / "evaluation.json").is_file()
    assert (tmp_path / "report" / "report.html").is_file()
    if HAS_CUDA:
        assert (tmp_path / "gpu.fits").is_file()

    # the Python examples, each a script in the same directory
    for number, block in enumerate(fenced_blocks(tour_text(), "python")):
        script_file = tmp_path / f"tour_{number}.py"
        script_file.write_text(block)
        proc = subprocess.run(
            [sys.executable, script_file.name],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, block + proc.stdout + proc.stderr

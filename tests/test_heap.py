"""enhance_hmi.heap: freed blocks are reused instead of faulted in again.

Checked by counting minor page faults (not by timing) in a fresh Python
process, since the malloc settings are per process and cannot be undone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = r"""
import json, resource
import numpy as np
from enhance_hmi.heap import keep_freed_memory

kept = keep_freed_memory()

def faults_of_a_64mb_layer():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = np.empty(16 * 2**20, dtype=np.float32)  # like one big activation
    block.fill(1.0)
    del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

first = faults_of_a_64mb_layer()
again = [faults_of_a_64mb_layer() for _ in range(3)]
print(json.dumps({"kept": kept, "first": first, "again": again}))
"""


def _probe(env_value: str | None) -> dict:
    env = dict(os.environ)
    env.pop("ENHANCE_KEEP_FREED_MEMORY", None)
    if env_value is not None:
        env["ENHANCE_KEEP_FREED_MEMORY"] = env_value
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_freed_blocks_are_reused() -> None:
    kept, default = _probe(None), _probe("0")
    assert kept["kept"] is True and default["kept"] is False
    # Without the setting every 64 MB block is mmapped afresh and faulted in
    # again (how many faults that is depends on the kernel's huge pages); with
    # it the second and later blocks reuse the heap.
    assert default["first"] > 0 and min(default["again"]) >= default["first"] // 2
    assert kept["first"] > 0 and max(kept["again"]) <= kept["first"] // 10


# The fault count of a 64 MB block after some other work in a fresh process:
# ``{"kept": ...}`` says whether freed blocks were reused afterwards. 64 MB is
# above glibc's largest dynamic mmap threshold (32 MB), so without the setting
# such a block is mmapped afresh every time.
AFTER = r"""
import json, resource, sys
import numpy as np

def faults_of_a_64mb_layer():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = np.empty(16 * 2**20, dtype=np.float32)
    block.fill(1.0)
    del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

WORK

first = faults_of_a_64mb_layer()
again = [faults_of_a_64mb_layer() for _ in range(3)]
print(json.dumps({"kept": max(again) <= first // 10, "first": first, "again": again}))
"""

#: A small random network saved as a magnetogram weights file (no uncertainty
#: head), so the probe does not depend on the shipped weights.
SMALL_WEIGHTS = r"""
import tempfile
from pathlib import Path
import torch
from enhance_hmi.model import EnhanceNet, save_weights
torch.manual_seed(0)
work = Path(tempfile.mkdtemp())
weights = save_weights(EnhanceNet(n_blocks=1, width=8), work / "magnetogram.safetensors", metadata={
    "observable": "magnetogram",
    "input_normalisation": {"quantity": "Blos", "units": "G", "scale": 1000.0},
    "psf_model": "wachter", "training_data": "untrained: random initialisation (test)"})
"""

LIBRARY_CALLS = (
    SMALL_WEIGHTS
    + r"""
from enhance_hmi.batch import enhance_files
from enhance_hmi.inference import enhance_array
from enhance_hmi.pipeline import EnhanceSettings, enhance_file
enhance_array(np.ones((64, 64), dtype=np.float32), EnhanceNet(n_blocks=1, width=8), device="cpu")
enhance_file(sys.argv[1], work / "one.fits", weights=weights, device="cpu", tile=64)
settings = EnhanceSettings(weights=weights, device="cpu", tile=64)
outcomes = enhance_files([(sys.argv[1], work / "two.fits")], settings)
assert [o.status for o in outcomes] == ["enhanced"], outcomes
"""
)

COMMAND = (
    SMALL_WEIGHTS
    + r"""
from enhance_hmi.cli import main
assert main(["predict", sys.argv[1], "-o", str(work / "out.fits"), "--weights", str(weights),
             "--device", "cpu", "--tile", "64"]) == 0
"""
)

CROP = Path(__file__).parent / "data" / "hmi.M_720s.20111217_060000_TAI.crop128.magnetogram.fits"


def _after(work: str, env_value: str | None = None) -> dict:
    env = dict(os.environ)
    env.pop("ENHANCE_KEEP_FREED_MEMORY", None)
    if env_value is not None:
        env["ENHANCE_KEEP_FREED_MEMORY"] = env_value
    script = AFTER.replace("WORK", work)
    out = subprocess.run(
        [sys.executable, "-c", script, str(CROP)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_library_calls_leave_malloc_alone() -> None:
    """enhance_array, enhance_file and enhance_files on the CPU do not call mallopt."""
    after = _after(LIBRARY_CALLS)
    assert after["first"] > 0 and not after["kept"], after


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_the_predict_command_keeps_freed_memory() -> None:
    """The entry point opts in, and ENHANCE_KEEP_FREED_MEMORY=0 opts it out."""
    assert _after(COMMAND)["kept"] is True
    assert _after(COMMAND, "0")["kept"] is False

"""enhance.heap: freed blocks are reused instead of faulted in again.

Checked by counting minor page faults (not by timing) in a fresh Python
process, since the malloc settings are per process and cannot be undone.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = r"""
import json, resource
import numpy as np
from enhance.heap import keep_freed_memory

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
    import os

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

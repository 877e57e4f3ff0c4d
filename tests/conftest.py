"""Shared fixtures and the skip policy.

Tests that need ``../shared/data`` or a local SLURM skip with a stated reason
when those are missing, so a user's clone passes. In CI (``CI=true`` in the
environment) the same tests must run: a missing prerequisite fails the test
instead of skipping it, so a silently skipped CI run cannot happen.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from enhance_hmi.model import EnhanceNet

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ENHANCE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
#: The high-resolution continuum truth scenes of ../shared/data (relative paths).
CONTINUUM_SCENES = (
    "highres/muram_quiet_ic_0.0662.fits",
    "highres/sst_crisp_wb8542_qs_20190801.fits",
    "highres/sst_crisp_wb8542_spot_20200727.fits",
)


def require(condition: bool, reason: str) -> None:
    """Skip (outside CI) or fail (in CI) unless ``condition`` holds."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI but unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ``../shared/data`` (skips outside CI when it is missing)."""
    require(SHARED_DATA.is_dir(), f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root."""
    return REPO_ROOT


def randomised_net(seed: int = 0, **arch: int) -> EnhanceNet:
    """EnhanceNet with random batch-norm statistics and affine terms, in eval mode.

    Fresh batch norms are identities in eval mode; random statistics make
    the tests see every term of the forward pass.
    """
    torch.manual_seed(seed)
    model = EnhanceNet(**arch)
    gen = torch.Generator().manual_seed(seed + 1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
            module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
            module.weight.data.copy_(0.5 + torch.rand(n, generator=gen))
            module.bias.data.copy_(0.1 * torch.randn(n, generator=gen))
    return model.eval()


def untrained_magnetogram_weights(directory: Path) -> Path:
    """A tiny untrained magnetogram network (1 block x 8 filters) saved in ``directory``."""
    from enhance_hmi.model import save_weights

    torch.manual_seed(0)
    metadata = {
        "observable": "magnetogram",
        "input_normalisation": {"quantity": "Blos", "units": "G", "scale": 1000.0},
        "psf_model": "wachter",
        "training_data": "untrained: random initialisation (test)",
    }
    path = Path(directory) / "magnetogram.safetensors"
    return Path(save_weights(EnhanceNet(n_blocks=1, width=8), path, metadata=metadata))

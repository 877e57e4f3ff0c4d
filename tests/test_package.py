"""Package-level contracts: module boundaries, CLI dispatch, atomic writes, style."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest

from enhance import __version__
from enhance.atomic import atomic_path, part_path
from enhance.cli import main
from enhance.errors import EnhanceError, InputError, OutputError

# module -> packages it must never import (docs/architecture.md)
FORBIDDEN_IMPORTS = {
    "enhance.physics": ["torch", "drms", "h5py"],
    "enhance.io": ["torch", "drms"],
    "enhance.acquire": ["torch"],
    "enhance.cube": ["torch", "drms"],
    "enhance.model": ["drms"],
    "enhance.inference": ["drms"],
    "enhance.training": ["drms"],
    "enhance.validation": ["drms"],
    "enhance.pipeline": ["drms"],
    "enhance.batch": ["drms"],
    "enhance.heap": ["torch"],
}


@pytest.mark.parametrize(("module", "forbidden"), sorted(FORBIDDEN_IMPORTS.items()))
def test_module_boundaries(module: str, forbidden: list[str]) -> None:
    code = textwrap.dedent(
        f"""
        import importlib, sys
        importlib.import_module({module!r})
        bad = [name for name in {forbidden!r} if name in sys.modules]
        print(",".join(bad))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"{module} imports {result.stdout.strip()}"


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_python_dash_m_lists_subcommands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "enhance", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "predict" in result.stdout


def test_atomic_path_success_and_failure(tmp_path) -> None:
    target = tmp_path / "out.txt"
    with atomic_path(target) as tmp:
        assert tmp == part_path(target)
        tmp.write_text("complete")
        assert not target.exists()
    assert target.read_text() == "complete"

    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "complete"
    assert not part_path(target).exists()


def test_atomic_path_refuses_missing_directory(tmp_path) -> None:
    with (
        pytest.raises(OutputError, match="does not exist"),
        atomic_path(tmp_path / "nope" / "x.fits"),
    ):
        pass


def test_error_hierarchy() -> None:
    assert issubclass(InputError, EnhanceError)
    assert issubclass(InputError, ValueError)
    assert issubclass(OutputError, OSError)


def test_ruff_clean(repo_root) -> None:
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    for args in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run(
            [ruff, *args], cwd=repo_root, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr

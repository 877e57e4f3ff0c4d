"""Package-level contracts: module boundaries, import layers, CLI dispatch, atomic writes, style."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import require

from enhance_hmi import __version__
from enhance_hmi.atomic import atomic_path, part_path
from enhance_hmi.cli import main
from enhance_hmi.errors import ConfigError, InputError, OutputError

# module -> packages it must never import (docs/architecture.md)
FORBIDDEN_IMPORTS = {
    "enhance_hmi.physics": ["torch", "drms", "h5py"],
    "enhance_hmi.io": ["torch", "drms"],
    "enhance_hmi.acquire": ["torch"],
    "enhance_hmi.cube": ["torch", "drms"],
    "enhance_hmi.scenes": ["torch", "drms"],
    "enhance_hmi.model": ["drms"],
    "enhance_hmi.inference": ["drms"],
    "enhance_hmi.training": ["drms"],
    "enhance_hmi.validation": ["drms"],
    "enhance_hmi.pipeline": ["drms"],
    "enhance_hmi.batch": ["drms"],
    "enhance_hmi.heap": ["torch"],
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
        [sys.executable, "-m", "enhance_hmi", "--help"], capture_output=True, text=True, check=False
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


def test_errors_a_user_causes_are_caught_as_their_builtin_and_by_the_cli(
    repo_root, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A caller's ``except ValueError`` / ``except OSError`` catches ours; the CLI makes one line.

    Real failures, not the class statements: a file that is not FITS, an
    output directory that does not exist, a time that is not a time.
    """
    from enhance_hmi.io import read_hmi
    from enhance_hmi.time import parse_time

    not_fits = tmp_path / "notes.fits"
    not_fits.write_text("not a FITS file\n")
    with pytest.raises(ValueError, match="not a readable FITS file") as caught:
        read_hmi(not_fits)
    assert isinstance(caught.value, InputError)
    with (
        pytest.raises(OSError, match="does not exist") as caught,
        atomic_path(tmp_path / "nope" / "x.fits"),
    ):
        pass
    assert isinstance(caught.value, OutputError)
    # the same text can come from a configuration or from a file header
    for kind in (ConfigError, InputError, ValueError):
        with pytest.raises(kind):
            parse_time("yesterday at noon")

    sample = repo_root / "enhance_hmi" / "data" / "sample"
    magnetogram = sample / "hmi.M_720s.20160707_010000_TAI.3.magnetogram.fits"
    cases = [
        ([str(not_fits), "-o", str(tmp_path / "a.fits")], "not a readable FITS file"),
        ([str(magnetogram), "-o", str(tmp_path / "nope" / "b.fits")], "does not exist"),
    ]
    for argv, words in cases:
        capsys.readouterr()
        assert main(["predict", *argv, "--device", "cpu"]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("enhance predict: error: "), lines
        assert words in lines[0]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.fits"]


def test_ruff_clean(repo_root) -> None:
    ruff = shutil.which("ruff")
    require(ruff is not None, "ruff is not installed (pip install -e '.[test]')")
    for args in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run(
            [ruff, *args], cwd=repo_root, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


#: Modules whose types mypy checks; the rest of the package joins as its errors are fixed.
#: The layers mypy checks in strict mode (the whole package passes the default checks).
STRICT = ["enhance_hmi/physics", "enhance_hmi/model", "enhance_hmi/io"]


@pytest.mark.parametrize("strict", [False, True], ids=["package", "strict-layers"])
def test_the_package_passes_mypy(repo_root, strict) -> None:
    """py.typed ships: mypy finds no error in enhance_hmi, nor --strict in its lower layers."""
    mypy = shutil.which("mypy")
    require(mypy is not None, "mypy is not installed (pip install -e '.[test]')")
    command = [mypy, "--strict", *STRICT] if strict else [mypy, "enhance_hmi"]
    result = subprocess.run(command, cwd=repo_root, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run import-linter on the package under ``root`` with ``root/pyproject.toml``."""
    tool = shutil.which("lint-imports")
    require(tool is not None, "import-linter is not installed (pip install -e '.[test]')")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [tool, "--no-cache"], cwd=root, env=env, capture_output=True, text=True, check=False
    )


def test_import_contracts_are_kept(repo_root) -> None:
    """The layers and forbidden-import contracts of pyproject.toml hold for the package."""
    result = _lint_imports(repo_root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_import_contracts_refuse_a_back_import(repo_root, tmp_path) -> None:
    """A copy of the package whose physics imports validation breaks the layers contract."""
    shutil.copytree(
        repo_root / "enhance_hmi",
        tmp_path / "enhance_hmi",
        ignore=shutil.ignore_patterns("__pycache__", "data"),
    )
    shutil.copy(repo_root / "pyproject.toml", tmp_path)
    physics = tmp_path / "enhance_hmi" / "physics" / "__init__.py"
    physics.write_text(physics.read_text() + "from enhance_hmi.validation import metrics\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "enhance_hmi.physics is not allowed to import enhance_hmi.validation" in result.stdout
    assert "1 broken" in result.stdout


def test_ruff_bans_pyplot_and_backend_switches_in_the_library(repo_root) -> None:
    """A library call never changes process state: ruff's TID251 refuses both in enhance_hmi/.

    The ban itself lives in pyproject.toml ([tool.ruff.lint.flake8-tidy-imports]);
    test_ruff_clean applies it to the code. Here, that it bites: in the library,
    not in the gallery scripts, which are entry points.
    """
    ruff = shutil.which("ruff")
    require(ruff is not None, "ruff is not installed (pip install -e '.[test]')")
    offending = {
        "import matplotlib.pyplot as plt\n": "matplotlib.pyplot",
        "from matplotlib import pyplot\n": "matplotlib.pyplot",
        "import matplotlib as mpl\n\nmpl.use('Agg')\n": "matplotlib.use",
        "from matplotlib import use\n": "matplotlib.use",
    }
    own_canvas = (
        "from matplotlib.backends.backend_agg import FigureCanvasAgg\n"
        "from matplotlib.figure import Figure\n"
    )

    def check(code: str, name: str) -> subprocess.CompletedProcess[str]:
        argv = [ruff, "check", "--no-cache", "--output-format", "concise", "--stdin-filename"]
        return subprocess.run(
            [*argv, name, "-"],
            input=code,
            cwd=repo_root,
            capture_output=True,
            text=True,
            check=False,
        )

    for code, banned in offending.items():
        assert f"TID251 `{banned}` is banned" in check(code, "enhance_hmi/figure.py").stdout, code
        assert "TID251" not in check(code, "examples/plot_figure.py").stdout, code
    assert "TID251" not in check(own_canvas, "enhance_hmi/figure.py").stdout


def test_the_licence_and_the_citation_say_what_pyproject_says(repo_root) -> None:
    """LICENSE holds the BSD-3-Clause text pyproject names; CITATION.cff cites the paper."""
    import yaml

    pyproject = (repo_root / "pyproject.toml").read_text()
    licence = (repo_root / "LICENSE").read_text()
    assert 'license = "BSD-3-Clause"' in pyproject and 'license-files = ["LICENSE"]' in pyproject
    assert licence.startswith("BSD 3-Clause License") and "Neither the name" in licence
    citation = yaml.safe_load((repo_root / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["license"] == "BSD-3-Clause"
    paper = citation["preferred-citation"]
    assert paper["doi"] == "10.1051/0004-6361/201731344" and paper["volume"] == 614


def test_the_distribution_name_is_the_one_pyproject_installs(repo_root) -> None:
    """``enhance_hmi.DISTRIBUTION`` names pyproject's project, whose metadata gives __version__."""
    tomllib = pytest.importorskip("tomllib")
    from importlib.metadata import version

    import enhance_hmi

    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    assert project["name"] == enhance_hmi.DISTRIBUTION and "version" in project["dynamic"]
    assert enhance_hmi.__version__ == version(enhance_hmi.DISTRIBUTION), (
        "reinstall: pip install -e ."
    )


def test_changelog_fragments_are_named_for_towncrier(repo_root) -> None:
    """Every file in changes/ is ``<issue or +name>.<type>.md`` with a type pyproject declares.

    towncrier passes over a misnamed fragment without a word, so it would be
    left out of the next release's changelog.
    """
    import re

    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((repo_root / "pyproject.toml").read_text())["tool"]["towncrier"]
    types = "|".join(re.escape(entry["directory"]) for entry in config["type"])
    fragment = re.compile(rf"(\d+|\+[\w-]+)\.({types})(\.\d+)?\.md")
    assert fragment.fullmatch("30.feature.md") and not fragment.fullmatch("30.bad.md")
    directory = repo_root / config["directory"]
    misnamed = [
        path.name
        for path in directory.iterdir()
        if path.name != "README.md" and not fragment.fullmatch(path.name)
    ]
    assert misnamed == []
    assert config["start_string"] in (repo_root / config["filename"]).read_text()


def test_repository_path_prefers_the_wheels_copy(tmp_path, monkeypatch) -> None:
    """A wheel's copy under enhance_hmi/data wins; without one the checkout's path is returned."""
    from enhance_hmi import repository_files

    bundled, checkout = tmp_path / "data", tmp_path / "checkout"
    monkeypatch.setattr(repository_files, "BUNDLED_ROOT", bundled)
    monkeypatch.setattr(repository_files, "CHECKOUT_ROOT", checkout)
    (checkout / "profiles" / "slurm").mkdir(parents=True)
    assert repository_files.repository_path("profiles/slurm") == checkout / "profiles" / "slurm"
    (bundled / "profiles" / "slurm").mkdir(parents=True)
    assert repository_files.repository_path("profiles/slurm") == bundled / "profiles" / "slurm"
    assert repository_files.repository_path("config/examples") == checkout / "config" / "examples"
    for outside in ("../profiles", "/etc", ""):
        with pytest.raises(ValueError, match="not a path inside the repository"):
            repository_files.repository_path(outside)

"""Check an installed wheel of enhance-hmi the way a user meets it, away from the checkout.

Run with the Python of a fresh virtual environment that holds only the wheel
(and torch), from a scratch directory::

    cd "$(mktemp -d)" && /path/to/venv/bin/python /path/to/repo/.ci/check_wheel.py /path/to/repo

It runs ``enhance predict`` on the bundled sample and ``enhance profile
install`` with the venv's own ``enhance`` command, and checks that the
package, the profile template and the example configurations come from the
installed wheel (not from the checkout), that the wheel's copies equal the
checkout's, and that the version setuptools_scm computed from git is the one
written into the output's provenance. Exits non-zero, naming the failed check.
"""

from __future__ import annotations

import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

from astropy.io import fits

import enhance_hmi
from enhance_hmi.acquire import sample_dir
from enhance_hmi.repository_files import BUNDLED_ROOT, repository_path

SAMPLE = "hmi.M_720s.20160707_010000_TAI.3.magnetogram.fits"
BUNDLED = ("profiles", "config/examples", "workflow/schemas")


def check(condition: bool, message: str) -> None:
    if not condition:
        sys.exit(f"check_wheel: {message}")


def files_under(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def run(*args: str) -> str:
    command = [str(Path(sys.executable).with_name("enhance")), *args]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    print(f"$ enhance {' '.join(args)}  ({time.perf_counter() - start:.1f} s)")
    print(result.stdout + result.stderr, end="")
    check(result.returncode == 0, f"enhance {args[0]} exited with {result.returncode}")
    return result.stdout


def main(repo: Path) -> None:
    installed = Path(enhance_hmi.__file__).resolve()
    check(
        installed.is_relative_to(Path(sys.prefix).resolve()),
        f"enhance was imported from {installed}, not from the venv {sys.prefix}",
    )
    release = version(enhance_hmi.DISTRIBUTION)
    check(enhance_hmi.__version__ == release, f"__version__ {enhance_hmi.__version__} != {release}")
    check(
        not release.endswith(".dev0") and "unknown" not in release,
        f"version {release} is setuptools_scm's fallback: the build did not read git",
    )
    print(f"{enhance_hmi.DISTRIBUTION} {release} from {installed.parent}")

    for relative in BUNDLED:
        source = repo / relative
        if not source.is_dir():
            continue
        copy = repository_path(relative)
        check(copy.is_relative_to(BUNDLED_ROOT), f"{relative} is read from {copy}, not the wheel")
        check(
            files_under(copy) == files_under(source),
            f"the wheel's {relative} differs from the checkout's",
        )
        print(f"{relative}: {len(files_under(copy))} files in the wheel, equal to the checkout's")

    output = Path("enhanced.fits").absolute()
    run("predict", str(sample_dir() / SAMPLE), "-o", str(output))
    with fits.open(output) as hdus:
        cards = [hdu.header.get("ENHVERS") for hdu in hdus]
    check(f"enhance {release}" in cards, f"ENHVERS of {output.name} is {cards}, not {release}")

    profile = Path("profiles/slurm").absolute()
    run("profile", "install", "--account", "ci", "--partition", "ci", "--dest", str(profile))
    text = (profile / "config.v8+.yaml").read_text()
    check(str(BUNDLED_ROOT) in text, "the installed profile does not name the wheel's template")
    check("slurm_account: \"'ci'\"" in text, "the installed profile lacks the account")
    print("the wheel runs: predict wrote ENHVERS, profile install used the wheel's template")


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())

"""One build step beyond pyproject.toml: the workflow's files go into the wheel.

``enhance profile install`` renders ``profiles/slurm``, the example
configurations in ``config/examples`` are where a user starts a run of their
own, and :class:`enhance_hmi.settings.EnhanceSettings` checks every option
against the configuration schema in ``workflow/schemas``. They live at the
top of the repository, beside ``workflow/``, where Snakemake and the README
expect them; a wheel carries a copy of each under ``enhance_hmi/data/`` at the
same relative path (``enhance_hmi/data/profiles``, ...), and
:func:`enhance_hmi.repository_files.repository_path` reads that copy when
there is no checkout around the package. An editable install reads the
checkout's own directories, so nothing is copied for it. ``MANIFEST.in`` puts
the directories in the sdist, from which ``python -m build`` makes the wheel.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent

# repository directory -> its place in the wheel; profiles/ must be there
BUNDLED = {
    "profiles": "enhance_hmi/data/profiles",
    "config/examples": "enhance_hmi/data/config/examples",
    "workflow/schemas": "enhance_hmi/data/workflow/schemas",
}
REQUIRED = ("profiles", "workflow/schemas")


class BuildPyWithWorkflowFiles(build_py):
    """``build_py`` that also copies :data:`BUNDLED` into the built package."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        for source, target in BUNDLED.items():
            if not (ROOT / source).is_dir():
                if source in REQUIRED:
                    raise FileNotFoundError(f"{ROOT / source} is missing: the wheel needs it")
                continue
            shutil.copytree(
                ROOT / source,
                Path(self.build_lib) / target,
                ignore=shutil.ignore_patterns("__pycache__", "*.part", "*.pyc"),
                dirs_exist_ok=True,
            )


setup(cmdclass={"build_py": BuildPyWithWorkflowFiles})

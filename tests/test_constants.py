"""Physical constants and pixel scales are declared once, in enhance_hmi.physics.constants.

Every Quantity of that module (plate scales, apertures, wavelengths, the km
per arcsec) is looked for as a number in the code of every other module of
the package (docstrings and comments are text, not numbers, and do not
count). A module that writes ``0.504 * u.arcsec`` again instead of importing
``HMI_PIXEL_SCALE`` fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import astropy.units as u

import enhance_hmi.physics.constants as constants
import enhance_hmi.pipeline
from enhance_hmi import inference

PACKAGE = Path(constants.__file__).resolve().parents[1]


def _declared() -> dict[float, str]:
    values = {}
    for name in constants.__all__:
        value = getattr(constants, name)
        if isinstance(value, u.Quantity):
            values[float(value.value)] = name
    return values


def _numbers(path: Path) -> list[tuple[int, float]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        (node.lineno, float(node.value))
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ]


def test_the_scan_sees_every_constant() -> None:
    declared = _declared()
    for value in (0.504, 0.252, 0.14, 0.28, 6173.0, 725.0):
        assert value in declared


def test_no_module_redeclares_a_physical_constant(tmp_path) -> None:
    declared = _declared()
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == Path(constants.__file__).resolve():
            continue
        for line, value in _numbers(path):
            if value in declared:
                where = path.relative_to(PACKAGE.parent)
                found.append(f"{where}:{line}: {value} (use {declared[value]})")
    assert found == []
    # the check has teeth: the same scan on a module that re-declares one
    sample = tmp_path / "redeclares.py"
    sample.write_text('"""0.504 in a docstring is fine."""\nSCALE = 0.504  # not fine\n')
    assert [value for _, value in _numbers(sample) if value in declared] == [0.504]


def test_precisions_are_one_mapping() -> None:
    assert list(inference.PRECISIONS) == ["fp32", "bf16", "fp16"]
    assert not hasattr(enhance_hmi.pipeline, "PRECISIONS")

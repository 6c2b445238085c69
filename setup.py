"""Package discovery for the folder mapping pyproject.toml cannot express with `packages.find`.

trtq/ holds trtq and its subpackages; calibrators/ and configs/ are the source folders of
trtq.calibrators and trtq.configs. Every package is found, so a new subpackage is in the wheel
without being listed anywhere (tests/test_wheel.py checks). All other metadata is in pyproject.toml.
"""

from setuptools import find_packages, setup

MAPPED = {"trtq.calibrators": "calibrators", "trtq.configs": "configs"}


def _packages() -> list[str]:
    names = find_packages(include=["trtq", "trtq.*"])
    for package, folder in MAPPED.items():
        names += [package + found[len(folder):] for found in find_packages(include=[folder, f"{folder}.*"])]
    return names


setup(packages=_packages(), package_dir=MAPPED)

"""Installs the repository's four folders under ONE top-level import name, `weightgate`:
core/ -> weightgate.core, tui/ -> weightgate.tui, screens/ -> weightgate.screens,
themes/ -> weightgate.themes. Everything else is in pyproject.toml.

setuptools cannot map found packages to a prefix from pyproject.toml alone, so the list is
computed here: a new sub-package is picked up without editing anything.
"""

from setuptools import find_packages, setup

FOLDERS = ("core", "tui", "screens", "themes")

packages = ["weightgate"]
for folder in FOLDERS:
    packages += [f"weightgate.{name}" for name in find_packages(include=[folder, f"{folder}.*"])]

setup(
    packages=packages,
    package_dir={"weightgate": "weightgate", **{f"weightgate.{folder}": folder for folder in FOLDERS}},
)

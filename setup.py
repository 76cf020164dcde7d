"""Packaging glue that pyproject.toml cannot express declaratively.

The three top-level folders install as sub-packages of ``dlbrig`` (``core/`` -> ``dlbrig.core`` and so
on), and the cffi extension ``dlbrig.core._dlb`` is compiled from ``csrc/`` at install time.
Sub-packages are discovered, so adding a folder with an ``__init__.py`` needs no edit here.
"""
from setuptools import find_packages, setup

FOLDERS = {"core": "dlbrig.core", "firmware_sim": "dlbrig.firmware_sim", "rig": "dlbrig.rig"}

packages = ["dlbrig"]
package_dir = {"dlbrig": "dlbrig_ns"}
for folder, name in FOLDERS.items():
    packages.append(name)
    package_dir[name] = folder
    for sub in find_packages(folder):
        packages.append(f"{name}.{sub}")

setup(
    packages=packages,
    package_dir=package_dir,
    include_package_data=True,
    package_data={"dlbrig.rig.scenario": ["library/*.yaml"]},
    cffi_modules=["core/_ffi_build.py:ffibuilder"],
    zip_safe=False,
)

"""setuptools needs this file for what pyproject.toml cannot say; everything else is there.

- ``cffi_modules``: build_ffi.py builds the extension ``wdfusb._native`` (cffi API mode).
- the wheel's tag: cffi compiles that extension against the limited API (Py_LIMITED_API, so it
  is ``_native.abi3.so``), and ``py_limited_api`` tags the wheel ``cp310-abi3`` (any CPython
  from 3.10, the oldest ``requires-python`` allows) instead of the building interpreter's.
"""

from setuptools import setup

setup(
    cffi_modules=["build_ffi.py:ffibuilder"],
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)

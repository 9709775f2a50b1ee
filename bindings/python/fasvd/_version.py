"""Where the package's version comes from (it is written once, in the
repository's meson.build, and never copied by hand):

1. ``fasvd/_config.py``, generated when the package is installed — by
   ``meson install`` (with the library's install directory) or by
   ``pip install bindings/python`` (setup.py);
2. in a source checkout (``PYTHONPATH=bindings/python``), the ``project()``
   call of ``meson.build`` two levels above ``bindings/python``;
3. the installed distribution's metadata.

This module imports nothing from the package, so that setup.py and the
repository checks can load it by path without loading libfasvd.
"""

import os
import re

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
#: meson.build of the checkout this package directory sits in, if any.
CHECKOUT_MESON_BUILD = os.path.normpath(os.path.join(_PACKAGE_DIR, "..", "..", "..",
                                                     "meson.build"))

_PROJECT = re.compile(r"\bproject\s*\(\s*'libfasvd'(.*?)\)", re.S)
_VERSION = re.compile(r"\bversion\s*:\s*'(\d+\.\d+\.\d+)'")


def from_meson_build(path):
    """The version in the ``project('libfasvd', version : '…')`` call of the
    meson.build at `path`, or None when the file is missing or not
    libfasvd's."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return None
    m = _PROJECT.search(text)
    v = _VERSION.search(m.group(1)) if m else None
    return v.group(1) if v else None


def package_version():
    """This package's version, "MAJOR.MINOR.PATCH" (ImportError if no
    source gives it)."""
    try:
        from . import _config  # generated at install time
        return _config.VERSION
    except ImportError:
        pass
    v = from_meson_build(CHECKOUT_MESON_BUILD)
    if v:
        return v
    try:
        from importlib import metadata
        return metadata.version("fasvd")
    except Exception as e:  # PackageNotFoundError, or no importlib.metadata
        raise ImportError("fasvd: cannot tell this package's version: no generated "
                          "fasvd/_config.py, no %s, no installed metadata (%s)"
                          % (CHECKOUT_MESON_BUILD, e)) from None


def major_minor(version):
    """(major, minor) of a "MAJOR.MINOR.PATCH" string."""
    major, minor = version.split(".")[:2]
    return int(major), int(minor)

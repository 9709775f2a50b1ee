"""The OpenBLAS kernels libfasvd runs with (docs/blas.md).

A DYNAMIC_ARCH OpenBLAS chooses its kernel set ("core") when it is loaded;
one that does not know the CPU model falls back to generic SSE kernels
("Prescott"), three to four times slower than the AVX2 or AVX-512 kernels
the CPU could run. The environment variable OPENBLAS_CORETYPE, read when
OpenBLAS is loaded, overrides the choice.

Before the binding loads libfasvd (and with it OpenBLAS), :func:`prepare`
sets OPENBLAS_CORETYPE to the best core the CPU supports, decided from the
flags of /proc/cpuinfo by the library's rule (lib/core/blas.c), when it
safely can: the variable is unset, FASVD_NO_REEXEC is not set, and the
OpenBLAS libfasvd uses is not in the process yet. The variable stays set, so
that processes started from this one and an OpenBLAS loaded later (numpy's
own copy in a pip install) get the same kernels. After loading,
:func:`check` warns once when OpenBLAS still runs a fallback core: another
module (Debian's numpy uses the system OpenBLAS) loaded it first.
"""

import os
import warnings

CORETYPE = "OPENBLAS_CORETYPE"
OPT_OUT = "FASVD_NO_REEXEC"

# OpenBLAS's cores, best first, with the /proc/cpuinfo flags their kernels
# need and the CPU vendors they are for (None: any).
_AVX512 = {"avx", "fma", "avx2", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"}
_AMD = ("AuthenticAMD", "HygonGenuine")
_CORES = [
    ("Cooperlake", _AVX512 | {"avx512_bf16"}, None),
    ("SkylakeX", _AVX512, None),
    ("Zen", {"avx", "fma", "avx2"}, _AMD),
    ("Haswell", {"avx", "fma", "avx2"}, None),
    ("Sandybridge", {"avx"}, None),
]


def cpu(path="/proc/cpuinfo"):
    """(set of flags, vendor) of the first CPU of /proc/cpuinfo; (set(), "")
    when it cannot be read (not Linux, not x86)."""
    flags, vendor = set(), ""
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "flags" and not flags:
                    flags = set(value.split())
                elif key == "vendor_id" and not vendor:
                    vendor = value.strip()
                if flags and vendor:
                    break
    except OSError:
        pass
    return flags, vendor


def best_core(flags, vendor):
    """The best OpenBLAS core whose instructions `flags` include, or None."""
    for name, needs, vendors in _CORES:
        if needs <= flags and (vendors is None or vendor in vendors):
            return name
    return None


def _private_copy(path):
    """An OpenBLAS bundled inside a wheel (numpy.libs/, scipy.libs/,
    scipy_openblas64/): a library of its own, never the one libfasvd uses."""
    parts = path.split(os.sep)
    return any(p.endswith(".libs") or p.startswith("scipy_openblas") for p in parts[:-1])


def loaded_openblas(maps="/proc/self/maps"):
    """Paths of the OpenBLAS libraries mapped in this process that libfasvd
    may share (wheel-private copies left out); None when unknown."""
    try:
        with open(maps) as f:
            fields = [line.split(None, 5) for line in f]
    except OSError:
        return None
    paths = {x[5].strip() for x in fields if len(x) == 6}
    return sorted(p for p in paths if os.path.basename(p).startswith("libopenblas")
                  and not _private_copy(p))


def _on(name):
    v = os.environ.get(name, "")
    return v not in ("", "0")


def prepare():
    """Before libfasvd is loaded: set OPENBLAS_CORETYPE to the CPU's best
    core when it safely can (see the module's documentation). Returns the
    core set, or None."""
    if CORETYPE in os.environ or _on(OPT_OUT):
        return None
    if loaded_openblas() != []:
        return None  # already loaded (or unknown): too late, check() tells
    core = best_core(*cpu())
    if core:
        os.environ[CORETYPE] = core
    return core


def check(info, set_here):
    """After loading: warn once when OpenBLAS runs a fallback core although
    the user did not choose it. `info` is fasvd.blas_info(), `set_here` what
    prepare() returned."""
    if not info["fallback"] or _on(OPT_OUT) or (CORETYPE in os.environ and not set_here):
        return
    best = info["recommended"]
    if info["dynamic"]:
        why = "OpenBLAS was loaded before fasvd (by numpy or another module)"
    else:
        why = "this OpenBLAS was built for one CPU type (no DYNAMIC_ARCH)"
    warnings.warn("fasvd: OpenBLAS runs its generic %s kernels, several times slower than "
                  "this CPU's %s kernels: %s. Set %s=%s in the environment before Python "
                  "starts (or before importing numpy); %s=1 silences this."
                  % (info["core"], best, why, CORETYPE, best, OPT_OUT),
                  RuntimeWarning, stacklevel=2)

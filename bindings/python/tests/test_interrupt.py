"""Ctrl-C during a long C call (docs/python.md): a SIGINT sent from outside
while libfasvd computes raises KeyboardInterrupt, not Cancelled, without
"Exception ignored" on stderr; the spectra file keeps its completed layers
and resume=True completes it."""

import os
import signal
import subprocess
import sys

import pytest

from support import HERE, PKG_ROOT, require_library, write_fixture

require_library()

import fasvd  # noqa: E402

# The child analyses the model, says when layer 0 is done and reports how the
# run ended on stdout. The SIGINT then arrives while the C code computes
# layer 1 (a layer takes about a hundred milliseconds here), not inside a
# Python callback: Python raises it as the next callback is entered.
CHILD = r"""
import sys
import fasvd

def progress(p):
    if p["stage"] == "layer" and p["layer"] == 0:
        sys.stdout.write("layer 0 done\n")
        sys.stdout.flush()

try:
    with fasvd.open(sys.argv[1]) as m:
        m.analyze(sys.argv[2], progress=progress, threads=1)
except KeyboardInterrupt:
    print("KeyboardInterrupt")
    sys.exit(3)
except BaseException as e:
    print(type(e).__name__, e)
    sys.exit(4)
print("finished")
"""


@pytest.fixture(scope="module")
def slow_dir(tmp_path_factory):
    return write_fixture(str(tmp_path_factory.mktemp("slow") / "model"), arch="llama",
                         n_layers=12, hidden=768, n_heads=12, n_kv_heads=4, head_dim=64)


def _child_env():
    env = dict(os.environ)
    env["FASVD_LIBRARY"] = os.path.abspath(fasvd.library_path)
    env["PYTHONPATH"] = os.pathsep.join([PKG_ROOT, HERE, env.get("PYTHONPATH", "")])
    return env


def test_sigint_during_analyze_raises_keyboardinterrupt_and_resumes(slow_dir, tmp_path):
    out = str(tmp_path / "run.safetensors")
    p = subprocess.Popen([sys.executable, "-c", CHILD, slow_dir, out], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=_child_env())
    try:
        first = p.stdout.readline().decode()
        assert first == "layer 0 done\n", first + p.stderr.read().decode()
        os.kill(p.pid, signal.SIGINT)
        rest, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    rest, err = rest.decode(), err.decode()
    assert p.returncode == 3 and rest == "KeyboardInterrupt\n", (p.returncode, rest, err)
    assert "Exception ignored" not in err and "Traceback" not in err, err

    part = fasvd.load_spectra(out)
    assert not part.complete
    assert part.layers and part.layers == list(range(len(part.layers)))
    assert len(part.layers) < 12
    with fasvd.open(slow_dir) as m:
        res = m.analyze(out, resume=True, threads=1, layers=None)
    assert res.complete and res.layers == list(range(12))


def test_sigint_in_truncate_raises_keyboardinterrupt(deepseek_dir, tmp_path):
    """Ctrl-C from the per-tensor callback of fasvd.truncate: the same
    KeyboardInterrupt, and nothing is left at out_dir."""
    out = tmp_path / "lr"
    calls = []

    def interrupt(entry):
        calls.append(entry["name"])
        os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        fasvd.truncate(deepseek_dir, str(out), rank=2, progress=interrupt)
    assert len(calls) == 1 and not out.exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

#!/usr/bin/python3
"""CLI tests of error messages and of what a command accepts (TAP output).

usage: test-messages.py PATH/TO/fasvd

- One prefix per message (docs/error-model.md): the exact stderr line of a
  few representative errors (analyze with a bad --tau, truncate with a bad
  --rank, info on a folder that does not exist).
- Files of other formats (GGUF, a PyTorch ZIP, a Git LFS pointer) given to
  info / analyze / truncate, alone or in a folder, are named as such,
  instead of "cannot open config.json" or an absurd safetensors header
  length; a folder without config.json says what a model folder holds and
  lists what it holds.
- `fasvd info` on one shard of a sharded checkpoint (the demo model) reads
  the whole checkpoint through the folder's index: nothing missing, the
  same description as for the folder.
"""
import os
import shutil
import struct
import sys
import tempfile

from clitap import finish, report, run


def check_exact(name, args, status, line):
    """The command fails with `status` and exactly `line` on stderr."""
    rc, out, err = run(*args)
    report(rc == status and err == line + "\n", name,
           "rc=%d (want %d)\nstderr=%r\nwant  =%r" % (rc, status, err, line + "\n"))


def check_error(name, args, status, words, absent=()):
    """One line on stderr holding every word and none of `absent`."""
    rc, out, err = run(*args)
    lines = err.splitlines()
    ok = (rc == status and len(lines) == 1 and lines[0].startswith("fasvd: ")
          and all(w in err for w in words) and not any(a in err for a in absent))
    report(ok, name, "rc=%d stderr=%r" % (rc, err))


def gguf_bytes():
    """The start of a GGUF v3 file: magic, version, tensor and KV counts.
    Its first 8 bytes read as a safetensors header length are absurd."""
    return b"GGUF" + struct.pack("<IQQ", 3, 291, 24) + b"\0" * 64


def main():
    tmp = tempfile.mkdtemp(prefix="fasvd-cli-msg-")
    try:
        rc, out, err = run("demo", "--dir", os.path.join(tmp, "demo"))
        report(rc == 0, "fasvd demo writes the sharded demo model", err)
        model = os.path.join(tmp, "demo", "model")

        # ------------------------------------------- one prefix per message
        check_exact("analyze --tau 2: exact message",
                    ["analyze", model, "-o", os.path.join(tmp, "s.safetensors"), "--tau", "2"],
                    2, "fasvd: --tau: '2' is not a number in [0, 1] (a fraction of squared "
                    "Frobenius energy) (see 'fasvd help analyze')")
        check_exact("truncate --rank -3: exact message",
                    ["truncate", model, "-o", os.path.join(tmp, "lr"), "--rank", "-3"],
                    2, "fasvd: --rank: -3 must be >= 0 (see 'fasvd help truncate')")
        check_exact("truncate --rank abc: exact message",
                    ["truncate", model, "-o", os.path.join(tmp, "lr"), "--rank", "abc"],
                    2, "fasvd: --rank: 'abc' is not an integer (see 'fasvd help truncate')")
        nope = os.path.join(tmp, "nope")
        check_exact("info on a missing folder: exact message", ["info", nope], 20,
                    "fasvd: %s: No such file or directory" % nope)
        report(not os.path.exists(os.path.join(tmp, "lr")), "nothing written by the usage errors")

        # ------------------------------------------------ other formats
        only = os.path.join(tmp, "gguf-only")
        os.mkdir(only)
        gguf = os.path.join(only, "model-Q4_K_M.gguf")
        with open(gguf, "wb") as f:
            f.write(gguf_bytes())
        # GGUF is read as a model: a truncated one is named with the cause.
        named = [gguf + ": 291 tensors and 24 metadata entries cannot fit", "truncated"]
        wrong = ["absurd", "cannot open", "safetensors"]
        check_error("info FILE.gguf reads GGUF: a truncated file is named",
                    ["info", gguf], 14, named, wrong)
        check_error("analyze FILE.gguf reads GGUF",
                    ["analyze", gguf, "-o", os.path.join(tmp, "g.safetensors")], 14, named, wrong)
        check_error("svdvals FILE.gguf reads GGUF", ["svdvals", gguf, "x"], 14, named, wrong)
        check_error("truncate FILE.gguf reads GGUF",
                    ["truncate", gguf, "-o", os.path.join(tmp, "g-lr"), "--rank", "2"], 14,
                    named, wrong)
        check_error("info on a folder holding one GGUF model reads it",
                    ["info", only], 14, named, wrong)
        check_error("analyze on a folder holding one GGUF model reads it",
                    ["analyze", only, "-o", os.path.join(tmp, "g.safetensors")], 14, named)
        report(not os.path.exists(os.path.join(tmp, "g.safetensors"))
               and not os.path.exists(os.path.join(tmp, "g-lr")), "nothing written for GGUF")

        pt = os.path.join(tmp, "pytorch")
        os.mkdir(pt)
        shutil.copy(os.path.join(model, "config.json"), pt)
        with open(os.path.join(pt, "pytorch_model.bin"), "wb") as f:
            f.write(b"PK\x03\x04" + b"\0" * 60)
        check_error("a PyTorch folder: no safetensors checkpoint, the .bin named",
                    ["info", pt], 20,
                    ["no safetensors checkpoint", "pytorch_model.bin (a ZIP archive)"])
        lfs = os.path.join(tmp, "lfs")
        os.mkdir(lfs)
        shutil.copy(os.path.join(model, "config.json"), lfs)
        with open(os.path.join(lfs, "model.safetensors"), "w") as f:
            f.write("version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 12\n")
        check_error("a Git LFS pointer instead of the checkpoint", ["info", lfs], 14,
                    ["model.safetensors is a Git LFS pointer", "git lfs pull"])

        # ------------------------------------------ info on one shard
        rc, whole, err = run("info", model, "--json")
        shard = os.path.join(model, "model-00002-of-00003.safetensors")
        rc2, one, err2 = run("info", shard, "--json")
        report(rc == 0 and rc2 == 0 and one == whole and '"tensors_missing": 0' in one,
               "info on one shard describes the whole sharded checkpoint",
               err + err2 + one[:2000])
        rc, out, err = run("info", shard)
        report(rc == 0 and "0 missing" in out and "checkpoint   3 files" in out,
               "info on one shard (text): 3 files, 0 missing", out + err)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return finish()


if __name__ == "__main__":
    sys.exit(main())

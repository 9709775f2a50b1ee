"""Calibration statistics for activation-aware truncation (SVD-LLM's
whitening; docs/truncation.md): the Gram X^T X of the inputs X that each
Linear layer of a PyTorch model sees over given token sequences, written as
the calibration file that ``fasvd truncate --calibration`` and
:func:`fasvd.truncate` read.

File format: safetensors, one 2-D tensor per Linear module, named
``<module>.input_gram`` where ``<module>.weight`` is the module's weight in
the checkpoint (e.g. ``model.layers.0.self_attn.q_proj.input_gram``),
[in_features, in_features], the sum over every token of x x^T (any scale
works: whitening is invariant to it); the file's ``__metadata__`` says
``"format": "fasvd.calibration"``, the number of ``sequences`` and
``tokens``.
"""

import json
import os
import struct

import numpy as np

__all__ = ["collect", "write_grams"]

_ST_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64"}


def write_grams(path, grams, metadata=None, dtype="f32"):
    """Write ``grams`` ({name: square array}) as a safetensors file (the
    format above; ``dtype`` "f32" or "f64")."""
    dt = np.dtype(np.float32 if dtype in ("f32", "float32") else np.float64)
    header, blobs, off = {}, [], 0
    for name in sorted(grams):
        a = np.ascontiguousarray(grams[name], dtype=dt)
        if a.ndim != 2 or a.shape[0] != a.shape[1]:
            raise ValueError("%s: a Gram is square, not %s" % (name, a.shape))
        b = a.tobytes()
        header[name] = {"dtype": _ST_DTYPES[dt], "shape": list(a.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {k: str(v) for k, v in (metadata or {}).items()}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def collect(model, token_sequences, out=None, modules=None, dtype="f32"):
    """Run ``model`` (a PyTorch module called as ``model(input_ids=ids)``,
    e.g. a transformers model) on each token sequence (lists or 1-D tensors
    of token ids, one batch of one each) under ``torch.no_grad()``, with
    forward hooks accumulating, for every ``torch.nn.Linear`` module (or
    those whose name is in ``modules``), G = sum over tokens of x x^T in
    float64. Writes ``out`` (the calibration file) when given; returns
    ``{"<module>.input_gram": G}`` (numpy float64)."""
    import torch

    grams, hooks = {}, []

    def hook(name):
        def f(mod, inputs, output):
            x = inputs[0].detach().to(torch.float64).reshape(-1, inputs[0].shape[-1])
            g = (x.T @ x).cpu().numpy()
            key = name + ".input_gram"
            grams[key] = grams[key] + g if key in grams else g
        return f

    want = set(modules) if modules is not None else None
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and (want is None or name in want):
            hooks.append(mod.register_forward_hook(hook(name)))
    if want is not None:
        missing = want - {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
        if missing:
            for h in hooks:
                h.remove()
            raise ValueError("no Linear module named %s" % sorted(missing)[:4])
    n_seq = n_tok = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for seq in token_sequences:
                ids = torch.as_tensor(seq, dtype=torch.long).reshape(1, -1)
                model(input_ids=ids)
                n_seq += 1
                n_tok += ids.shape[1]
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if out is not None:
        write_grams(os.fspath(out), grams, {"format": "fasvd.calibration", "sequences": n_seq,
                                            "tokens": n_tok}, dtype)
    return grams

"""Loader of a low-rank checkpoint written by `fasvd truncate --format factors`
(libfasvd; docs/truncation.md). SPDX-License-Identifier: MIT

Load it with the transformers Auto classes and trust_remote_code=True:

    AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)

The original architecture (config.json: fasvd_lowrank.base_model_type and
base_architectures) is built from its own configuration; the nn.Linear (or
GPT-2 Conv1D) of every replaced weight W becomes a FasvdLowRankLinear that
holds the factors (W ~= A @ B; per head, rows of head k ~= A[k] @ B[k]) and
never materialises W; every tensor of the folder is then loaded, and a
missing or unexpected tensor is an error (never a random initialisation).
"""
import json
import os
import re

import torch
from torch import nn
import transformers
from transformers import PretrainedConfig

_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "F64": torch.float64}


class FasvdLowRankConfig(PretrainedConfig):
    """The original configuration, under model_type "fasvd_lowrank" so that
    nothing loads the factors as the dense architecture by mistake."""

    model_type = "fasvd_lowrank"

    def base_config(self):
        """The configuration of the original architecture."""
        sec = getattr(self, "fasvd_lowrank", None) or {}
        d = self.to_dict()
        for k in ("auto_map", "fasvd_lowrank", "model_type", "transformers_version",
                  "_name_or_path"):
            d.pop(k, None)
        d["architectures"] = list(sec.get("base_architectures") or [])
        return transformers.AutoConfig.for_model(sec["base_model_type"], **d)


class FasvdLowRankLinear(nn.Module):
    """y = x W^T + b (Linear) or x W + b (Conv1D, transposed) with W = A @ B
    applied as two products: A [rows, inner] and B [inner, cols], or per head
    A [h, rows/h, inner] and B [h, inner, cols]."""

    def __init__(self, rows, cols, inner, heads, dtype, bias, transposed):
        super().__init__()
        self.rows, self.cols, self.heads, self.transposed = rows, cols, heads, transposed
        sa = (heads, rows // heads, inner) if heads > 1 else (rows, inner)
        sb = (heads, inner, cols) if heads > 1 else (inner, cols)
        self.A = nn.Parameter(torch.zeros(sa, dtype=dtype))
        self.B = nn.Parameter(torch.zeros(sb, dtype=dtype))
        self.bias = bias

    @property
    def weight(self):
        """W = A @ B, materialised (for code that reads .weight)."""
        return (self.A @ self.B).reshape(self.rows, self.cols)

    def forward(self, x):
        if self.transposed:  # Conv1D: W [in = rows, out = cols], y = x @ A @ B
            y = (x @ self.A) @ self.B
        elif self.heads == 1:
            y = (x @ self.B.transpose(0, 1)) @ self.A.transpose(0, 1)
        else:
            t = torch.einsum("...c,hrc->...hr", x, self.B)
            y = torch.einsum("...hr,hor->...ho", t, self.A).reshape(*x.shape[:-1], self.rows)
        return y + self.bias if self.bias is not None else y


def _state_dict(folder):
    from safetensors.torch import load_file
    names = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
    if not names:
        raise OSError("%s: no .safetensors file" % folder)
    sd = {}
    for n in names:
        sd.update(load_file(os.path.join(folder, n)))
    return sd


def _replace(model, sec, prefix_map):
    """Every replaced weight's module becomes a FasvdLowRankLinear."""
    for name, e in (sec.get("tensors") or {}).items():
        mod_name = prefix_map(name)
        if not mod_name.endswith(".weight"):
            raise ValueError("fasvd_lowrank: tensor %r is not a module's weight" % name)
        path = mod_name[:-len(".weight")]
        old = model.get_submodule(path)
        transposed = type(old).__name__ == "Conv1D"
        if not (isinstance(old, nn.Linear) or transposed):
            raise ValueError("fasvd_lowrank: %s is a %s, not a Linear" % (path, type(old).__name__))
        rows, cols = e["shape"]
        new = FasvdLowRankLinear(rows, cols, int(e["inner"]), int(e.get("heads", 1)),
                                 _DTYPES[e["dtype"]], old.bias, transposed)
        parent, _, leaf = path.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, new)


def _prefix_map(model, keys):
    """Checkpoint name -> model name: the same, or with the base model's
    prefix added or removed (AutoModel on a ...ForCausalLM checkpoint)."""
    own = set(model.state_dict().keys())
    pre = getattr(model, "base_model_prefix", "") or ""

    def f(k):
        if pre and k.startswith(pre + ".") and k not in own and \
                not any(o.startswith(pre + ".") for o in own):
            return k[len(pre) + 1:]
        if pre and (pre + "." + k) in own:
            return pre + "." + k
        return k
    return f


def load(folder, auto_class, config=None, torch_dtype=None, **kwargs):
    """The model of the folder with its low-rank modules, in eval mode."""
    if not os.path.isdir(folder):
        from transformers.utils import cached_file
        folder = os.path.dirname(cached_file(folder, "config.json", **{
            k: v for k, v in kwargs.items() if k in ("revision", "cache_dir", "token")}))
    if config is None:
        with open(os.path.join(folder, "config.json")) as f:
            config = FasvdLowRankConfig(**json.load(f))
    sec = config.fasvd_lowrank
    if sec.get("format") != "fasvd.lowrank" or sec.get("storage", "factors") != "factors":
        raise ValueError("%s: not a fasvd low-rank factor checkpoint" % folder)
    model = auto_class.from_config(config.base_config())
    sd = _state_dict(folder)
    pm = _prefix_map(model, sd.keys())
    _replace(model, sec, pm)
    fixed = {}
    for k, v in sd.items():
        if k[-2:] in (".A", ".B") and k[:-2] in sec["tensors"]:
            fixed[pm(k[:-2])[:-len(".weight")] + k[-2:]] = v
        else:
            fixed[pm(k)] = v
    missing, unexpected = model.load_state_dict(fixed, strict=False)
    # as transformers: tied weights may be absent; buffers the model does not
    # persist (position_ids of older checkpoints) and its own patterns are
    # ignored
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    buffers = {k for k, _ in model.named_buffers()}
    pats = [re.compile(p) for p in
            (getattr(model, "_keys_to_ignore_on_load_unexpected", None) or [])]
    missing = [k for k in missing if k not in tied]
    unexpected = [k for k in unexpected
                  if k not in buffers and not any(p.search(k) for p in pats)]
    if missing or unexpected:
        raise ValueError("%s: tensors missing %s, unexpected %s" % (folder, missing[:8],
                                                                    unexpected[:8]))
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    if torch_dtype not in (None, "auto"):
        model = model.to(torch_dtype)
    elif torch_dtype is None:
        model = model.to(torch.float32)
    return model.eval()


def _loader(auto_name):
    class Loader:
        config_class = FasvdLowRankConfig

        @classmethod
        def register_for_auto_class(cls, auto_class="AutoModel"):
            """The Auto classes register remote code: nothing to keep."""

        @classmethod
        def from_pretrained(cls, folder, *args, config=None, **kwargs):
            return load(os.fspath(folder), getattr(transformers, auto_name), config=config,
                        **kwargs)
    Loader.__name__ = Loader.__qualname__ = "FasvdLowRank" + auto_name[len("AutoModel"):]
    return Loader


FasvdLowRankModel = _loader("AutoModel")
FasvdLowRankForCausalLM = _loader("AutoModelForCausalLM")
FasvdLowRankForMaskedLM = _loader("AutoModelForMaskedLM")
FasvdLowRankForSequenceClassification = _loader("AutoModelForSequenceClassification")
FasvdLowRankForTokenClassification = _loader("AutoModelForTokenClassification")
FasvdLowRankForQuestionAnswering = _loader("AutoModelForQuestionAnswering")

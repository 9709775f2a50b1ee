"""Many models in one run: fasvd.survey (fasvd_survey, analyze.h)."""

import ctypes
import json
import os
import sys

from . import _lib as L
from . import errors
from ._core import get_context
from .model import _call_cancellable, _parse_layers, analysis_opts

__all__ = ["survey", "survey_name", "Survey"]


def _paths(models):
    if isinstance(models, (str, bytes, os.PathLike)):
        models = [models]
    paths = [os.fsencode(m) for m in models]
    if not paths:
        raise errors.InvalidArgument("survey: no model")
    return paths, (ctypes.c_char_p * len(paths))(*paths)


def survey_name(models, index):
    """The NAME :func:`survey` gives ``models[index]`` (its files
    NAME.spectra.safetensors, NAME.json, NAME.csv and its ``model`` column):
    the model folder's name, with parent folders added until the names of
    the list differ. Raises InvalidArgument (a path listed twice, an index
    outside the list)."""
    paths, arr = _paths(models)
    buf = ctypes.create_string_buffer(512)
    L.call("fasvd_survey_name", buf, len(buf), arr, len(paths), int(index))
    return buf.value.decode("utf-8", "replace")


class Survey:
    """What :func:`survey` wrote into ``out_dir``: ``csv_path`` (survey.csv,
    the tidy table across all models) and ``json_path`` (survey.json), and
    ``models``, one dict per model of this run's last event for it (index,
    model, name, spectra, state "done" / "failed", steps_total,
    steps_resumed, elapsed_s, error). :meth:`table` reads the rows."""

    def __init__(self, out_dir, models):
        self.out_dir = os.fspath(out_dir)
        self.csv_path = os.path.join(self.out_dir, "survey.csv")
        self.json_path = os.path.join(self.out_dir, "survey.json")
        self.models = models

    def document(self):
        """survey.json as a dict (format "fasvd.survey": the settings,
        ``models`` with their paths and files, ``matrices`` the rows)."""
        with open(self.json_path, encoding="utf-8") as f:
            return json.load(f)

    def table(self):
        """The rows of the cross-model table (survey.json's ``matrices``), a
        dict each: model, layer, kind, name, head (None for stacks and
        subspaces), rows, cols, max_rank, the metrics, effective_rank
        ({τ as written: rank})."""
        return self.document()["matrices"]

    def __repr__(self):
        failed = sum(m.get("state") == "failed" for m in self.models)
        return "<fasvd.Survey %s: %d models%s>" % (
            self.out_dir, len(self.models), ", %d failed" % failed if failed else "")


def _event_dict(e):
    return {"state": L.decode(e.state), "index": e.index, "count": e.count,
            "model": L.decode(e.model), "name": L.decode(e.name),
            "spectra": L.decode(e.spectra), "steps_total": e.steps_total,
            "steps_resumed": e.steps_resumed, "elapsed_s": e.elapsed_s,
            "error": L.decode(e.error)}


def _print_event(d):
    if d["state"] != "start":
        sys.stderr.write("[%d/%d] %s (%s): %s, %d steps (%d resumed) in %.1f s%s\n" % (
            d["index"] + 1, d["count"], d["name"], d["model"], d["state"], d["steps_total"],
            d["steps_resumed"], d["elapsed_s"], ": " + d["error"] if d["error"] else ""))


def survey(models, out_dir, layers=None, tau=(0.01, 0.001), fold_norms=True,
           stack_norm="sigma1", tensors=(), compute="f32", force=False, threads=None,
           progress=None):
    """Analyse every model of ``models`` (model folders or files, as
    :func:`fasvd.open` takes) with the same options into the folder
    ``out_dir``, as ``fasvd survey``: per model NAME.spectra.safetensors
    (byte-identical to :meth:`Model.analyze` with the same options and
    threads), NAME.json and NAME.csv, then survey.csv and survey.json, the
    table across all models (NAME: :func:`survey_name`). Returns a
    :class:`Survey`.

    ``layers`` (None, "A-B" / "A" / "A-", a range or a (first, last) pair;
    no negative indexes: the models may differ), ``tau``, ``fold_norms``,
    ``stack_norm``, ``tensors``, ``compute``: as :meth:`Model.analyze`.
    Resumable: run again after a kill and it skips the models done and
    continues the one it was in; ``force`` starts every model afresh.
    ``threads``: worker threads (default: all CPUs). ``progress``: None,
    True (a line per model on stderr) or a callable receiving a dict per
    model event (state "start", "done" or "failed", index, count, model,
    name, spectra, steps_total, steps_resumed, elapsed_s, error); returning
    True cancels (Cancelled; Ctrl-C too, after the current layer).

    A model that fails does not stop the others: the tables cover the models
    done, and the error of the first failure is raised once all have run,
    with the :class:`Survey` as its ``survey`` attribute. Raises
    InvalidArgument (no model, a path listed twice, bad options),
    fasvd.IOError (``out_dir`` cannot be written), or a model's error.
    """
    paths, arr = _paths(models)
    o, keep = analysis_opts(_parse_layers(layers, None), tau, fold_norms, stack_norm,
                            tensors, compute)
    so = L.struct_init(L.SurveyOpts)
    so.analyze = ctypes.pointer(o)
    so.force = 1 if force else 0
    if progress is True:
        progress = _print_event
    elif progress is not None and not callable(progress):
        raise errors.InvalidArgument("progress must be None, True or a callable")
    state = {"exc": None}
    last = {}

    def on_model(user, ep):
        try:
            d = _event_dict(L.struct_from_library(ep, L.SurveyEvent, "fasvd_survey"))
            if d["state"] != "start":
                last[d["index"]] = d
            cancel = progress is not None and progress(d) is True
            return 1 if cancel or state["exc"] is not None else 0
        except BaseException as e:  # KeyboardInterrupt included: cancel, re-raise later
            state["exc"] = e
            return 1

    def within_model(user, p):  # Ctrl-C stops after the current layer
        return 1 if state["exc"] is not None else 0

    fn, pfn = L.SURVEY_FN(on_model), L.PROGRESS_FN(within_model)
    so.progress, o.progress = fn, pfn
    result = Survey(out_dir, [])
    try:
        _call_cancellable(state, "fasvd_survey", get_context(threads), arr, len(paths),
                          os.fsencode(out_dir), ctypes.byref(so))
    except errors.Error as e:
        e.survey = result
        raise
    finally:
        result.models = [last[i] for i in sorted(last)]
        del fn, pfn, keep
    return result

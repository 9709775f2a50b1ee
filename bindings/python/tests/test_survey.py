"""fasvd.survey(): many models in one run, as `fasvd survey` — the same
spectra files and the same cross-model table (stories260K and a synthetic
DeepSeek-V3 model), resumable, a failing model reported after the others."""

import os
import shutil
import subprocess

import pytest

from support import cli_path, require_library, write_fixture

require_library()

import fasvd  # noqa: E402

STORIES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "tests", "data",
                       "stories260K")


def read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture
def models(tmp_path):
    return [os.path.abspath(STORIES), write_fixture(str(tmp_path / "dsv3"), n_layers=2)]


def test_survey_matches_the_cli(tmp_path, models):
    cli = cli_path()
    if cli is None:
        pytest.skip("no fasvd tool in the build tree (set FASVD_CLI)")
    res = fasvd.survey(models, tmp_path / "py", threads=1, tau=(0.01, 0.001))
    assert [m["name"] for m in res.models] == ["stories260K", "dsv3"]
    assert all(m["state"] == "done" and m["steps_resumed"] == 0 for m in res.models)
    listing = tmp_path / "list"
    listing.write_text("# two models\n%s\n%s\n" % tuple(models))
    subprocess.run([cli, "survey", str(listing), "-o", str(tmp_path / "cli"), "-j", "1", "-q",
                    "--tau", "0.01,0.001"], check=True, capture_output=True)
    for f in ("survey.csv", "stories260K.spectra.safetensors", "dsv3.spectra.safetensors",
              "dsv3.csv"):
        assert read(tmp_path / "py" / f) == read(tmp_path / "cli" / f), f
    rows = res.table()
    with open(res.csv_path) as f:
        lines = f.read().splitlines()
    assert len(rows) == len(lines) - 1 and lines[0].startswith("model,layer,kind,name,head")
    assert {r["model"] for r in rows} == {"stories260K", "dsv3"}
    first = lines[1].split(",")
    assert (rows[0]["model"], rows[0]["layer"], rows[0]["kind"]) == (
        first[0], int(first[1]), first[2])
    doc = res.document()
    assert doc["format"] == "fasvd.survey" and doc["taus"] == [0.01, 0.001]
    # the spectra file is the one Model.analyze writes
    with fasvd.open(models[1]) as m:
        m.analyze(out=tmp_path / "one.st", threads=1)
    assert read(tmp_path / "one.st") == read(tmp_path / "py" / "dsv3.spectra.safetensors")


def test_survey_resumes_and_reports_events(tmp_path, models):
    out = tmp_path / "s"
    fasvd.survey(models, out, threads=1)
    table = read(out / "survey.csv")
    seen = []
    res = fasvd.survey(models, out, threads=1, progress=seen.append)
    assert [e["state"] for e in seen] == ["start", "done", "start", "done"]
    assert all(m["steps_resumed"] == m["steps_total"] > 0 for m in res.models)
    assert read(out / "survey.csv") == table
    with pytest.raises(fasvd.Cancelled):
        fasvd.survey(models, tmp_path / "c", threads=1, force=True,
                     progress=lambda e: e["state"] == "done")


def test_a_failing_model_does_not_stop_the_others(tmp_path, models):
    broken = tmp_path / "broken"
    shutil.copytree(models[1], broken)
    os.remove(broken / "config.json")
    with pytest.raises(fasvd.Error) as ei:
        fasvd.survey([str(broken), models[0]], tmp_path / "s", threads=1)
    states = {m["name"]: m["state"] for m in ei.value.survey.models}
    assert states == {"broken": "failed", "stories260K": "done"}
    assert ei.value.survey.models[0]["error"]
    rows = ei.value.survey.table()
    assert rows and {r["model"] for r in rows} == {"stories260K"}


def test_names_and_bad_arguments(tmp_path, models):
    a, b = str(tmp_path / "a" / "ck"), str(tmp_path / "b" / "ck")
    assert [fasvd.survey_name([a, b], i) for i in (0, 1)] == ["a_ck", "b_ck"]
    assert fasvd.survey_name(models, 0) == "stories260K"
    with pytest.raises(fasvd.InvalidArgument):
        fasvd.survey_name([a, a], 0)
    with pytest.raises(fasvd.InvalidArgument):
        fasvd.survey([], tmp_path / "x")
    with pytest.raises(fasvd.InvalidArgument):
        fasvd.survey([models[0], models[0]], tmp_path / "x")
    with pytest.raises(fasvd.InvalidArgument, match="negative"):
        fasvd.survey(models, tmp_path / "x", layers=-1)
    res = fasvd.survey(models, tmp_path / "l", layers="0-0", threads=1)
    assert {r["layer"] for r in res.table()} == {0}

"""The JSON summary v1 of both commands against its shipped schema; console, help and hints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run
from dials_mdxbg.output.json_summary import SCHEMA_FILE, strict

jsonschema = pytest.importorskip("jsonschema")  # Debian's python3-jsonschema

IM, BN = "dials.mdx_import", "dials.mdx_bin_background"
QUICK = ["output.plot=None", "output.html=None"]


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture(scope="module")
def series(small_sweep, tmp_path_factory) -> Path:
    """dials.mdx_import of ``small_sweep``, with its default summary beside it."""
    work = tmp_path_factory.mktemp("json_series")
    proc = run([IM, small_sweep, "output.data=s.nxs"], cwd=work)
    assert proc.stdout.strip().splitlines()[-1].startswith("done in ")
    return work / "s.nxs"


def test_the_import_summary_is_written_beside_the_series(series, small_sweep, validator):
    summary = json.loads(series.with_suffix(".json").read_text())
    validator.validate(summary)
    assert summary["schema_version"] == 1 and summary["status"] == "ok"
    assert summary["program"] == IM and summary["warnings"] == []
    assert summary["inputs"] == [str(small_sweep)] and summary["verdict"] is None
    (one,) = summary["runs"]
    assert one["input"] == str(small_sweep) and one["output"] == "s.nxs"
    assert isinstance(one["seconds"], float) and isinstance(summary["seconds"], float)
    assert one["frames"] == 7 and one["imageset"] is None  # one imageset: no index


OPTION_SETS = {
    "series": [],
    "one_step": [],
    "diagnostics": ["diagnostics=True"],
    "fill_empty": ["fill_empty=True", "valid_range=0,12"],
    "auto": ["bins=auto", "auto.frames=2,3", "auto.pixels=20,40"],
    "clipped": ["estimator=clipped_mean", "output.html=Auto"],
}


@pytest.mark.parametrize("name", OPTION_SETS)
def test_binning_summaries_validate_with_the_same_keys(
    name, series, small_sweep, validator, tmp_path
):
    source = small_sweep if name == "one_step" else series
    args = [BN, source, "bins=2,20,20", *QUICK, *OPTION_SETS[name], "output.binned=m.nxs"]
    run(args, cwd=tmp_path)
    summary = json.loads((tmp_path / "m.json").read_text())
    validator.validate(summary)
    (one,) = summary["runs"]
    assert summary["inputs"] == [str(source)] and one["input"] == str(source)
    assert one["input_kind"] == ("experiments" if name == "one_step" else "image_series")
    assert isinstance(one["seconds"], float) and isinstance(summary["seconds"], float)
    bins = one["bins"]
    if name == "auto":
        assert bins["how"] != "given" and len(bins["candidates"]) == 4
        assert sum(c["chosen"] for c in bins["candidates"]) == 1
        assert one["quality"]["heldout"] is not None and one["quality"]["nan_pixels"]["exact"]
    else:
        assert bins == {"chosen": [2, 20, 20], "how": "given", "distinguishable": None,
                        "candidates": None}  # fmt: skip
    if name == "diagnostics":
        assert one["quality"]["heldout"]["pixels"] > 0 and one["quality"]["nan_pixels"]["exact"]
    if name == "fill_empty":
        assert one["quality"]["filled_bins"] == one["empty_bins"] > 0
        assert one["quality"]["nan_pixels"] == {"count": 0, "exact": True}
    # Keys do not come and go with the options: the schema requires every key it allows.


def test_strict_json_has_no_nan():
    import numpy as np

    value = strict({"a": float("nan"), "b": [np.float32(1.5), np.int64(2)], "c": Path("x")})
    assert value == {"a": None, "b": [1.5, 2], "c": "x"}
    json.dumps(value, allow_nan=False)


def test_warnings_are_listed(series, validator, tmp_path):
    run([BN, series, *QUICK], cwd=tmp_path)  # 7 frames in one phi bin
    summary = json.loads((tmp_path / "binned.json").read_text())
    validator.validate(summary)
    assert [w["code"] for w in summary["warnings"]] == ["single_phi_bin"]
    assert summary["warnings"][0]["message"].startswith("the map has a single phi bin")


# --------------------------------------------------------------------------- console and help


def test_console_names_passes_has_no_reprs_and_ends_with_done(small_sweep, tmp_path):
    proc = run([BN, small_sweep, "bins=2,20,20", "estimator=clipped_mean", *QUICK], cwd=tmp_path)
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("done in ") and lines[-1].endswith(" s")
    assert any(line.strip().startswith("binning: frames 7/7") for line in lines)
    assert any(line.strip().startswith("binning: frames, pass 2 7/7") for line in lines)
    assert not [line for line in lines if "{'" in line or "':" in line]  # no dict reprs
    assert any(line.endswith("with bins=2,20,20") for line in lines)  # not (2, 20, 20)
    assert any(line.startswith("Background map of 4 x 10 x 25 (phi, y, x) bins") for line in lines)


def test_an_error_is_printed_once(small_sweep, tmp_path):
    proc = run([BN, small_sweep, "bins=0,20,20"], cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "bins must be" in proc.stderr
    assert "bins must be" not in proc.stdout


@pytest.mark.parametrize("command", [IM, BN])
def test_help_levels_add_parameters(command, tmp_path):
    shown = {e: run([command, "-c", "-e", str(e)], cwd=tmp_path).stdout for e in (0, 1, 2)}
    assert "n_sigma" not in shown[0] and "walltime" not in shown[0] and "nproc" in shown[0]
    assert "walltime" not in shown[1] and "walltime" in shown[2]
    assert len(shown[0]) < len(shown[1]) < len(shown[2])
    if command == BN:
        assert "n_sigma" in shown[1] and "fail_if_not_ready" in shown[0]
        helped = run([command, "-c", "-e", "1", "-a", "1"], cwd=tmp_path).stdout
        assert "zingers and stray Bragg" in helped and "Give a name per experiment" in helped
    else:
        assert "layout" not in shown[0] and "layout" in shown[1]


def test_spaced_values_get_a_one_line_hint(small_sweep, tmp_path):
    proc = run([BN, small_sweep, "bins=10", "20", "20"], cwd=tmp_path, check=False)
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0
    assert "write bins=10,20,20" in proc.stderr and "no such file" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_schema_requires_every_key_it_allows():
    """So a summary that validates has exactly the documented keys, whatever the options."""
    schema = json.loads(SCHEMA_FILE.read_text())
    objects = [schema, *schema["$defs"].values()]
    objects += [p for d in schema["$defs"].values() for p in d.get("properties", {}).values()]
    for node in objects:
        if node.get("additionalProperties") is False:
            assert set(node["required"]) == set(node["properties"]), node.get("title", node)
    documented = (Path(__file__).parents[1] / "docs" / "json.md").read_text()
    for name in schema["properties"]:
        assert f"`{name}`" in documented, name
    for name in schema["$defs"]["binning_run"]["properties"]:
        assert f"`{name}`" in documented, name

"""The public job functions, called in-process as a Python user (or pipeline) would."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dxtbx.model.experiment_list import ExperimentList, ExperimentListFactory

from conftest import read_binned, read_series
from dials_mdxbg.binning.phil import BinOptions
from dials_mdxbg.command_line import mdx_bin_background, mdx_import
from dials_mdxbg.errors import InputError
from dials_mdxbg.jobs.bin_background import BinSource, bin_background, make_background
from dials_mdxbg.jobs.import_sweep import import_sweep

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"  # README links to it


def test_import_sweep_equals_the_command(sweep, our_import, tmp_path):
    params = mdx_import.phil_scope.extract()
    params.output.data = str(tmp_path / "api.nxs")
    params.chunks = (5, 211, 493)
    summary = import_sweep(ExperimentListFactory.from_json_file(str(sweep)), params)
    assert summary.outputs == [tmp_path / "api.nxs"]
    assert summary.to_dict()["frames"] == 12
    ours, cli = read_series(tmp_path / "api.nxs"), read_series(our_import)
    for key in cli:
        assert np.array_equal(ours[key], cli[key]), key


def test_make_background_equals_the_command(sweep, our_import, tmp_path):
    params = mdx_bin_background.phil_scope.extract()
    params.output.binned = str(tmp_path / "api.nxs")
    params.output.plot = None
    params.valid_range = (0, 200)
    summary = make_background(str(our_import), None, params).to_dict()
    assert summary["map_shape"] == [2, 21, 74] and summary["frames"] == 12
    experiments = ExperimentListFactory.from_json_file(str(sweep))
    options = BinOptions(valid_range=(0, 200))
    direct = bin_background(BinSource.from_experiments(experiments), options)
    written = read_binned(tmp_path / "api.nxs")
    assert np.array_equal(written["signal"], direct.signal, equal_nan=True)
    assert np.array_equal(written["pixel_count"], direct.count)


def test_bad_parameters_raise_one_line_input_errors(our_import, tmp_path):
    params = mdx_bin_background.phil_scope.extract()
    params.bins = (0, 20, 20)
    with pytest.raises(InputError, match="bins must be three positive integers"):
        make_background(str(our_import), None, params)
    params = mdx_import.phil_scope.extract()
    with pytest.raises(InputError, match="no experiments given"):
        import_sweep(ExperimentList(), params)


def test_documented_python_api_example_runs(sweep, tmp_path):
    text = API_DOC.read_text()
    block = re.search(r"<!-- python-api-example -->\s*```python\n(.*?)```", text, re.S)
    assert block, "docs/api.md has no Python API example"
    (tmp_path / "background.expt").symlink_to(sweep)
    out = subprocess.run(
        [sys.executable, "-c", block.group(1)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "bkg_data.nxs").is_file()
    assert "(2, 21, 74)" in out.stdout

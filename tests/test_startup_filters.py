"""hdf5plugin is loaded before DIALS' parser reads files, and not for image series only."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dials_mdxbg.util.startup import names_files


def test_which_command_lines_name_files(tmp_path):
    there = tmp_path / "x.expt"
    there.write_text("{}")
    assert not names_files(["valid_range=0,200", "mp.nproc=2", "-v", "bins=10,20,20"])
    assert not names_files([f"output.binned={there}", f"output.log={there}"])  # outputs
    assert names_files([str(there)])
    assert names_files(["insulin_background.phil"])  # a preset or a PHIL file
    assert names_files([f"mask={there}"])
    assert names_files([f"input.experiments={there}"])


RUN = """
import sys
from dials_mdxbg.command_line.mdx_bin_background import run
run(sys.argv[1:])
print("hdf5plugin" in sys.modules)
"""


def test_binning_a_series_does_not_load_hdf5plugin(our_import, tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", RUN, str(our_import), "valid_range=0,200",
         f"output.binned={tmp_path / 'b.nxs'}", "output.html=None", "output.plot=None"],
        capture_output=True, text=True, cwd=tmp_path, check=True,
    )  # fmt: skip
    assert out.stdout.strip().splitlines()[-1] == "False"
    assert (tmp_path / "b.nxs").is_file()


READ = """
import sys, h5py
from dials_mdxbg.util.startup import load_filters_for
with h5py.File(sys.argv[1], "r") as f:
    d = f["data"]
    assert "hdf5plugin" not in sys.modules
    load_filters_for(d)
    print("hdf5plugin" in sys.modules, int(d[...].sum()))
"""


def test_a_series_dataset_with_a_plugin_filter_loads_it(tmp_path):
    pytest.importorskip("hdf5plugin")
    path = tmp_path / "b.h5"
    write = (
        "import sys, h5py, hdf5plugin, numpy as np\n"
        "with h5py.File(sys.argv[1], 'w') as f:\n"
        "    f.create_dataset('data', data=np.arange(60, dtype=np.int32).reshape(3, 4, 5),\n"
        "                     chunks=(1, 4, 5), **hdf5plugin.Bitshuffle(cname='lz4'))\n"
    )
    subprocess.run([sys.executable, "-c", write, str(path)], check=True)
    out = subprocess.run(
        [sys.executable, "-c", READ, str(path)], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", str(sum(range(60)))]

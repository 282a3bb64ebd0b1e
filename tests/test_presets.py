"""Presets by name: found among the shipped ones unless a file of that name is in the cwd."""

from __future__ import annotations

from pathlib import Path

from conftest import read_binned, run
from dials_mdxbg.util.presets import presets, presets_help, resolve_preset

PHIL = Path(__file__).resolve().parents[1] / "phil"


def test_every_phil_file_is_a_preset_by_any_of_its_names():
    names = sorted(p.name for p in PHIL.glob("*.phil"))
    assert sorted(presets()) == names and names
    for name in names:
        expected = presets()[name]
        assert expected.read_text() == (PHIL / name).read_text()
        for spelling in (name, name[: -len(".phil")], f"phil/{name}"):
            assert resolve_preset(spelling) == expected, spelling
    assert resolve_preset("nope.phil") is None
    assert resolve_preset("elsewhere/insulin_background.phil") is None
    text = presets_help()
    assert all(name in text for name in names)
    assert "mdx2 insulin tutorial" in text  # each preset's first comment line


def test_a_file_in_the_working_directory_wins(our_import, tmp_path):
    (tmp_path / "insulin_background.phil").write_text(
        "bins = 6 100 100\noutput.binned = mine.nxs\noutput.plot = None\n"
    )
    proc = run(["dials.mdx_bin_background", our_import, "insulin_background.phil"], cwd=tmp_path)
    assert "Preset" not in proc.stdout
    assert read_binned(tmp_path / "mine.nxs")["signal"].shape == (2, 5, 15)
    proc = run(["dials.mdx_bin_background", our_import, "insulin_background"], cwd=tmp_path)
    assert f"Preset insulin_background: {presets()['insulin_background.phil']}" in proc.stdout
    assert read_binned(tmp_path / "bkg_data_binned.nxs")["signal"].shape == (2, 21, 74)

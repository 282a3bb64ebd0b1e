"""Deferred imports: transparent to code that uses the library, absent otherwise."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import dials_mdxbg

#: The tree under test (first on the path: the installed copy may be another checkout).
SRC = Path(dials_mdxbg.__file__).resolve().parents[1]


def _python(code: str, cwd: Path | None = None) -> str:
    path = [str(cwd)] if cwd else []
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PYTHONPATH": ":".join([*path, str(SRC)]), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture
def heavy_package(tmp_path: Path) -> Path:
    """A package that records in a file each time one of its modules really runs."""
    pkg = tmp_path / "heavypkg"
    pkg.mkdir()
    log = tmp_path / "ran.txt"
    (pkg / "__init__.py").write_text(
        f"open({str(log)!r}, 'a').write('pkg\\n')\nVALUE = 42\n__version__ = '1.0'\n"
    )
    (pkg / "sub.py").write_text(
        f"open({str(log)!r}, 'a').write('sub\\n')\ndef f():\n    return 7\n"
    )
    (pkg / "other.py").write_text("X = 1\n")
    return tmp_path


def test_placeholders_load_on_first_real_use(heavy_package: Path):
    out = _python(
        """
        import inspect, importlib.util, sys
        from pathlib import Path
        from dials_mdxbg.util import lazy_imports
        print(lazy_imports.defer(("heavypkg", "heavypkg.sub", "notinstalled")))
        import heavypkg.sub                          # what dxtbx does: nothing runs yet
        inspect.stack()                              # libtbx walks every module's __file__
        assert importlib.util.find_spec("heavypkg") is not None
        print(Path("ran.txt").exists())
        print(heavypkg.sub.f(), heavypkg.VALUE, heavypkg.__version__)
        import heavypkg.other                        # a sibling still imports
        print(heavypkg.other.X, type(sys.modules["heavypkg"]).__name__)
        print(Path("ran.txt").read_text().split())
        """,
        cwd=heavy_package,
    ).split("\n")
    assert out[0] == "['heavypkg', 'heavypkg.sub']"
    assert out[1] == "False"
    assert out[2] == "7 42 1.0"
    assert out[3] == "1 module"
    assert out[4] == "['pkg', 'sub']"  # each module ran exactly once


def test_already_imported_modules_are_left_alone(heavy_package: Path):
    out = _python(
        """
        import heavypkg
        from dials_mdxbg.util import lazy_imports
        print(lazy_imports.defer(("heavypkg", "heavypkg.sub")))
        """,
        cwd=heavy_package,
    )
    assert out.strip() == "[]"


def test_commands_start_without_sklearn_pandas_and_dials_flex():
    pytest.importorskip("sklearn")
    out = _python(
        """
        import sys
        from dials_mdxbg.util.startup import prepare
        prepare()  # what every dials.mdx_* run() does first
        import dials.util.options
        heavy = ("sklearn.base", "scipy.stats", "pandas.core", "dials.array_family.flex_ext",
                 "cctbx.miller", "cctbx.maptbx", "cctbx.crystal.find_best_cell")
        print([m for m in heavy if m in sys.modules])
        import sklearn.cluster, pandas
        print(sklearn.cluster.DBSCAN.__name__, pandas.DataFrame({"a": [1]}).shape)
        from dials.array_family import flex  # what DIALS' parser holds: loads on first use
        table = flex.reflection_table()
        table["x"] = flex.double([1.5, 2.5])
        print(type(table).__name__, table.size(), type(dials.util.options.flex).__name__)
        from dxtbx.model import Crystal  # a crystal's symmetry loads cctbx.crystal
        crystal = Crystal((10, 0, 0), (0, 11, 0), (0, 0, 12), space_group_symbol="P 1")
        print(crystal.get_crystal_symmetry().unit_cell().parameters()[:3])
        """
    ).split("\n")
    assert out[0] == "[]"
    assert out[1] == "DBSCAN (1, 1)"
    assert out[2] == "reflection_table 2 _Deferred"
    assert out[3] == "(10.0, 11.0, 12.0)"


def test_commands_start_without_pkg_resources_and_find_the_same_formats():
    """dxtbx's format registry is built from importlib.metadata: the entry points
    pkg_resources gives, in its order, without importing pkg_resources."""
    out = _python(
        """
        import sys
        from dials_mdxbg.util.startup import prepare
        prepare()
        import dials.util.options
        from dxtbx.format import Registry
        index = Registry.get_format_class_index()
        print(type(sys.modules["pkg_resources"]).__name__)
        print(Registry.get_format_class_for("FormatCBFMiniPilatus").__name__)
        import pkg_resources  # the placeholder; any other attribute loads the real one
        ours = [e.name for e in pkg_resources.iter_entry_points("dxtbx.format")]
        real = [e.name for e in pkg_resources.working_set.iter_entry_points("dxtbx.format")]
        names = list(dict.fromkeys(n.split(":")[0] for n in real))
        print(ours == real, names == list(index), len(real) > 50)
        """
    ).split("\n")
    assert out[:3] == ["_Deferred", "FormatCBFMiniPilatus", "True True True"]


def test_pint_loads_for_nxmx_without_pandas_or_dask():
    """FormatNXmx (dxtbx.nexus, pint) works; pint did not import pandas or dask,
    which still import when something else wants them."""
    pytest.importorskip("pandas")
    pytest.importorskip("dask")
    out = _python(
        """
        import sys
        from dials_mdxbg.util.startup import prepare
        prepare()
        import dials.util.options
        import dxtbx.format.FormatNXmx
        from dxtbx.nexus import nxmx
        print(nxmx.ureg.Quantity(1500, "mm").to("m").magnitude)
        print(type(sys.modules.get("pandas")).__name__, "dask" in sys.modules)
        import dask.array, pandas
        print(pandas.Series([1, 2]).sum(), int(dask.array.ones(3).sum().compute()))
        """
    ).split("\n")
    assert out[:3] == ["1.5", "_Deferred False", "3 3"]


def test_an_experiment_list_file_is_loaded_once(small_sweep: Path):
    """The same unchanged file and check_format: the list loaded first; else loaded again."""
    out = _python(
        f"""
        import os
        from dials_mdxbg.util.startup import prepare
        prepare()
        from dxtbx.model.experiment_list import ExperimentListFactory as F
        path = {str(small_sweep)!r}
        a, b = F.from_json_file(path), F.from_json_file(path, check_format=True)
        c = F.from_json_file(path, check_format=False)
        print(a is b, a is c, len(a), a.imagesets()[0].get_format_class().__name__)
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
        print(F.from_json_file(path) is a)
        """
    ).split("\n")
    assert out[0].startswith("True False 1 FormatCBF")
    assert out[1] == "False"

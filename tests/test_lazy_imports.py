"""Deferred imports: transparent to code that uses the library, absent otherwise."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def _python(code: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PYTHONPATH": str(cwd) if cwd else "", "PATH": "/usr/bin:/bin"},
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


def test_commands_start_without_sklearn_and_pandas():
    pytest.importorskip("sklearn")
    out = _python(
        """
        import sys
        from dials_mdxbg.util.startup import prepare
        prepare()  # what every dials.mdx_* run() does first
        import dials.util.options
        loaded = [m for m in ("sklearn.base", "scipy.stats", "pandas.core") if m in sys.modules]
        print(loaded)
        import sklearn.cluster, pandas
        print(sklearn.cluster.DBSCAN.__name__, pandas.DataFrame({"a": [1]}).shape)
        """
    ).split("\n")
    assert out[0] == "[]"
    assert out[1] == "DBSCAN (1, 1)"

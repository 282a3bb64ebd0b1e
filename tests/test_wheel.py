"""The package as a DIALS user installs it: sdist -> wheel -> a fresh venv, not editable.

Runs README's "Install into an existing DIALS" commands, with ``python`` a
fresh venv made with ``--system-site-packages`` on Debian's DIALS (as DIALS'
own Python would be), then both commands from another directory on a small
generated sweep (``small_sweep``), presets given by name. The only PyPI
dependency (isal) comes from the local wheelhouse ``scripts/bootstrap.sh
--test`` fills, so the test needs no network.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WHEELHOUSE = Path(sys.prefix) / "wheelhouse"

pytestmark = pytest.mark.slow


def readme_install_commands() -> list[str]:
    """The shell commands of README's "Install into an existing DIALS" section."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Install into an existing DIALS", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [ln.strip() for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]


def _sh(cmd: list, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def _expand(arg: str, cwd: Path) -> str:
    """README's placeholders: the checkout's path, and a glob the build's file name fills."""
    if arg == "/path/to/dials-mdxbg":
        return str(REPO)
    if "*" in arg:
        (match,) = cwd.glob(arg)
        return str(match)
    return arg


@pytest.fixture(scope="module", params=["compiler", "no compiler"])
def installed(request, tmp_path_factory):
    """A fresh venv with the wheel installed by README's commands; (venv, dist, env, built).

    Built once with the C compiler and once without one (``CC=false``): the
    C kernels are then skipped (optional extension) and numpy takes over.
    """
    if not list(WHEELHOUSE.glob("isal-*.whl")):
        pytest.fail(f"no isal wheel in {WHEELHOUSE}: run scripts/bootstrap.sh --test")
    root = tmp_path_factory.mktemp("wheel")
    venv = root / "venv"
    # The user's environment: nothing of this checkout, no libtbx hint, no network.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LIBTBX_BUILD", "PYTHONPATH", "VIRTUAL_ENV", "PIP_USER")
    }
    env.update(
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(WHEELHOUSE),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PATH=f"{venv / 'bin'}:{env['PATH']}",
    )
    base = Path(sys.base_prefix) / "bin" / "python3"
    _sh([base, "-m", "venv", "--system-site-packages", venv], root, env)
    built = request.param == "compiler" and shutil.which("gcc") is not None
    build_env = dict(env, **({} if built else {"CC": "false"}))
    for command in readme_install_commands():
        args = command.split()
        assert args[0] == "python", command
        _sh([venv / "bin" / "python", *(_expand(a, root) for a in args[1:])], root, build_env)
    return venv, root / "dist", env, built


def test_readme_commands_build_from_the_sdist(installed):
    commands = readme_install_commands()
    assert any("-m build" in c and "--no-isolation" in c for c in commands)
    assert any("-m pip install dist/" in c for c in commands)
    _, dist, _, built = installed
    assert len(list(dist.glob("*.tar.gz"))) == 1 and len(list(dist.glob("*.whl"))) == 1


def test_sdist_has_the_sources_and_nothing_else(installed):
    _, dist, _, built = installed
    with tarfile.open(next(dist.glob("*.tar.gz"))) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    presets = {f"phil/{p.name}" for p in (REPO / "phil").glob("*.phil")}
    assert presets and presets <= names
    assert {"setup.py", "setup.cfg", "pyproject.toml", "README.md", "MANIFEST.in"} <= names
    assert "src/dials_mdxbg/native/_ckernels.c" in names
    assert "src/dials_mdxbg/native/mdxbg_kernels.h" in names
    assert "src/dials_mdxbg/output/report.html.j2" in names
    assert "src/dials_mdxbg/output/summary.schema.json" in names
    stray = [
        n
        for n in names
        if n.startswith(("tests", "benchmarks", "scripts", "docs", "."))
        or n.endswith((".so", ".pyc", ".nxs", ".log", ".png"))
    ]
    assert not stray


def test_wheel_contents(installed):
    _, dist, _, built = installed
    with zipfile.ZipFile(next(dist.glob("*.whl"))) as whl:
        names = set(whl.namelist())
    package = {n for n in names if not n.startswith("dials_mdxbg-")}
    sources = {
        str(p.relative_to(REPO / "src"))
        for p in (REPO / "src" / "dials_mdxbg").rglob("*")
        if (p.suffix in (".py", ".j2", ".h", ".c") or p.name.endswith(".schema.json"))
        and "__pycache__" not in p.parts
    }
    presets = {f"dials_mdxbg/presets/{p.name}" for p in (REPO / "phil").glob("*.phil")}
    kernels = {n for n in package if re.fullmatch(r"dials_mdxbg/native/_ckernels\..*\.so", n)}
    # Exactly the sources, the presets and the C kernels: no tests, no stray files.
    assert package == sources | presets | kernels
    assert len(kernels) == (1 if built else 0)  # built, not silently skipped
    dist_info = {n.split("/", 1)[1] for n in names - package}
    assert dist_info == {"METADATA", "WHEEL", "entry_points.txt", "top_level.txt", "RECORD"}


def test_both_commands_from_the_installed_wheel(installed, small_sweep, tmp_path):
    venv, _, env, built = installed
    py = venv / "bin" / "python"
    where = _sh(
        [py, "-c", "import dials_mdxbg, sys; print(dials_mdxbg.__file__)"], tmp_path, env
    ).stdout
    assert where.startswith(str(venv)), where  # not the checkout
    # README's check of the kernels, as a user runs it.
    chosen = _sh(
        [py, "-c", "from dials_mdxbg.native import lib; print(lib.describe())"],
        tmp_path,
        env,
    ).stdout.strip()
    full = "compiled(encoder=True, decoder=True, bslz4=True)"
    expected = full if built else "numpy"
    assert chosen.startswith(expected), chosen
    # A small sweep made by this checkout's generator (test tooling, not part of
    # the install), processed from another directory by the installed commands.
    expt = small_sweep
    bin_ = venv / "bin"
    log = _sh([bin_ / "dials.mdx_import", expt, "insulin_import.phil"], tmp_path, env).stdout
    assert (tmp_path / "bkg_data.nxs").exists()  # the preset's output.data
    installed_preset = venv.glob("lib/python3*/site-packages/dials_mdxbg/presets")
    preset_dir = str(next(installed_preset))
    assert f"Preset insulin_import.phil: {preset_dir}/insulin_import.phil" in log
    proc = _sh(
        [bin_ / "dials.mdx_bin_background", "bkg_data.nxs", "insulin_background"], tmp_path, env
    )
    log = proc.stdout
    assert not proc.stderr.strip(), proc.stderr  # the fallback, if taken, is quiet
    assert f"Preset insulin_background: {preset_dir}/insulin_background.phil" in log
    for name in ("bkg_data_binned.nxs", "bkg_data_binned.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    help_text = _sh([bin_ / "dials.mdx_bin_background", "-h"], tmp_path, env).stdout
    assert "insulin_background.phil" in help_text and preset_dir in help_text
    missing = subprocess.run(
        [bin_ / "dials.mdx_bin_background", "bkg_data.nxs", "nope.phil"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert missing.returncode != 0
    names = ", ".join(sorted(p.name for p in (REPO / "phil").glob("*.phil")))
    assert missing.stderr.strip().splitlines() == [
        f"dials.mdx_bin_background: error: nope.phil: no such file (nor a preset: {names})"
    ]

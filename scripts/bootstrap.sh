#!/usr/bin/env bash
# Idempotent set-up on Debian 12: DIALS from Debian, a venv on top of it, this
# project in editable mode and (with --test) mdx2 1.0.5 as the reference.
# Quick when everything is already there. Source it or run it.
_mdxbg_saved_opts="$(set +o)"
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MDXBG_VENV:-$REPO/.venv}"
WANT_TEST=0
[[ "${1:-}" == "--test" ]] && WANT_TEST=1
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

say() { echo "[bootstrap] $*" >&2; }

# 1. DIALS, dxtbx, cctbx, h5py, matplotlib from Debian (PyPI's dials/dxtbx are stubs);
#    gcc, ISA-L, libdeflate and LZ4 headers to build our C kernels (compression in C,
#    Eiger bitshuffle/LZ4 decoding without the GIL).
if ! /usr/bin/python3 -c "import dials, dxtbx, h5py, matplotlib, plotly, jinja2, venv" \
        >/dev/null 2>&1 \
    || [[ ! -e /usr/include/isa-l/igzip_lib.h || ! -e /usr/include/libdeflate.h ]] \
    || [[ ! -e /usr/include/lz4.h ]] \
    || ! command -v gcc >/dev/null; then
    say "installing DIALS from Debian (python3-dials), gcc, libisal-dev, libdeflate-dev, liblz4-dev"
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        python3-dials dials python3-venv python3-matplotlib python3-pytest \
        python3-plotly python3-jinja2 \
        gcc libisal-dev libdeflate-dev liblz4-dev >/dev/null
fi

# 2. A venv that sees Debian's packages.
if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating $VENV"
    /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
PY="$VENV/bin/python"
# libtbx looks for its build under sys.prefix (the venv); point every Python of
# the venv (ours, mdx2's scripts, pytest) at Debian's, unless the user set one.
PTH="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/libtbx_debian_build.pth"
if [[ ! -e "$PTH" ]]; then
    PYVER="$("$PY" -c 'import sys; print("python%d.%d" % sys.version_info[:2])')"
    echo "import os; os.environ.setdefault('LIBTBX_BUILD', '/usr/lib/cctbx/$PYVER')" > "$PTH"
fi

# 3. Python packages, re-installed only when the recipe changes.
stamp_of() {
    cat "$REPO/setup.cfg" "$REPO/setup.py" "$REPO/scripts/bootstrap.sh" \
        "$REPO/src/dials_mdxbg/native/_ckernels.c" "$REPO/src/dials_mdxbg/native/mdxbg_kernels.h" \
        | sha1sum | cut -c1-16
}
STAMP="$VENV/.mdxbg-$(stamp_of)"
if [[ ! -e "$STAMP" ]]; then
    say "installing dials-mdxbg (editable) into $VENV"
    "$PY" -m pip install -q -e "$REPO" 2>&1 | grep -v "^WARNING: Location" || true
    # hdf5plugin (Eiger bitshuffle/LZ4) and dask.distributed (mp.method=dask);
    # hdf5plugin without deps so that Debian's h5py stays the only one.
    "$PY" -m pip install -q --no-deps hdf5plugin 2>&1 | grep -v "^WARNING: Location" || true
    "$PY" -m pip install -q "dask[distributed]" dask-jobqueue 2>&1 \
        | grep -v "^WARNING: Location" || true
    "$PY" -c "import dials_mdxbg, isal, hdf5plugin, distributed" \
        || { say "install failed"; exit 1; }
    "$PY" -c "from dials_mdxbg.native import lib
assert lib.loaded() and all(lib.has(f) for f in ('encoder', 'decoder', 'bslz4'))" \
        || say "warning: C kernels not (fully) built (gcc, libisal-dev, libdeflate-dev, liblz4-dev?): slower"
    touch "$STAMP"
fi
# Tests only: Chromium renders the HTML report, driven through WebDriver
# (chromium-driver, python3-selenium: tests/browser.py); python3-build builds the
# sdist and wheel the packaging test installs; python3-jsonschema validates the JSON
# summaries against their shipped schema (tests/test_json_summary.py).
if [[ $WANT_TEST -eq 1 ]] && { ! command -v chromium >/dev/null \
        || ! command -v chromedriver >/dev/null \
        || ! /usr/bin/python3 -c "import selenium" >/dev/null 2>&1 \
        || ! /usr/bin/python3 -c "import build" >/dev/null 2>&1 \
        || ! /usr/bin/python3 -c "import jsonschema" >/dev/null 2>&1; }; then
    say "installing chromium, chromium-driver, python3-selenium, python3-build and python3-jsonschema (tests)"
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        chromium chromium-driver python3-selenium python3-build python3-jsonschema >/dev/null
fi
# Tests only: a real one-node SLURM (tests/slurm_cluster.py starts its own private
# daemons; nothing is enabled machine-wide). Where apt cannot (not root, no
# Debian), the cluster tests skip and say why.
if [[ $WANT_TEST -eq 1 ]] && { ! command -v sbatch >/dev/null \
        || [[ ! -x /usr/sbin/slurmctld || ! -x /usr/sbin/slurmd || ! -x /usr/sbin/munged ]]; }; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        say "installing slurm-wlm and munge (the cluster tests)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null \
            || say "warning: slurm-wlm/munge not installed: the SLURM tests will skip"
    else
        say "slurm-wlm/munge missing and not root: the SLURM tests will skip"
    fi
fi
TSTAMP="$VENV/.mdxbg-test-$(stamp_of)"
if [[ $WANT_TEST -eq 1 && ! -e "$TSTAMP" ]]; then
    say "installing test tools and mdx2 1.0.5 (reference)"
    # mdx2 and nexusformat without their declared deps: they would pull PyPI's
    # dxtbx stub and a second h5py; Debian provides h5py, scipy, pandas, joblib.
    "$PY" -m pip install -q --no-deps mdx2==1.0.5 nexusformat==2.1.0 2>&1 \
        | grep -v "^WARNING: Location" || true
    "$PY" -m pip install -q ruff loguru simple-parsing chardet colored lxml \
        python-dateutil pygments packaging 2>&1 | grep -v "^WARNING: Location" || true
    "$PY" -c "import mdx2.command_line.import_data, nexusformat, pytest" \
        || { say "test tool install failed"; exit 1; }
    # The wheel test installs into a fresh venv without the network: our one
    # PyPI dependency comes from this local folder (same version as in $VENV).
    ISAL_VERSION="$("$PY" -c 'from importlib.metadata import version; print(version("isal"))')"
    "$PY" -m pip download -q --no-deps --only-binary :all: -d "$VENV/wheelhouse" \
        "isal==$ISAL_VERSION" 2>&1 | grep -v "^WARNING: Location" || true
    touch "$TSTAMP"
fi
export PATH="$VENV/bin:$PATH"
# Leave the caller's shell options as they were when sourced.
eval "$_mdxbg_saved_opts"

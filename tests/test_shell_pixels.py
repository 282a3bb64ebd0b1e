"""The shell model's per-pixel kernels give their numpy twins' bits (native/shell_pixels.py).

Each C kernel makes numpy's float64 operations in numpy's order; these tests fail
when one drifts from its twin by a bit: on a tilted detector's real two-theta and
azimuth grid, and on the awkward points (exact profile points and shell edges,
azimuths at +-pi, points outside the profile, one band or one sector).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from dials_mdxbg.binning.shells import FINE_SECTORS, ResidualBasis
from dials_mdxbg.jobs.pixel_geometry import point_geometry
from dials_mdxbg.native import lib
from dials_mdxbg.native import shell_pixels as sp


@pytest.fixture(scope="module")
def geometry():
    """Two-theta and azimuth (float32) of a 90 x 130 detector tilted 8 degrees with a moved
    beam, with a few awkward azimuths written in."""
    from dxtbx.model import BeamFactory, DetectorFactory
    from scitbx import matrix

    ny, nx, px = 90, 130, 0.172
    detector = DetectorFactory.simple(
        "PAD", 80.0, (0.4 * nx * px, 0.7 * ny * px), "+x", "-y", (px, px), (nx, ny), (-1, 1e6), []
    )
    panel = detector[0]
    rot = matrix.col((0, 1, 0)).axis_and_angle_as_r3_rotation_matrix(8, deg=True)
    frame = [matrix.col(v) for v in (panel.get_fast_axis(), panel.get_slow_axis(),
                                     panel.get_origin())]  # fmt: skip
    panel.set_frame(*(rot * v for v in frame))
    tt, psi = point_geometry(detector, BeamFactory.simple(1.0), np.arange(ny), np.arange(nx))
    psi[0, :4] = (-math.pi, math.pi, 0.0, np.nextafter(np.float32(math.pi), 0))
    return np.ascontiguousarray(tt), np.ascontiguousarray(psi)


def both(function, *args, **kwargs):
    """``function`` run with the C library, then with the numpy twins (the outputs are
    the arrays it fills, made by ``args``' factory for each run)."""
    outs = []
    for pure in (False, True):
        lib.library.cache_clear()
        saved = lib.library
        try:
            if pure:
                lib.library = lambda: None  # the twins, as DIALS_MDXBG_PURE_NUMPY=1
            outs.append(function(*args, **kwargs))
        finally:
            lib.library = saved
            lib.library.cache_clear()
    return outs


def test_the_kernels_are_loaded():
    assert lib.loaded()
    for name in ("mdx_shell_static", "mdx_shell_expected", "mdx_box_rows_add",
                 "mdx_shell_joint"):  # fmt: skip
        assert getattr(lib.library(), name).argtypes is not None


def _joint(tt, psi, edges):
    out = np.empty(tt.shape, dtype=np.int32)
    sp.shell_joint(tt, psi, edges, FINE_SECTORS, out)
    return out


def test_fine_shells_and_sectors(geometry):
    tt, psi = geometry
    lo, hi = float(tt.min()), float(tt.max())
    n = 300
    edges = lo + (hi - lo) / n * np.arange(n + 1)
    edges[-1] = np.nextafter(hi, np.inf)
    tt = tt.copy()
    tt[1, :5] = edges[[0, 1, 7, 150, n - 1]]  # exactly on edges (float32: near them)
    tt[2, :3] = (lo - 1.0, hi + 1.0, np.float32(edges[100]))
    c, ref = both(_joint, tt, psi, edges)
    assert np.array_equal(c, ref)
    shells, sectors = np.divmod(c, FINE_SECTORS)
    assert shells.min() == 0 and shells.max() == n - 1
    assert np.unique(sectors).size == FINE_SECTORS


def _profile(tt, n=40, seed=0):
    """Profile points over part of the two-theta range (points outside it on both
    sides), one repeated, some at pixels' exact two-theta."""
    rng = np.random.default_rng(seed)
    lo, hi = np.percentile(tt, [3, 96])
    xp = np.sort(np.concatenate([rng.uniform(lo, hi, n - 4), tt.ravel()[[5, 500, 900]]]))
    xp = np.insert(xp, 10, xp[10])  # a repeated point
    fp = rng.uniform(0.5, 3.0, xp.size) * 10.0 ** rng.integers(-2, 3, xp.size)
    return xp.astype(np.float64), fp


def _expected(tt, psi, grid, models, exposures, basis):
    outs = [np.empty(tt.shape, dtype=np.float32) for _ in models]
    into = None
    if basis:
        into = ResidualBasis.empty(tt.shape, grid[3] if grid[2] > 1 else 0)
    sp.residual_expected(tt, psi, grid, models, exposures, outs, into)
    written = () if into is None else (into.i00, into.i01, into.wb, into.ws, into.near)
    return (*outs, *written)


@pytest.mark.parametrize("cells", [(16, 24), (3, 4), (1, 1), (2, 1)])
@pytest.mark.parametrize("n_models", [1, 3])
@pytest.mark.parametrize("basis", [False, True])
def test_expected_counts_on_the_residual_grid(geometry, cells, n_models, basis):
    tt, psi = geometry
    rng = np.random.default_rng(sum(cells) + n_models)
    nb, ns = cells
    lo, hi = np.percentile(tt, [5, 90])  # bands clipped at both ends
    grid = (float(lo), max(float(hi - lo), 1e-12), nb, ns)
    models = []
    for k in range(n_models):
        xp, fp = _profile(tt, seed=k)
        models.append((rng.uniform(0.5, 1.5, nb * ns), xp, fp))
    exposures = [(rng.integers(0, 30, tt.shape) * np.float32(0.1)).astype(np.float32)
                 for _ in models]  # fmt: skip
    c, ref = both(_expected, tt, psi, grid, models, exposures, basis)
    assert len(c) == n_models + 5 * basis
    for a, b in zip(c, ref):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert (c[0] > 0).any() and (c[0] == 0).any()


@pytest.mark.parametrize("q", range(1, 8))
@pytest.mark.parametrize("shape", [(40, 157), (37, 150), (1, 3)])
def test_box_sums_of_a_band(q, shape):
    rng = np.random.default_rng(q)
    values = (rng.random(shape) * 10.0 ** rng.integers(-3, 4, shape)).astype(np.float32)
    values[0, 0] = -0.0

    def sums(values):
        out = np.full((-(-shape[0] // q), -(-shape[1] // q) + (q == 3)), np.nan)
        sp.box_sums_small(values, q, out)
        return out

    c, ref = both(sums, values)
    assert np.array_equal(c, ref) and np.isfinite(c).all()
    assert c[0, 0] == pytest.approx(values[:q, :q].astype(np.float64).sum(), rel=1e-12)


def _static(tt, model, ys, xs, rate):
    xp, counts, profile, q, q_counts, q_map = model
    rel = np.empty(tt.shape, dtype=np.float32)
    static = np.empty(tt.shape, dtype=np.float32) if rate else None
    at = None if q_counts is None else sp.box_weights(q_counts.shape, q, ys, xs)
    sp.static_rows(tt, xp, counts, profile, q_counts, q_map, at, rel, static)
    return rel, static


@pytest.mark.parametrize("q", [None, 1, 3, 16])
@pytest.mark.parametrize("rate", [True, False])
@pytest.mark.parametrize("points", ["pixels", "map grid"])
def test_static_parts(geometry, q, rate, points):
    tt, _ = geometry
    ny, nx = tt.shape
    ys, xs = np.arange(ny, dtype=np.float64), np.arange(nx, dtype=np.float64)
    if points == "map grid":  # every third pixel's bin centre, as the map's
        ys, xs = ys[::3] + 1.0, xs[::3] + 1.0
        tt = np.ascontiguousarray(tt[::3, ::3] + np.float32(0.01))
    rng = np.random.default_rng(7)
    xp, fp = _profile(tt)
    counts = rng.uniform(0.2, 5000.0, xp.size)
    q_counts = q_map = None
    if q is not None:
        shape = (-(-ny // q), -(-nx // q))
        q_counts = rng.uniform(0.0, 3000.0, shape)
        q_map = rng.uniform(0.7, 1.3, shape)
    model = (xp, counts, fp, q, q_counts, q_map)
    c, ref = both(_static, tt, model, ys, xs, rate)
    assert np.array_equal(c[0], ref[0])
    assert (c[1] is None) == (not rate) and (not rate or np.array_equal(c[1], ref[1]))
    assert (c[0] > 0).all()


def test_the_pixel_residual_and_map_are_the_same_bits_either_way(geometry):
    """The shell model fitted and mapped from in-memory frames with the C kernels and with
    their twins (the fit kernel's sums are exact): identical factors, basis and map."""
    from dials_mdxbg.binning.shells import fit_model, grid_rates, pixel_residual, shell_layout

    tt, psi = geometry
    rng = np.random.default_rng(3)
    truth = 50.0 * np.exp(-tt / 20.0) + 200.0 * np.exp(-0.5 * ((tt - 14.0) / 0.3) ** 2)
    counts = rng.poisson(truth * 6.0).astype(np.float32)
    exposure = np.where(rng.random(tt.shape) < 0.05, 0.0, 0.6).astype(np.float32)
    counts[exposure == 0] = 0.0

    def fit():
        layout = shell_layout(tt, psi)
        joint = layout.joint.ravel()
        c = np.bincount(joint, counts.ravel().astype(np.float64), layout.n_joint)
        e = np.bincount(joint, exposure.ravel().astype(np.float64), layout.n_joint)
        model = fit_model(layout, np.stack([c, 0.9 * c]), np.stack([e, 0.9 * e]))
        basis = model.empty_basis(tt.shape)
        q = pixel_residual(model, layout, counts, exposure, np.array([0.5, 0.5]), basis=basis)
        ys, xs = np.arange(0, tt.shape[0], 2) + 0.5, np.arange(0, tt.shape[1], 2) + 0.5
        signal, errors = grid_rates(model, tt[::2, ::2].copy(), psi[::2, ::2].copy(), ys, xs)
        return (layout.joint, model.q_map, model.q_counts, basis.i00, basis.wb, basis.near,
                signal, errors, q)  # fmt: skip

    c, ref = both(fit)
    for a, b in zip(c, ref):
        assert np.array_equal(a, b)
    assert np.isfinite(c[6]).all() and c[1].std() > 0


@pytest.mark.parametrize("with_excluded", [False, True])
@pytest.mark.parametrize("pixels_per_call", [1 << 24, 200])
def test_the_packed_fit_kernel_gives_the_twins_bits(with_excluded, pixels_per_call,
                                                    monkeypatch):  # fmt: skip
    from dials_mdxbg.native import shell_kernels as sk

    monkeypatch.setattr(sk, "PACKED_PIXELS", pixels_per_call)  # 200: calls of 3 rows

    rng = np.random.default_rng(11)
    shape = (37, 53)
    frame = rng.integers(-1, 260, shape).astype(np.int32)
    excluded = (rng.random(shape) < 0.2) if with_excluded else None
    joint = np.sort(rng.integers(0, 40, shape), axis=1).astype(np.int32)
    y_index = np.arange(shape[0]) // 4
    x_index = np.repeat(np.arange(6), [9, 9, 9, 9, 9, shape[1] - 45])

    def fit():
        sums = (np.full(40, 2.0), np.full(40, 0.5), np.full(shape, 7, np.uint32),
                np.zeros((y_index[-1] + 1, 6), np.int64))  # fmt: skip
        for t in (0.1, 0.1):
            sk.fit_frame_packed(frame, joint, excluded, (0, 200), t, *sums[:3], y_index,
                                x_index, sums[3])  # fmt: skip
        return sums

    c, ref = both(fit)
    for a, b in zip(c, ref):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    valid = (frame >= 0) & (frame <= 200) & (True if excluded is None else ~excluded)
    assert np.array_equal(c[2], 7 + 2 * np.where(valid, frame + 65536, 0))


def test_packed_per_pixel_sums_unpack_to_the_float32_sums():
    """Frames of one exposure time added packed, in two threads' accumulators merged,
    give the float32 per-pixel sums of adding them as float32, to the bit."""
    from dials_mdxbg.binning.grid import BinGrid
    from dials_mdxbg.binning.shell_sums import ShellSums, fit_consumer, pixel_table
    from dials_mdxbg.binning.shells import shell_layout

    rng = np.random.default_rng(2)
    n, ny, nx = 9, 30, 40
    tt = np.linspace(5.0, 30.0, ny * nx, dtype=np.float32).reshape(ny, nx)
    psi = np.linspace(-3.0, 3.0, ny * nx, dtype=np.float32).reshape(nx, ny).T.copy()
    layout = shell_layout(tt, psi)
    grid = BinGrid((n, ny, nx), (3, 1, 1))
    frames = rng.integers(-1, 120, (n, ny, nx)).astype(np.int32)
    times = np.full(n, 0.1)
    table = pixel_table(times, (0, 150))
    assert table is not None and table.dtype == np.float32 and table[1] == np.float32(0.1)
    assert pixel_table(times, (0, 100000)) is None and pixel_table(times, None) is None
    assert pixel_table(np.r_[times, 0.2], (0, 150)) is None
    consume = fit_consumer(layout, grid, times, (0, 150))

    def summed(table):
        accs = [ShellSums.zeros(3, layout.n_joint, grid.out_shape, (ny, nx), table)
                for _ in range(2)]  # fmt: skip
        for f in range(n):  # two threads' frames, merged at the end
            consume(accs[f % 3 == 0], f, 0, frames[f : f + 1])
        return accs[0].merge(accs[1])

    # One accumulator: the whole-sweep sums and each parity's, as arrays or bands made on
    # demand, are the float32 sums' bits.
    lone = [ShellSums.zeros(3, layout.n_joint, grid.out_shape, (ny, nx), t) for t in (table, None)]
    for acc in lone:
        for f in range(n):
            consume(acc, f, 0, frames[f : f + 1])
    (c1, e1, parts1), (c2, e2, parts2) = (acc.pixels() for acc in lone)
    assert np.array_equal(c1, c2) and np.array_equal(e1, e2) and c1.dtype == np.float32
    for (pc1, pe1), (pc2, pe2) in zip(parts1, parts2):
        for rows in (slice(0, 7), slice(7, 30)):
            assert np.array_equal(pc1[rows], pc2[rows]) and np.array_equal(pe1[rows], pe2[rows])
            assert pe1[rows].dtype == np.float32
    packed, plain = summed(table), summed(None)
    assert packed.packed is None and packed.pixel_exposure.dtype == np.float32
    for name in ("counts", "exposure", "box_count", "pixel_counts", "pixel_exposure"):
        assert np.array_equal(getattr(packed, name), getattr(plain, name)), name
    one = ShellSums.zeros(3, layout.n_joint, grid.out_shape, (ny, nx), table)
    for f in range(n):
        consume(one, f, 0, frames[f : f + 1])
    alone = ShellSums.zeros(3, layout.n_joint, grid.out_shape, (ny, nx))
    for f in range(n):
        consume(alone, f, 0, frames[f : f + 1])
    assert np.array_equal(one.unpack().pixel_exposure, alone.pixel_exposure)
    assert (alone.pixel_exposure > 0).any()

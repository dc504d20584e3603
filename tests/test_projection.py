"""Projection backends against the exact pixel-integrated reference (docs/projection.md)."""

import numpy as np
import pytest

from massmaps.projection import kernels as K
from massmaps.projection.exact_fast import _FIXED
from massmaps.projection.footprints import _MODES_MIN
from massmaps.projection.pixels import BACKENDS, pixel_centres, pixel_edges, project

NPIX = 32
LIM = (0.0, 3.2)  # 0.1 per pixel
DX = 0.1
KW = dict(xlim=LIM, ylim=LIM, npix=NPIX)


@pytest.fixture(scope="module")
def particles():
    """Random set: h from 0.01 to 3 pixels (log-uniform), a few large ones, some off the map."""
    rng = np.random.default_rng(42)
    n = 3000
    x = rng.uniform(-0.3, 3.5, n)
    y = rng.uniform(-0.3, 3.5, n)
    h = DX * 10 ** rng.uniform(-2, np.log10(3), n)
    h[:25] = DX * rng.uniform(5, 40, 25)
    m = rng.uniform(0.5, 1.5, n)
    return x, y, h, m


@pytest.fixture(scope="module")
def reference_map(particles):
    x, y, h, m = particles
    return project(x, y, h, m, backend="reference", **KW)


def _l1(a, ref):
    return np.abs(a - ref).sum() / ref.sum()


def test_registry_names():
    assert set(BACKENDS) == {"exact", "mesh", "reference"}


def test_exact_matches_reference(particles, reference_map):
    x, y, h, m = particles
    out = project(x, y, h, m, **KW)
    assert out.shape == (1, NPIX, NPIX) and out.dtype == np.float64
    assert _l1(out, reference_map) < 1e-5
    # pixel by pixel too, relative to the particle weights
    assert np.abs(out - reference_map).max() < 1e-6


def test_reference_conserves_mass_of_inside_particles():
    rng = np.random.default_rng(1)
    n = 200
    h = DX * 10 ** rng.uniform(-2, 1, n)
    x = rng.uniform(1.0, 2.2, n)
    y = rng.uniform(1.0, 2.2, n)
    out = project(x, y, h, np.ones(n), backend="reference", **KW)
    assert out.sum() == pytest.approx(n, rel=1e-7)


def test_exact_large_supports_match_reference():
    # supports of several map lengths: h = 0.5 to 5 (5 to 50 pixels), centred anywhere
    x = np.array([1.6, 0.2, 3.0, -1.0, 1.23])
    y = np.array([1.6, 2.9, -0.4, 1.7, 0.77])
    h = np.array([0.5, 1.3, 2.4, 5.0, 3.3])
    m = np.array([1.0, 2.0, 0.5, 3.0, 1.5])
    ref = project(x, y, h, m, backend="reference", **KW)
    out = project(x, y, h, m, **KW)
    assert _l1(out, ref) < 1e-5
    # the first particle lies inside: all of it is in the map
    inside = project(x[:1], y[:1], h[:1], m[:1], **KW)
    assert inside.sum() == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("backend", ["exact", "mesh", "reference"])
def test_multi_weight_equals_separate_calls(particles, backend):
    x, y, h, m = particles
    sl = slice(0, 600)
    x, y, h, m = x[sl], y[sl], h[sl], m[sl]
    z = np.linspace(0.5, 2.5, x.size)
    w = np.stack([m, m**2, np.cos(x)])
    extra = dict(z=z, zlim=LIM) if backend == "mesh" else {}
    multi = project(x, y, h, w, backend=backend, **KW, **extra)
    assert multi.shape == (3, NPIX, NPIX)
    for k in range(3):
        single = project(x, y, h, w[k], backend=backend, **KW, **extra)
        np.testing.assert_allclose(multi[k], single[0], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("backend", ["exact", "mesh"])
def test_same_bytes_for_any_number_of_threads(backend):
    """A fixed number of partial images summed in a fixed order: the thread count (a job's `threads`,
    scaled down by `snakemake --cores`) must not change a map's bytes. Run in a process allowed 4 numba
    threads, so that 1 to 4 threads are compared whatever the machine's core count."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import hashlib, numba, numpy as np
        from massmaps.projection.pixels import project
        rng = np.random.default_rng(42)
        n = 3000
        x, y = rng.uniform(-0.3, 3.5, n), rng.uniform(-0.3, 3.5, n)
        h = {DX} * 10 ** rng.uniform(-2, np.log10(3), n)
        h[:25] = {DX} * rng.uniform(5, 40, 25)
        m = rng.uniform(0.5, 1.5, n)
        w = np.stack([m, np.cos(x)])
        extra = dict(z=np.linspace(0.5, 2.5, n), zlim={LIM!r}) if {backend!r} == "mesh" else {{}}
        for t in (1, 2, 3, 4):
            numba.set_num_threads(t)
            out = project(x, y, h, w, backend={backend!r}, xlim={LIM!r}, ylim={LIM!r}, npix={NPIX}, **extra)
            print(t, numba.get_num_threads(), hashlib.sha256(out.tobytes()).hexdigest())
    """)
    env = {**__import__("os").environ, "NUMBA_NUM_THREADS": "4"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line.split() for line in out.stdout.splitlines()]
    assert [int(t) for _, t, _ in lines] == [1, 2, 3, 4]  # four thread counts really used
    assert len({d for _, _, d in lines}) == 1, lines


def test_exact_mass_conservation_inside_map():
    rng = np.random.default_rng(7)
    n = 4000
    # sub-pixel (down to 1e-4 pixel), pixel and few-pixel supports, all inside the map
    h = DX * np.concatenate([np.full(1000, 1e-4), 10 ** rng.uniform(-3, 0.7, n - 1000)])
    x = rng.uniform(0.6, 2.6, n)
    y = rng.uniform(0.6, 2.6, n)
    # particles exactly on pixel edges and on pixel corners
    x[:300] = DX * rng.integers(8, 24, 300)
    y[150:450] = DX * rng.integers(8, 24, 300)
    m = rng.uniform(0.1, 10.0, n)
    out = project(x, y, h, m, **KW)
    assert abs(out.sum() / m.sum() - 1.0) < 1e-12
    # and every particle on its own
    each = np.array([project(x[i : i + 1], y[i : i + 1], h[i : i + 1], 1.0, **KW).sum()
                     for i in range(0, n, 97)])  # fmt: skip
    np.testing.assert_allclose(each, 1.0, rtol=0, atol=1e-13)
    # grazing pixels may hold -1e-9 of a weight (interpolation error of the correction table)
    assert out.min() >= -1e-8 * m.max()


def _footprint(x, y, h):
    """Pixels (columns, rows) covered by each support square, as the exact backend counts them."""
    fx, fy, fh = x / DX, y / DX, h / DX
    nx = np.floor(fx + fh) - np.floor(fx - fh) + 1
    ny = np.floor(fy + fh) - np.floor(fy - fh) + 1
    return nx.astype(int), ny.astype(int)


def test_every_footprint_class_matches_reference():
    # footprints of 1x1 to 7x7 pixels inside the map, so that every written-out runner (2x3 to 5x5),
    # the 1x1, 1x2, 2x2 and 3x3 paths and the general one each get many particles; each class on its
    # own against the reference, and all of them together (the block sort mixes them)
    rng = np.random.default_rng(11)
    n = 6000
    h = DX * rng.uniform(0.05, 3.4, n)
    x = rng.uniform(0.4, 2.8, n)
    y = rng.uniform(0.4, 2.8, n)
    m = rng.uniform(0.5, 2.0, n)
    nx, ny = _footprint(x, y, h)
    sizes = set(zip(nx.tolist(), ny.tolist()))
    assert set(_FIXED) <= sizes and {(1, 1), (1, 2), (2, 1), (2, 2), (3, 3), (6, 6), (7, 7)} <= sizes
    for size in sorted(sizes):
        sel = (nx == size[0]) & (ny == size[1])
        if sel.sum() < 5:
            continue
        args = (x[sel], y[sel], h[sel], m[sel])
        out = project(*args, **KW)
        ref = project(*args, backend="reference", **KW)
        assert _l1(out, ref) < 1e-6, size
        assert np.abs(out - ref).max() < 1e-6 * m.max(), size
        assert abs(out.sum() / m[sel].sum() - 1.0) < 1e-12, size
    out = project(x, y, h, m, **KW)
    assert _l1(out, project(x, y, h, m, backend="reference", **KW)) < 1e-6
    # the block sort changes the order of additions, not the sum beyond round-off
    single = sum(project(x[i : i + 1], y[i : i + 1], h[i : i + 1], m[i : i + 1], **KW) for i in range(0, n, 50))
    part = project(x[::50], y[::50], h[::50], m[::50], **KW)
    np.testing.assert_allclose(part, single, rtol=0, atol=1e-13 * m.max())


def test_separable_path_matches_reference():
    # footprints with at least _MODES_MIN inner corners take the separable modes of K (eight terms per
    # pixel, rows padded to four pixels): inside the map, clipped by its edges and corners, one field
    # and several, square and non-square pixels
    rng = np.random.default_rng(12)
    n = 400
    h = DX * rng.uniform(3.0, 14.0, n)
    x = rng.uniform(-0.6, 3.8, n)
    y = rng.uniform(-0.6, 3.8, n)
    m = rng.uniform(0.5, 2.0, n)
    inside = (x - h >= 0) & (x + h < 3.2) & (y - h >= 0) & (y + h < 3.2)
    clipped = ~inside & (x + h > 0) & (x - h < 3.2) & (y + h > 0) & (y - h < 3.2)
    corners = (np.minimum(np.floor((x + h) / DX), NPIX - 1) - np.maximum(np.floor((x - h) / DX), 0)) * (
        np.minimum(np.floor((y + h) / DX), NPIX - 1) - np.maximum(np.floor((y - h) / DX), 0)
    )
    big = corners >= _MODES_MIN
    assert (big & inside).sum() > 20 and (big & clipped).sum() > 100 and (~big & clipped).sum() > 20
    for sel in (big & inside, big & clipped, clipped):
        args = (x[sel], y[sel], h[sel], m[sel])
        out = project(*args, **KW)
        ref = project(*args, backend="reference", **KW)
        assert _l1(out, ref) < 1e-6
        assert np.abs(out - ref).max() < 1e-6 * m.max()
    # inside: every particle's mass, to round-off
    for i in np.flatnonzero(big & inside)[:20]:
        assert project(x[i : i + 1], y[i : i + 1], h[i : i + 1], [1.0], **KW).sum() == pytest.approx(1.0, abs=1e-13)
    # several fields at once: the same weights, field by field
    w = np.stack([m, rng.uniform(0, 1, n), np.ones(n)])
    many = project(x, y, h, w, **KW)
    for k in range(3):
        np.testing.assert_allclose(many[k], project(x, y, h, w[k], **KW)[0], rtol=0, atol=1e-15 * w[k].max())
    # non-square pixels (0.1 x 0.05): x and y edges in their own units
    kw = dict(xlim=(0.0, 3.2), ylim=(0.0, 1.6), npix=NPIX)
    sel = np.flatnonzero(big)[:60]
    args = (x[sel], 0.5 * y[sel], h[sel], m[sel])
    ref = project(*args, backend="reference", **kw)
    assert _l1(project(*args, **kw), ref) < 1e-6


def test_exact_point_and_tiny_particles():
    # h = 0 is a point; a tiny particle on a pixel corner splits 1/4 each by symmetry
    out = project([0.25, 1.2], [0.35, 1.2], [0.0, 1e-9], [2.0, 1.0], **KW)[0]
    assert out[3, 2] == 2.0  # row iy along y, column ix along x
    np.testing.assert_allclose(out[11:13, 11:13], 0.25, rtol=1e-12)
    assert out.sum() == pytest.approx(3.0, rel=1e-15)
    # a tiny particle on a pixel edge splits in halves
    out = project([1.2], [1.25], [1e-12], [1.0], **KW)[0]
    np.testing.assert_allclose(out[12, 11:13], 0.5, rtol=1e-12)


def test_pixel_orientation():
    out = project([0.55], [0.25], [0.02], [1.0], **KW)[0]
    iy, ix = np.unravel_index(out.argmax(), out.shape)
    assert (iy, ix) == (2, 5)
    assert out[iy, ix] == 1.0


def test_exact_partial_mass_at_map_edge():
    # centred on the left edge: exactly half the kernel is in the map
    out = project([0.0], [1.6], [0.25], [1.0], **KW)
    assert out.sum() == pytest.approx(0.5, abs=1e-13)
    # centred on the corner: a quarter
    out = project([3.2], [3.2], [0.33], [1.0], **KW)
    assert out.sum() == pytest.approx(0.25, abs=1e-13)
    # straddling at arbitrary offsets: the in-map part is M(u) (1D marginal) and matches the
    # reference pixel by pixel
    x = np.array([0.05, 3.1, 1.0, 0.02])
    y = np.array([1.0, 2.0, -0.08, 3.25])
    h = np.array([0.3, 0.45, 0.2, 0.6])
    got = project(x, y, h, np.ones(4), **KW)
    ref = project(x, y, h, np.ones(4), backend="reference", **KW)
    # the bilinear correction table is good to ~1.4e-7 per pixel corner
    np.testing.assert_allclose(got, ref, atol=6e-7)
    assert _l1(got, ref) < 5e-6  # a few particles, per particle; the bar for a map is 1e-5
    expected = K.marginal_cdf(x[0] / h[0])
    assert project(x[:1], y[:1], h[:1], 1.0, **KW).sum() == pytest.approx(expected, abs=1e-13)


def test_particles_off_the_map_contribute_nothing():
    out = project([-1.0, 5.0, 1.0], [1.0, 1.0, 9.0], [0.5, 0.5, 0.5], np.ones(3), **KW)
    assert np.all(out == 0.0)


def test_mesh_loses_subpixel_mass_and_agrees_for_large_h():
    mesh = dict(backend="mesh", zlim=LIM, **KW)
    # a support (0.2 pixel) that contains no cell centre is lost entirely; exact keeps it
    args = ([1.23], [1.27], [0.02], [1.0])
    assert project(*args, z=[1.21], **mesh).sum() == 0.0
    assert project(*args, **KW).sum() == pytest.approx(1.0, rel=1e-14)
    # one that contains a centre is sampled there: far more than its mass
    assert project([1.25], [1.25], [0.02], [1.0], z=[1.25], **mesh).sum() > 10.0
    rng = np.random.default_rng(11)
    n = 400
    x = rng.uniform(1.0, 2.2, n)
    y = rng.uniform(1.0, 2.2, n)
    z = rng.uniform(1.0, 2.2, n)
    h = np.full(n, 8 * DX)
    ref = project(x, y, h, np.ones(n), backend="reference", **KW)
    got = project(x, y, h, np.ones(n), z=z, **mesh)
    assert got.sum() == pytest.approx(n, rel=0.01)
    assert _l1(got, ref) < 0.03


def test_mesh_requires_z():
    with pytest.raises(ValueError, match="needs the particles' z"):
        project([1.0], [1.0], [0.1], [1.0], backend="mesh", **KW)


def test_unknown_backend_lists_valid_names():
    with pytest.raises(ValueError, match="unknown projection backend 'fast'.*exact, mesh, reference"):
        project([1.0], [1.0], [0.1], [1.0], backend="fast", **KW)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(h=[-0.1]), "non-negative"),
        (dict(x=[np.nan]), "x contains non-finite"),
        (dict(y=[np.inf]), "y contains non-finite"),
        (dict(h=[np.inf]), "h .* contains non-finite"),
        (dict(h=[np.nan]), "h .* contains non-finite"),
        (dict(weights=[np.nan]), "weights contain non-finite"),
        # a particle off the map: its weight is never deposited, and still checked
        (dict(x=[-5.0], weights=[np.inf]), "weights contain non-finite"),
        (
            dict(x=[1.0, 9.0], y=[1.0, 1.0], h=[0.1, 0.1], weights=[[1.0, 1.0], [1.0, np.nan]]),
            "weights contain non-finite",
        ),
        (dict(weights=[[1.0, 2.0]]), "weights must have shape"),
        (dict(npix=0), "positive integer"),
        (dict(xlim=(1.0, 1.0)), "lo < hi"),
    ],
)
@pytest.mark.parametrize("backend", ["exact", "mesh", "reference"])
def test_bad_inputs(kwargs, match, backend):
    args = dict(x=[1.0], y=[1.0], h=[0.1], weights=[1.0], **KW)
    args.update(kwargs)
    n = len(args["x"])
    extra = dict(z=np.ones(n), zlim=LIM) if backend == "mesh" else {}
    with pytest.raises(ValueError, match=match):
        project(args.pop("x"), args.pop("y"), args.pop("h"), args.pop("weights"), backend=backend, **args, **extra)


def test_pixel_edges_and_centres():
    np.testing.assert_allclose(pixel_edges((0, 12.8), 128)[[0, 1, -1]], [0.0, 0.1, 12.8])
    np.testing.assert_allclose(pixel_centres((0, 12.8), 128)[[0, 63, 64]], [0.05, 6.35, 6.45])


def test_slp_vectoriser_only_while_the_separable_runner_compiles():
    # numba leaves LLVM's SLP vectoriser off; the listener turns it on for the compilation of
    # _run_modes alone (nested compilations included) and restores the setting after
    import numba
    from numba.core import event

    from massmaps.projection import exact_fast as P

    listener = next(lis for lis in event._registered["numba:compile"] if isinstance(lis, P._SLPForModes))
    before = numba.core.config.SLP_VECTORIZE
    mine = event.Event("numba:compile", event.EventStatus.START, data={"dispatcher": P._run_modes})
    other = event.Event("numba:compile", event.EventStatus.START, data={"dispatcher": P._run_any})
    listener.notify(other)
    assert numba.core.config.SLP_VECTORIZE == before
    listener.notify(mine)
    assert numba.core.config.SLP_VECTORIZE == 1
    listener.notify(event.Event("numba:compile", event.EventStatus.END, data={"dispatcher": P._run_modes}))
    assert numba.core.config.SLP_VECTORIZE == before

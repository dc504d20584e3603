"""Tests of massmaps.projection.observables (docs/physics.md sections 6 and 10) on hand-made and generated
particle sets."""

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.spatial.transform import Rotation

from massmaps import constants as C
from massmaps import cosmology as cm
from massmaps.data import mock, mock_host, profiles
from massmaps.data.particles import Cluster, ParticleSet
from massmaps.projection.observables import (
    FIELDS,
    XRAY_NODE_FIELDS,
    expand_fields,
    image_axes,
    in_views,
    project_fields,
)

NPIX, PIX = 128, 0.1
L = NPIX * PIX
GRID = {"npix": NPIX, "pixel_Mpc": PIX}  # project_fields has no default grid
RHO_DM = (cm.PAPER.Om0 - cm.PAPER.Ob0) * cm.rho_crit()
RHO_GAS = cm.PAPER.Ob0 * cm.rho_crit()


from _halos import halo_row as _halo_row  # noqa: E402


def halo_row(M, **kw):
    return _halo_row(M, **{"halo_id": 3, **kw})


def pixel_radii(sub=1):
    """Distances of the (sub-)pixel centres from the map centre, shape (NPIX, NPIX, sub*sub)."""
    c = -L / 2 + (np.arange(NPIX * sub) + 0.5) * PIX / sub
    xx, yy = np.meshgrid(c, c)
    R = np.hypot(xx, yy).reshape(NPIX, sub, NPIX, sub).transpose(0, 2, 1, 3)
    return R.reshape(NPIX, NPIX, sub * sub)


def annulus_means(img, edges, R_pix):
    return np.array([img[(R_pix >= a) & (R_pix < b)].mean() for a, b in zip(edges[:-1], edges[1:])])


def one_particle(pos, h=0.01, m=1e12, rho=1e14, P=1e-2, l=1e-25):
    one = lambda v: np.array([v], dtype=float)  # noqa: E731
    gas = ParticleSet(
        pos=np.array([pos], dtype=float), mass=one(m), hsml=one(h), density=one(rho), pressure_e=one(P),
        temperature_keV=one(1.0), xray_emissivity=one(l),
    )  # fmt: skip
    dm = ParticleSet(pos=np.array([pos], dtype=float), mass=one(m), hsml=one(h))
    return Cluster(dm=dm, gas=gas)


# ------------------------------------------------------------------------------------------------ geometry and units
def test_image_axes_and_rotation_convention():
    cl = one_particle((1.05, -2.25, 0.45))
    expect = {2: (41, 74), 0: (68, 41), 1: (74, 68)}  # (row, column): x -> 74, y -> 41, z -> 68
    for axis, rc in expect.items():
        img = project_fields(cl, None, axis, fields=("dm",), **GRID)["dm"]
        assert np.unravel_index(np.argmax(img), img.shape) == rc
    assert image_axes(0) == (1, 2) and image_axes(1) == (2, 0) and image_axes(2) == (0, 1)
    # rotation acts on column vectors: Rz(90) takes (1.05, -2.25) to (2.25, 1.05).
    rz = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    img = project_fields(cl, rz, 2, fields=("dm",), **GRID)["dm"]
    assert np.unravel_index(np.argmax(img), img.shape) == (74, 86)
    # Particles outside the cube along the line of sight are dropped.
    out = project_fields(one_particle((0.0, 0.0, 6.45)), None, 2, **GRID)
    assert all(np.all(v == 0) for v in out.values())
    with pytest.raises(ValueError, match="unknown field"):
        project_fields(cl, None, 2, fields=("sz",), **GRID)
    with pytest.raises(ValueError, match="axis"):
        project_fields(cl, None, 3, **GRID)
    assert set(FIELDS) == {"gas", "dm", "tsz", "xray", "xray_kT", *XRAY_NODE_FIELDS} and FIELDS["tsz"][0] == "microK"
    assert expand_fields(["gas", "xray_spectrum", "tsz"]) == ("gas", *XRAY_NODE_FIELDS, "tsz")


def test_single_particle_units():
    m, rho, P, l = 2.08e9, 3e13, 4e-3, 2e-27
    out = project_fields(one_particle((0.3, 0.2, -0.1), h=0.35, m=m, rho=rho, P=P, l=l), None, 1, **GRID)
    area = PIX**2
    assert out["dm"].sum() * area * RHO_DM * L == pytest.approx(m, rel=1e-12)
    assert out["gas"].sum() * area * RHO_GAS * L == pytest.approx(m, rel=1e-12)
    # y map: sum y l_pix^2 = 4.017124e-3 (m/rho) P; S_tsz = T_cmb y 1e6.
    assert out["tsz"].sum() * area == pytest.approx(C.T_CMB_K * 1e6 * 4.017124e-3 * m / rho * P, rel=1e-5)
    assert out["xray"].sum() * area == pytest.approx(3.0856776e24 * m / rho * l, rel=1e-12)
    # One unit of S in one pixel is 4.4388e9 Msun of DM and 7.8332e8 Msun of gas (docs/physics.md section 6).
    assert area * RHO_DM * L == pytest.approx(4.4388e9, rel=1e-4)
    assert area * RHO_GAS * L == pytest.approx(7.8332e8, rel=1e-4)


def test_uniform_slab_at_mean_density_gives_one():
    # A lattice filling the cube at the mean density: S = 1 in the interior (docs/physics.md section 10.9).
    d = 0.4
    c = -L / 2 + (np.arange(int(L / d)) + 0.5) * d
    pos = np.stack(np.meshgrid(c, c, c, indexing="ij"), -1).reshape(-1, 3)
    h = np.full(len(pos), 2.5 * d)
    dm = ParticleSet(pos=pos, mass=np.full(len(pos), RHO_DM * d**3), hsml=h)
    gas = ParticleSet(pos=pos, mass=np.full(len(pos), RHO_GAS * d**3), hsml=h)
    out = project_fields(Cluster(dm=dm, gas=gas), None, 0, npix=32, pixel_Mpc=0.4, fields=("dm", "gas"))
    for f in ("dm", "gas"):
        interior = out[f][4:-4, 4:-4]
        np.testing.assert_allclose(interior, 1.0, rtol=5e-3)


# ------------------------------------------------------------------------------------------------ with SPH
def test_projected_nfw_realisation_matches_analytic():
    # (a) 1e5 particles of an untruncated NFW cut at r_max (inside the cube), H from massmaps.projection.sph,
    # against the analytic Wright & Brainerd Sigma minus the (numerically integrated) part beyond r_max.
    from massmaps.projection.sph import smoothing_lengths_and_density

    rng = np.random.default_rng(2024)
    c, R200, M200, r_max, N = 5.0, 2.0, 6e14, 6.0, 100_000
    r_s = R200 / c
    rho_s = profiles.nfw_rho_s(M200, R200, c)
    m = profiles.nfw_enclosed_mass(r_max, rho_s, r_s) / N
    r = profiles.nfw_inverse_cdf(rng.random(N), r_max / r_s) * r_s
    d = rng.standard_normal((N, 3))
    pos = r[:, None] * d / np.linalg.norm(d, axis=1)[:, None]
    H, rho = smoothing_lengths_and_density(pos, np.full(N, m), n_ngb=64, workers=2)
    dm = ParticleSet(pos=pos, mass=np.full(N, m), hsml=H, density=rho)
    img = project_fields(Cluster(dm=dm, gas=ParticleSet.empty()), None, 2, fields=("dm",), **GRID)["dm"] * RHO_DM * L

    def tail(R):
        l0 = np.sqrt(r_max**2 - R**2)
        return 2 * quad(lambda l: profiles.nfw_density(np.hypot(R, l), rho_s, r_s), l0, np.inf)[0]

    R_grid = np.geomspace(0.1, 2.2, 200)
    tail_grid = np.array([tail(R) for R in R_grid])
    R_sub = pixel_radii(sub=8)
    R_pix = pixel_radii(sub=1)[..., 0]
    use = (R_pix > 0.15) & (R_pix < 2.1)
    model = np.zeros((NPIX, NPIX))
    Rs = R_sub[use]
    model[use] = (profiles.nfw_sigma(Rs, rho_s, r_s) - np.interp(Rs, R_grid, tail_grid)).mean(axis=1)
    edges = np.geomspace(0.2, 2.0, 9)
    ratio = annulus_means(img, edges, R_pix) / annulus_means(model, edges, R_pix)
    assert np.all(np.abs(ratio - 1) < 0.03), ratio
    # Sanity: the smoothing scale in the core is well below the inner edge.
    assert np.median(H[r < 0.2]) < 0.2


@pytest.fixture(scope="module")
def cluster_3e14():
    q = Rotation.from_euler("xyz", [20, -35, 70], degrees=True).as_quat()
    return mock.make_cluster(halo_row(3e14, s=0.55, q=0.75, quat=tuple(q), seed=99))


def test_map_totals_equal_particle_mass(cluster_3e14):
    # (b) For the particles in the cube whose kernels lie inside the map, sum(S) pix^2 rho_bar L = sum m
    # (and sum y pix^2 = 4.017e-3 sum (m/rho) P_e); with all particles the map holds less (edge leakage).
    cl = cluster_3e14
    rot = Rotation.from_euler("zyz", [10, 80, -45], degrees=True).as_matrix()
    area = PIX**2
    for rotation in (None, rot):
        for axis in (0, 1, 2):
            ic, ir = image_axes(axis)
            subsets = {}
            full = project_fields(cl, rotation, axis, fields=("dm", "gas"), **GRID)
            for name, ps in cl.species().items():
                pos = ps.pos if rotation is None else ps.pos @ rotation.T
                in_cube = np.all(np.abs(pos) <= L / 2, axis=1)
                fits = (np.abs(pos[:, ic]) + ps.hsml < L / 2) & (np.abs(pos[:, ir]) + ps.hsml < L / 2)
                subsets[name] = ps.subset(in_cube & fits)
                assert (in_cube & fits).sum() > 0.5 * in_cube.sum()
                rho_bar = RHO_DM if name == "dm" else RHO_GAS
                assert full[name].sum() * area * rho_bar * L <= ps.mass[in_cube].sum() * (1 + 1e-12)
            sub = Cluster(dm=subsets["dm"], gas=subsets["gas"])
            out = project_fields(sub, rotation, axis, **GRID)
            assert out["dm"].sum() * area * RHO_DM * L == pytest.approx(sub.dm.mass.sum(), rel=1e-10)
            assert out["gas"].sum() * area * RHO_GAS * L == pytest.approx(sub.gas.mass.sum(), rel=1e-10)
            g = sub.gas
            y_sum = out["tsz"].sum() * area / (C.T_CMB_K * 1e6)
            assert y_sum == pytest.approx(
                C.Y_COEFF_PER_KEV_CM3_MPC * np.sum(g.mass / g.density * g.pressure_e), rel=1e-10
            )
            x_sum = out["xray"].sum() * area
            assert x_sum == pytest.approx(C.MPC_CM * np.sum(g.mass / g.density * g.xray_emissivity), rel=1e-10)


def test_generated_cluster_thermodynamics(cluster_3e14):
    cl = cluster_3e14
    meta = cl.meta
    g = cl.gas
    assert np.all(g.temperature_keV * C.KEV_K >= 1e4 * (1 - 1e-12))
    np.testing.assert_allclose(
        g.pressure_e, g.density * C.MSUN_PER_MPC3_IN_G_PER_CM3 / (C.MU_E * C.M_P_G) * g.temperature_keV, rtol=1e-12
    )
    # Mean IGM density: SPH gas density of the particles near R_gen averages about rho_b (1 + delta_m).
    far = (np.linalg.norm(g.pos, axis=1) > 9) & (np.linalg.norm(g.pos, axis=1) < 11)
    assert 0.5 < np.median(g.density[far]) / cm.rho_b() < 2.5
    assert meta["n_gas"] == len(g) and meta["M500c"] < meta["M200c"] < meta["M200m"]


def test_temperature_at_0p2_R500_matches_apps05():
    cfg = mock.MockConfig(per_cluster_scatter=False)
    cl = mock.make_cluster(halo_row(3e14, seed=5), cfg)
    R500 = cl.meta["R500c"]
    r = np.linalg.norm(cl.gas.pos, axis=1)
    shell = (r > 0.15 * R500) & (r < 0.25 * R500)
    kT = np.average(cl.gas.temperature_keV[shell], weights=cl.gas.mass[shell])
    assert kT == pytest.approx(profiles.apps05_kT(cl.meta["M500_eff"]), rel=0.3)
    assert kT == pytest.approx(2.3, rel=0.15)  # docs/physics.md section 4: 2.3 keV at M200m = 3e14


def test_tsz_profile_matches_line_of_sight_integral():
    # (c) Spherical, unscattered host: y map in annuli against y(R) = the LOS integral of the painted
    # A10 pressure (cut at 2 R200m, as painted), averaged over the same pixels.
    cfg = mock.MockConfig(per_cluster_scatter=False)
    cl = mock.make_cluster(halo_row(6e14, seed=8), cfg)
    host = mock_host.HostHalo.from_row(halo_row(6e14, seed=8), cfg)
    painter = mock_host.HostGas(host, cfg).painter()
    y_img = project_fields(cl, None, 2, fields=("tsz",), **GRID)["tsz"] / (C.T_CMB_K * 1e6)
    R_grid = np.geomspace(0.05, 2.5, 300)
    y_grid = profiles.y_los(R_grid, painter.profile, painter.r_max)
    R_sub = pixel_radii(sub=6)
    R_pix = pixel_radii(sub=1)[..., 0]
    use = (R_pix > 0.1) & (R_pix < 1.7)
    model = np.zeros((NPIX, NPIX))
    model[use] = np.exp(np.interp(np.log(R_sub[use]), np.log(R_grid), np.log(y_grid))).mean(axis=1)
    edges = np.geomspace(0.15, 1.5, 8)
    ratio = annulus_means(y_img, edges, R_pix) / annulus_means(model, edges, R_pix)
    assert np.all(np.abs(ratio - 1) < 0.05), ratio
    # The central y is of the size docs/physics.md section 6 quotes for this mass (between 3e14: 1.2e-5 and
    # 1e15: 5.2e-5 at 50 kpc).
    assert 1e-5 < y_img[63:65, 63:65].mean() < 6e-5


def test_same_halo_and_config_give_identical_bytes():
    # (d) Particle arrays, meta and every map are bit-identical across two runs; another seed differs.
    row = halo_row(1e14, s=0.5, q=0.8, quat=(0.1, 0.2, 0.3, 0.927), seed=1234)
    a, b = mock.make_cluster(row), mock.make_cluster(dict(row))
    for name in ("dm", "gas"):
        fa, fb = a.species()[name].arrays(), b.species()[name].arrays()
        assert fa.keys() == fb.keys()
        for k in fa:
            assert fa[k].tobytes() == fb[k].tobytes(), (name, k)
    assert a.meta == b.meta
    rot = Rotation.from_euler("xyz", [1, 2, 3]).as_matrix()
    ma, mb = project_fields(a, rot, 1, **GRID), project_fields(b, rot, 1, **GRID)
    for f in FIELDS:
        assert ma[f].tobytes() == mb[f].tobytes()
    c = mock.make_cluster({**row, "seed": 1235})
    assert c.dm.pos.shape != a.dm.pos.shape or not np.array_equal(c.dm.pos, a.dm.pos)


def test_cluster_kept_for_its_views_gives_the_same_maps():
    # make_cluster(views=...) computes SPH only for the particles those views project, with every drawn
    # particle as a neighbour: the maps of those views are identical, bit for bit, to the whole cluster's.
    row = halo_row(1e14, s=0.5, q=0.8, quat=(0.1, 0.2, 0.3, 0.927), seed=77)
    full = mock.make_cluster(row)
    rot = Rotation.from_euler("xyz", [0.4, 1.1, -0.7]).as_matrix()
    views = [None, rot]
    kept = mock.make_cluster(row, views=views, half_Mpc=L / 2)
    for name in ("dm", "gas"):
        whole, part = full.species()[name], kept.species()[name]
        mask = in_views(whole.pos, views, L / 2)
        assert 0 < len(part) == mask.sum() < len(whole)
        assert kept.meta["n_" + name + "_drawn"] == len(whole)
        for k, v in part.arrays().items():
            assert v.tobytes() == whole.arrays()[k][mask].tobytes(), (name, k)
    for R in views:
        for axis in range(3):
            a, b = project_fields(full, R, axis, **GRID), project_fields(kept, R, axis, **GRID)
            for f in FIELDS:
                assert a[f].tobytes() == b[f].tobytes(), (f, axis)
    with pytest.raises(ValueError, match="half_Mpc"):
        mock.make_cluster(row, views=views)


def test_rotations_and_view_masks_agree_to_the_bit():
    # rotate, rotate_in_cube and in_views share one arithmetic: the particles in_views keeps are exactly
    # those that rotate_in_cube (project_fields' selection) keeps for one of the views, including points
    # placed on the cube's faces and beyond the sqrt(3) half shortcut
    from massmaps.data.particles import rotate, rotate_in_cube

    rng = np.random.default_rng(5)
    half = 6.4
    views = [None, *Rotation.random(4, random_state=7).as_matrix()]
    pos = rng.uniform(-1.9 * half, 1.9 * half, (20000, 3))
    # points on the faces of every view's cube, in that view's frame
    for R in views[1:]:
        face = rng.uniform(-half, half, (200, 3))
        face[:, rng.integers(0, 3)] = half
        pos = np.vstack([pos, face @ R])
    keep = np.zeros(len(pos), bool)
    for R in views:
        rot, inside = rotate_in_cube(pos, R, half)
        assert rot.tobytes() == (pos if R is None else rotate(pos, R)).tobytes()
        if R is not None:
            np.testing.assert_allclose(rot, pos @ R.T, rtol=0, atol=1e-14)
        assert np.array_equal(inside, np.all(np.abs(rot) <= half, axis=1))
        keep |= inside
    got = in_views(pos, views, half)
    assert np.array_equal(got, keep)
    assert 0 < got.sum() < len(pos)
    assert not got[np.linalg.norm(pos, axis=1) > np.sqrt(3) * half].any()
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        rotate(np.zeros((4, 2)), views[1])
    with pytest.raises(ValueError, match="3 x 3"):
        rotate(pos, np.eye(2))


def test_mock_shard_maps_use_the_runs_cosmology():
    """The mock's surface densities are over the mean densities of the run's cosmology, not the paper's:
    the DM map times (Om - Ob) rho_crit L pixel^2 gives back the DM mass in the projection cube."""
    from massmaps import cosmology
    from massmaps.data import catalog
    from massmaps.data.mock import MockConfig, make_cluster
    from massmaps.data.sightlines import plan_sightlines
    from massmaps.projection.shards import project_shard

    cosmo = {"Om0": 0.35, "Ob0": 0.05, "H0": 67.0, "sigma8": 0.8, "ns": 0.96}
    params = cosmology.CosmologyParams(**cosmo)
    cat = catalog.draw_catalog(box_Mpc=200.0, n_halos=1, m_min=3e14, seed=4, params=params)
    plan = plan_sightlines(cat, target_per_bin=1, max_per_cluster=1, n_shards=1, seed=4)
    mock = {"components": [], "cosmology": cosmo}
    ds = project_shard(cat, plan, 0, mock_config=mock, npix=16, pixel_Mpc=0.8, fields=("dm",), progress=False)
    cl = make_cluster(cat.iloc[0], MockConfig.from_mapping(mock))
    inside = (np.abs(cl.dm.pos) <= 6.4).all(axis=1)
    mass = ds["maps"].values[0, 0].sum() * 0.8**2 * (params.Om0 - params.Ob0) * cosmology.rho_crit(params) * 12.8
    assert mass == pytest.approx(cl.dm.mass[inside].sum(), rel=0.02)

"""Tests of the per-cluster mock generator (massmaps.data.mock, massmaps.data.particles)."""

import dataclasses

import numpy as np
import pytest
from _halos import halo_row  # noqa: E402
from scipy.integrate import quad
from scipy.spatial.transform import Rotation

from massmaps import constants as C
from massmaps import cosmology as cm
from massmaps.data import mock, mock_host, profiles
from massmaps.data.particles import ParticleSet

NO_SCATTER = mock.MockConfig(per_cluster_scatter=False)


# ------------------------------------------------------------------------------------------------ config
def test_from_mapping_rejects_misspelled_key():
    with pytest.raises(ValueError, match="n_ngbb") as err:
        mock.MockConfig.from_mapping({"n_ngbb": 64, "g_ff": 1.2})
    assert "n_ngb" in str(err.value).replace("n_ngbb", "")  # the suggestion names the right key
    with pytest.raises(ValueError, match="Om"):
        mock.MockConfig.from_mapping({"cosmology": {"Om": 0.3}})
    with pytest.raises(ValueError, match="pressure_model"):
        mock.MockConfig.from_mapping({"pressure_model": "arnaud"})
    with pytest.raises(ValueError, match="unknown component"):
        mock.MockConfig.from_mapping({"components": ["host_gas", "subhaloes"]})
    with pytest.raises(ValueError, match="sum to 1"):
        mock.MockConfig.from_mapping({"p_universal": 0.5})


def test_from_mapping_round_trip():
    cfg = mock.MockConfig.from_mapping({"n_ngb": 50, "components": ["smooth"], "cosmology": {"Om0": 0.31}})
    assert cfg.n_ngb == 50 and cfg.components == ("smooth",) and cfg.cosmology.Om0 == 0.31
    assert mock.MockConfig.from_mapping(cfg.to_dict()) == cfg
    assert mock.MockConfig.from_mapping(None) == mock.MockConfig()


def test_stream_is_stable_and_named():
    a = mock_host.stream(5, "component/host_dm").random(3)
    assert np.array_equal(a, mock_host.stream(5, "component/host_dm").random(3))
    assert not np.array_equal(a, mock_host.stream(5, "component/smooth").random(3))
    assert not np.array_equal(a, mock_host.stream(6, "component/host_dm").random(3))


# ------------------------------------------------------------------------------------------------ host
def test_host_quantities_match_spec_table():
    host = mock_host.HostHalo.from_row(halo_row(1e15, c=6.41), NO_SCATTER)
    assert host.M500c == pytest.approx(4.64e14, rel=0.01)
    assert host.R500c == pytest.approx(1.177, rel=0.01)
    assert host.M200c == pytest.approx(6.79e14, rel=0.01)
    assert host.nu == pytest.approx(2.94, rel=0.01)
    assert host.r_t / host.R200m == pytest.approx(1.37, abs=0.01)
    # Collapsed fractions (docs/physics.md section 5): [1e12, 5e14] gives 0.338 / 0.491.
    assert host.f_coll == pytest.approx(0.338, abs=0.002)
    assert host.sigma_bf == pytest.approx(0.491, abs=0.002)
    assert host.pressure_type == "universal" and host.P0_factor == 1.0 and np.all(host.gas_centre == 0)


def test_disturbed_host_and_pressure_type_override():
    host = mock_host.HostHalo.from_row(halo_row(3e14, c=7.0, pressure_type="disturbed", seed=3), mock.MockConfig())
    assert host.pressure_type == "disturbed"
    assert host.c200m == pytest.approx(0.8 * 7.0)
    # Disturbed hosts get the larger gas-centre offset draw; it is not zero.
    assert 0 < np.linalg.norm(host.gas_centre) < 0.5 * host.R200m


def test_pressure_type_frequencies():
    cfg = mock.MockConfig()
    types = [mock_host.HostHalo.from_row(halo_row(1e14, c=7.9, seed=s), cfg).pressure_type for s in range(400)]
    frac = {t: types.count(t) / len(types) for t in mock_host.PRESSURE_TYPES}
    assert frac["cool_core"] == pytest.approx(0.35, abs=0.08)
    assert frac["universal"] == pytest.approx(0.30, abs=0.08)
    assert frac["disturbed"] == pytest.approx(0.35, abs=0.08)


def test_closure_against_direct_quadrature():
    # The host DM normalisation makes DM + gas + smooth inside R200m equal M200m; check the tables
    # against an independent integral of the density functions.
    # (Radial components only here; the satellites' closure masses are checked in test_substructure.py.)
    radial = mock.MockConfig(components=("host_gas", "smooth"))
    for M in (1e14, 1e15):
        host = mock_host.HostHalo.from_row(halo_row(M, seed=11), radial)
        comps = mock.build_components(host, radial)
        total = 0.0
        for comp in comps:
            f = lambda lnr: 4 * np.pi * np.exp(3 * lnr) * comp.density(np.exp(lnr))  # noqa: E731
            total += quad(f, np.log(1e-7), np.log(host.R200m), limit=400, epsabs=0, epsrel=1e-10)[0]
        assert total == pytest.approx(M, rel=2e-5)
        assert sum(c.closure_mass() for c in comps) == pytest.approx(M, rel=1e-12)
        # smooth inside R200m: a few per cent of M200m, less than the full outer term (0.117 M200m).
        smooth = next(c for c in comps if c.name == "smooth").closure_mass() / M
        assert 0.03 < smooth < 0.117


@pytest.mark.parametrize("M", [1e14, 1e15])
def test_SO_mass_of_generated_host(M):
    # Spherical host: mass inside R200m = M200m within the Poisson (binomial) error, for several seeds. A merger
    # secondary (drawn for some seeds) comes on top of M200m: its expected mass inside R200m is added.
    for seed in range(3):
        raw = mock.generate_particles(halo_row(M, seed=seed), mock.MockConfig())
        R = raw.host.R200m
        m_in = {k: ps.mass[np.linalg.norm(ps.pos, axis=1) < R] for k, ps in (("dm", raw.dm), ("gas", raw.gas))}
        total = sum(v.sum() for v in m_in.values())
        sigma = np.sqrt(sum((v**2).sum() for v in m_in.values()))
        extra = raw.component_meta["merger"].get("mass_inside_host_R200m_Msun", 0.0)
        assert abs(total - extra - M) < 3.5 * sigma
        assert sigma < 0.015 * M
        mean_density = (total - extra) / (4 / 3 * np.pi * R**3)
        assert mean_density == pytest.approx(200 * cm.rho_m(), rel=3.5 * sigma / M)


def test_particle_counts_are_stochastic_roundings():
    raw = mock.generate_particles(halo_row(3e14, seed=2), NO_SCATTER)
    for comp in raw.components:
        meta = raw.component_meta[comp.name]
        if comp.name == "host_dm":
            assert abs(meta["n_dm"] - comp.M_tab[-1] / C.M_DM_PARTICLE) < 1
        if comp.name == "host_gas":
            assert abs(meta["n_gas"] - comp.M_tab[-1] / C.M_GAS_PARTICLE) < 1
        if comp.name == "smooth":
            assert abs(meta["n_dm"] - comp.f_dm * comp.M_tab[-1] / C.M_DM_PARTICLE) < 1
    assert np.all(raw.dm.mass == C.M_DM_PARTICLE) and np.all(raw.gas.mass == C.M_GAS_PARTICLE)
    assert np.max(np.linalg.norm(raw.dm.pos, axis=1)) <= 12.5 * (1 + 1e-12)


def test_triaxial_shape_and_orientation():
    s, q = 0.5, 0.7
    rot = Rotation.from_euler("zyx", [30, 50, -20], degrees=True)
    raw = mock.generate_particles(halo_row(1e15, s=s, q=q, quat=tuple(rot.as_quat()), seed=4), NO_SCATTER)
    host_dm = mock_host.HostDarkMatter  # the first DM particles are the host's
    n_host = raw.component_meta["host_dm"]["n_dm"]
    assert isinstance(raw.components[0], host_dm)
    pos = raw.dm.pos[:n_host]
    # Second moments of a stretched isotropic distribution: <x_i^2> proportional to a_i^2.
    # (No radial cut: a spherical cut would round the distribution.)
    w, v = np.linalg.eigh(pos.T @ pos / len(pos))
    ratios = np.sqrt(w / w[-1])  # ascending: s, q, 1
    assert ratios[0] == pytest.approx(s, rel=0.05) and ratios[1] == pytest.approx(q, rel=0.05)
    # The major axis is the rotated principal x axis (eigenvector sign is arbitrary).
    assert abs(v[:, -1] @ rot.apply([1.0, 0, 0])) > 0.99
    assert abs(v[:, 0] @ rot.apply([0, 0, 1.0])) > 0.99
    # Volume-preserving axes, and gas axes rounder by half.
    host = raw.host
    assert np.prod(host.axes_dm) == pytest.approx(1.0)
    assert np.prod(host.axes_gas) == pytest.approx(1.0)
    assert host.axes_gas[1] / host.axes_gas[0] == pytest.approx(1 - 0.5 * (1 - q))
    assert host.axes_gas[2] / host.axes_gas[0] == pytest.approx(1 - 0.5 * (1 - s))
    # The painter's ellipsoidal radius undoes the stretch: host gas at ellipsoidal radius r_e is drawn from the
    # spherical M(<r_e), so the median r_e matches the table median.
    gas_comp = next(c for c in raw.components if c.name == "host_gas")
    n_gas = raw.component_meta["host_gas"]["n_gas"]
    r_e = gas_comp.painter().radius(raw.gas.pos[:n_gas])
    r_med = np.interp(0.5 * gas_comp.M_tab[-1], gas_comp.M_tab, gas_comp.r_tab)
    assert np.median(r_e) == pytest.approx(r_med, rel=0.03)


def test_fgas_within_R500c():
    for M in (1e14, 3e14, 1e15):
        for seed in (0, 1):
            raw = mock.generate_particles(halo_row(M, seed=seed), NO_SCATTER)
            R = raw.host.R500c
            m_gas = raw.gas.mass[np.linalg.norm(raw.gas.pos, axis=1) < R].sum()
            m_dm = raw.dm.mass[np.linalg.norm(raw.dm.pos, axis=1) < R].sum()
            assert 0.08 <= m_gas / (m_gas + m_dm) <= 0.14


def test_extra_component_enters_mass_closure(monkeypatch):
    # A new component only has to be registered: its closure mass is taken from the host DM.
    class Blob:
        name = "blob"

        def __init__(self, host, cfg):
            self.host, self.cfg = host, cfg

        def closure_mass(self):
            return 0.1 * self.host.M200m

        def sample(self, rng):
            n = int(round(0.1 * self.host.M200m / self.cfg.m_dm))
            pos = rng.normal(0, 0.05, (n, 3))
            return mock_host.ComponentOutput(dm=ParticleSet(pos=pos, mass=np.full(n, self.cfg.m_dm)))

    monkeypatch.setitem(mock.COMPONENTS, "blob", Blob)
    base = mock.MockConfig(per_cluster_scatter=False)
    cfg = dataclasses.replace(base, components=(*base.components, "blob"))
    a = mock.generate_particles(halo_row(3e14), base)
    b = mock.generate_particles(halo_row(3e14), cfg)
    ma = a.components[0].closure_mass()
    mb = b.components[0].closure_mass()
    assert ma - mb == pytest.approx(0.1 * 3e14, rel=1e-12)
    assert b.component_meta["blob"]["n_dm"] > 0
    # Other components' draws do not change when a component is added.
    n_gas = a.component_meta["host_gas"]["n_gas"]
    assert np.array_equal(a.gas.pos[:n_gas], b.gas.pos[:n_gas])


# ------------------------------------------------------------------------------------------------ thermo
def test_gas_thermodynamics_formulae():
    cfg = mock.MockConfig()
    rho_b = cm.rho_b()
    pos = np.array([[0.1, 0, 0], [0.2, 0, 0], [5.0, 0, 0], [6.0, 0, 0]])
    rho = np.array([1e14, 1e13, 10 * rho_b, 0.1 * rho_b])
    painter = mock_host.PressurePainter(
        profile=lambda r: np.full_like(r, 1e-2), centre=np.zeros(3), rotation=np.eye(3), axes=np.ones(3), r_max=1.0
    )
    P, kT, l_bol = mock.gas_thermodynamics(pos, rho, [painter], cfg)
    n_e = rho * C.MSUN_PER_MPC3_IN_G_PER_CM3 / (C.MU_E * C.M_P_G)
    assert n_e[2] == pytest.approx(10 * 2.18e-7, rel=0.01)  # mean IGM n_e = 2.18e-7 cm^-3
    assert P[0] == pytest.approx(1e-2) and P[1] == pytest.approx(1e-2)
    assert kT[0] == pytest.approx(1e-2 / n_e[0])
    # Outside the painter: IGM relation, and the 1e4 K floor below the mean density.
    assert kT[2] * C.KEV_K == pytest.approx(1e4 * 10**0.6)
    assert kT[3] * C.KEV_K == pytest.approx(1e4)
    np.testing.assert_allclose(P, n_e * kT, rtol=1e-14)
    np.testing.assert_allclose(l_bol, 1.4e-27 * 1.2 * np.sqrt(kT * C.KEV_K) * C.MU_E * n_e**2, rtol=1e-14)


def test_painter_cut_and_particleset_helpers():
    p = mock_host.PressurePainter(
        profile=lambda r: 1.0 / r,
        centre=np.array([1.0, 0, 0]),
        rotation=np.eye(3),
        axes=np.array([2.0, 1.0, 0.5]),
        r_max=1.0,
    )
    vals = p(np.array([[2.0, 0, 0], [3.5, 0, 0], [1.0, 0.0, 0.25]]))
    np.testing.assert_allclose(vals, [2.0, 0.0, 2.0])
    a = ParticleSet(pos=np.zeros((2, 3)), mass=np.ones(2), hsml=np.ones(2))
    b = ParticleSet(pos=np.ones((3, 3)), mass=2 * np.ones(3), hsml=np.ones(3))
    c = ParticleSet.concat([a, ParticleSet.empty(), b])
    assert len(c) == 5 and c.density is None and c.hsml.shape == (5,)
    assert c.subset(c.mass > 1).mass.tolist() == [2.0, 2.0, 2.0]
    with pytest.raises(ValueError, match="hsml"):
        ParticleSet.concat([a, ParticleSet(pos=np.ones((1, 3)), mass=np.ones(1))])
    with pytest.raises(ValueError, match="shape"):
        ParticleSet(pos=np.zeros((2, 3)), mass=np.ones(3))


def test_profile_temperature_matches_apps05():
    # Analytic (profile) kT at 0.2 R500c from the painted pressure over the B16 gas density (universal type).
    for M, expect in ((1e14, 1.1), (3e14, 2.3), (1e15, 5.1)):
        host = mock_host.HostHalo.from_row(halo_row(M, seed=0), NO_SCATTER)
        gas = mock_host.HostGas(host, NO_SCATTER)
        r = 0.2 * host.R500c
        n_e = gas.density(r) * C.MSUN_PER_MPC3_IN_G_PER_CM3 / (C.MU_E * C.M_P_G)
        kT = gas.pressure(r) / n_e
        assert kT == pytest.approx(expect, rel=0.1)
        assert kT == pytest.approx(profiles.apps05_kT(gas.pressure.M500), rel=0.3)


def test_pressure_types_modulate_the_gas_and_b12_alternative():
    cfg = NO_SCATTER  # the pressure_type column still overrides the type
    cc = mock_host.HostGas(mock_host.HostHalo.from_row(halo_row(3e14, c=7.0, pressure_type="cool_core"), cfg), cfg)
    un = mock_host.HostGas(mock_host.HostHalo.from_row(halo_row(3e14, c=7.0, pressure_type="universal"), cfg), cfg)
    R500 = cc.pressure.R500
    r = np.array([0.02, 0.05, 3.0]) * R500
    boost = cc.modulation(r)
    # Cool core: denser (n x ~2-5) and cooler core; the modulation fades outside.
    assert 2.0 < boost[0] < 6.0 and boost[1] > 1.5 and boost[2] == pytest.approx(1.0, abs=0.05)
    assert cc.host.pressure_type == "cool_core" and un.host.pressure_type == "universal"
    np.testing.assert_allclose(un.modulation(r), 1.0)
    T_ratio = (cc.pressure(r[:2]) / cc.density(r[:2])) / (un.pressure(r[:2]) / un.density(r[:2]))
    assert np.all((T_ratio > 0.4) & (T_ratio < 0.9)), T_ratio
    # Battaglia 2012 alternative: no density modulation, pressure 0.6-1.05 of A10 at the true mass inside R500c.
    b12cfg = dataclasses.replace(mock.MockConfig(per_cluster_scatter=False), pressure_model="battaglia12")
    host = mock_host.HostHalo.from_row(halo_row(1e15, c=6.41), b12cfg)
    g = mock_host.HostGas(host, b12cfg)
    assert isinstance(g.pressure, profiles.Battaglia12Pressure)
    np.testing.assert_allclose(g.modulation(r), 1.0)
    a10_true = profiles.Arnaud10Pressure(host.M500c, host.R500c)
    x = np.array([0.3, 0.6, 1.0]) * host.R500c
    assert np.all((g.pressure(x) / a10_true(x) > 0.6) & (g.pressure(x) / a10_true(x) < 1.05))


def test_meta_is_json_serialisable():
    import json

    raw = mock.generate_particles(halo_row(2e14, s=0.6, q=0.8, seed=3), mock.MockConfig())
    text = json.dumps(raw.host.meta())
    assert "pressure_type" in text and "M500c" in text and "r_t" in text


def test_poisson_self_weight():
    # Solves E[1/(w + S)] = 14/(n-1); 0.342 at n_ngb = 64 (PoU of Poisson particles, see the docstring).
    assert mock.poisson_self_weight(64) == pytest.approx(0.342, abs=0.01)
    assert mock.poisson_self_weight(64) == mock.poisson_self_weight(64)

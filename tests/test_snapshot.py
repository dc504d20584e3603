"""Gadget-4/AREPO-style snapshots and group catalogues as input (massmaps.data.snapshot and the modules
it names), on small files written here."""

import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from _snapshots import KMS, Gadget, clump, gas_fields, write_group_catalog, write_snapshot

from massmaps import cosmology as cm
from massmaps import store
from massmaps.constants import KEV_K, M_P_G, MSUN_PER_MPC3_IN_G_PER_CM3, MU_E
from massmaps.data.catalog import CENTRE_COLUMNS, COLUMNS
from massmaps.data.group_catalog import read_group_catalog
from massmaps.data.snapshot import DM, GAS, ShardParticles, Snapshot, gas_thermodynamics
from massmaps.data.snapshot_config import SnapshotError, check_sources
from massmaps.projection.observables import XRAY_NODE_FIELDS, project_fields

ROOT = Path(__file__).resolve().parents[1]
BOX = 30.0  # physical Mpc
NPIX, PIX = 32, 0.2
HALF = NPIX * PIX / 2
CFG = {"n_ngb": 32, "pad_Mpc": 1.0, "sph_workers": 1}
EYE = [np.eye(3)]


def halo_parts(centre, seed=0, n_dm=2000, n_gas=1500, box=BOX):
    """A DM and gas clump about ``centre`` (the same relative positions for the same seed)."""
    rng = np.random.default_rng(seed)
    pos_dm, _, m_dm = clump(rng, centre, box, n_dm, 0.6, 1e11)
    pos_gas, rel_gas, m_gas = clump(rng, centre, box, n_gas, 0.5, 2e10)
    gas = {"pos": pos_gas, "mass": m_gas, **gas_fields(rel_gas, 2e10)}
    return {GAS: gas, DM: {"pos": pos_dm, "mass": m_dm}}


def row(centre, halo_id=0):
    return {"halo_id": halo_id, **dict(zip(CENTRE_COLUMNS, centre))}


def maps_of(files, centre, cfg=None, fields=("gas", "dm", "tsz", "xray"), **kw):
    sp = ShardParticles({**CFG, "files": str(files), **(cfg or {})}, [row(centre)], {0: EYE}, HALF, **kw)
    cl = sp.cluster(0)
    return cl, project_fields(cl, None, 2, npix=NPIX, pixel_Mpc=PIX, fields=fields, redshift=sp.redshift)


@pytest.fixture(scope="module")
def snap(tmp_path_factory):
    """One single-file snapshot with a halo in the middle of the box."""
    d = tmp_path_factory.mktemp("snap")
    centre = np.array([15.0, 14.0, 16.0])
    main = halo_parts(centre)
    # a compact satellite outside the projection cube, partly in the neighbour-search pad (read, not projected);
    # a view turned by 45 degrees about z sees it
    sat_centre = centre + [HALF + 1.2, 0.0, 0.0]
    sat = halo_parts(sat_centre, seed=9, n_dm=100, n_gas=100)
    for ps in sat.values():
        ps["pos"] = sat_centre + 0.1 / 0.6 * (ps["pos"] - sat_centre)
    parts = {t: {q: np.concatenate([main[t][q], sat[t][q]]) for q in main[t]} for t in main}
    (path,) = write_snapshot(d / "snap_010", parts, BOX)
    return path, centre, parts


# ------------------------------------------------------------------------------------------------ units
def test_units_converted_to_physical_msun_and_mpc(snap):
    path, centre, parts = snap
    u = Gadget()  # z = 0.25, h = 0.7, kpc/h, 1e10 Msun/h, km/s
    with h5py.File(path, "r") as f:
        raw_pos = f["PartType1/Coordinates"][0]
        raw_m = f["PartType1/Masses"][0]
        raw_rho = f["PartType0/Density"][0]
        assert f["Header"].attrs["BoxSize"] == pytest.approx(BOX * 0.7 * 1.25 * 1000 * 3.0856776e24 / 3.085678e24)
    # by hand: ckpc/h -> physical Mpc is x a / h / 1000 (times the Mpc of the file's kpc); 1e10 Msun/h
    kpc = 3.085678e21 / 3.0856776e24
    np.testing.assert_allclose(raw_pos * kpc / 1.25 / 0.7, parts[DM]["pos"][0], rtol=1e-12)
    assert raw_m * 1.989e43 / 1.98841e33 / 0.7 == pytest.approx(1e11, rel=1e-12)
    assert raw_rho * (1.989e43 / 1.98841e33 / 0.7) / (kpc / 1.25 / 0.7) ** 3 == pytest.approx(
        parts[GAS]["density"][0], rel=1e-12
    )

    s = Snapshot(path)
    assert s.a == pytest.approx(0.8) and s.z == pytest.approx(0.25) and s.h == pytest.approx(0.7)
    np.testing.assert_allclose(s.box_Mpc, BOX, rtol=1e-12)
    dm, _ = s.read_near(DM, ("mass",), centre[None], 100.0)
    np.testing.assert_allclose(dm["pos"], parts[DM]["pos"], rtol=1e-12)
    np.testing.assert_allclose(dm["mass"], 1e11, rtol=1e-12)
    gas, missing = s.read_near(GAS, ("mass", "density", "hsml", "u", "x_e"), centre[None], 100.0)
    assert missing == {}
    for q in ("density", "hsml", "u", "x_e"):
        np.testing.assert_allclose(gas[q], parts[GAS][q], rtol=1e-12, err_msg=q)
    assert u.L == pytest.approx(kpc / 1.25 / 0.7)


def test_gas_temperature_pressure_and_emissivity():
    # u = 1000 (km/s)^2; fully ionised primordial gas (mu = 0.5882): T = 2/3 u mu m_p / k_B = 4.7509e4 K
    x_ion = (1 + 0.76) / (2 * 0.76)
    rho = np.array([1e14, 1e14])
    P, kT, l = gas_thermodynamics(rho, np.array([1e3, 1e3]) * KMS**2, np.array([x_ion, 0.0]))
    assert kT[0] * KEV_K == pytest.approx(4.75088e4, rel=1e-5)
    assert kT[1] * KEV_K == pytest.approx(9.84939e4, rel=1e-5)  # neutral: mu = 4 / (1 + 3X) = 1.2195
    n_e = rho[0] * MSUN_PER_MPC3_IN_G_PER_CM3 / (MU_E * M_P_G)  # fully ionised: n_e = rho / (mu_e m_p)
    assert P[0] == pytest.approx(n_e * kT[0], rel=1e-12)
    assert l[0] == pytest.approx(1.4e-27 * 1.2 * np.sqrt(kT[0] * KEV_K) * MU_E * n_e**2, rel=1e-12)
    assert P[1] == 0.0 and l[1] == 0.0  # no free electrons


def test_cluster_temperature_from_internal_energy(snap):
    path, centre, parts = snap
    cl, _ = maps_of(path, centre, fields=("tsz",))
    np.testing.assert_allclose(cl.gas.temperature_keV, 5.0, rtol=1e-10)  # gas_fields wrote u for kT = 5 keV
    # positions are relative to the centre; the file's SmoothingLength and Density are used as they are
    d = parts[GAS]["pos"] - centre
    inside = np.all(np.abs(d) <= HALF + CFG["pad_Mpc"], axis=1)
    assert len(cl.gas) == inside.sum()
    np.testing.assert_allclose(np.sort(cl.gas.hsml), np.sort(parts[GAS]["hsml"][inside]), rtol=1e-12)


def test_masstable_used_when_masses_absent(tmp_path):
    rng = np.random.default_rng(1)
    pos, _, _ = clump(rng, [10.0, 10.0, 10.0], BOX, 500, 0.5, 1.0)
    (path,) = write_snapshot(tmp_path / "snap", {DM: {"pos": pos, "mass": np.zeros(500)}}, BOX, mass_table={DM: 3e11})
    with h5py.File(path, "r") as f:
        assert "Masses" not in f["PartType1"]
        assert f["Header"].attrs["MassTable"][1] == pytest.approx(3e11 * 0.7 / 1e10 * 1.98841 / 1.989)
    dm, _ = Snapshot(path).read_near(DM, ("mass",), np.array([[10.0, 10.0, 10.0]]), 100.0)
    np.testing.assert_allclose(dm["mass"], 3e11, rtol=1e-12)


# ------------------------------------------------------------------------------------------------ maps
def test_projected_mass_equals_particle_mass_in_the_cube(snap):
    path, centre, parts = snap
    cl, maps = maps_of(path, centre)
    z = 0.25
    rho_c = cm.rho_crit(cm.PAPER) * (1 + z) ** 3
    L = NPIX * PIX
    for f, rho_bar in (("dm", (0.3 - 0.045) * rho_c), ("gas", 0.045 * rho_c)):
        ps = parts[DM if f == "dm" else GAS]
        in_cube = np.all(np.abs(ps["pos"] - centre) <= HALF, axis=1)
        assert 0 < in_cube.sum() < len(in_cube)  # some particles lie outside the cube
        mass_map = maps[f].sum() * PIX**2 * rho_bar * L
        assert mass_map == pytest.approx(ps["mass"][in_cube].sum(), rel=1e-3), f
    assert maps["tsz"].max() > 0 and maps["xray"].max() > 0


def test_rotated_view_projects_the_rotated_cube(snap):
    from scipy.spatial.transform import Rotation

    path, centre, parts = snap
    R = Rotation.from_euler("z", 45, degrees=True).as_matrix()
    rel = parts[DM]["pos"] - centre
    in_view = np.all(np.abs(rel @ R.T) <= HALF, axis=1)
    beyond = np.any(np.abs(rel) > HALF + CFG["pad_Mpc"], axis=1)
    assert (in_view & beyond).sum() > 10  # in the turned view, outside the unturned padded cube

    def dm_map(rotations, cfg):
        sp = ShardParticles({**CFG, "files": str(path), **cfg}, [row(centre)], {0: rotations}, HALF)
        return sp, project_fields(sp.cluster(0), R, 2, npix=NPIX, pixel_Mpc=PIX, fields=("dm",), redshift=0.25)["dm"]

    sp, turned = dm_map([R, R, np.eye(3)], {})
    assert len(sp.rotations[0]) == 2  # one selection per distinct rotation
    _, everything = dm_map([np.eye(3)], {"pad_Mpc": 4.0})  # reads every particle
    np.testing.assert_allclose(turned, everything, rtol=1e-9, atol=1e-12 * everything.max())
    _, unturned = dm_map([np.eye(3)], {})
    assert unturned.sum() < turned.sum() * (1 - 0.5 * (in_view & beyond).sum() / in_view.sum())


def test_periodic_wrap_gives_the_same_map(tmp_path):
    inner = np.array([15.0, 15.0, 15.0])
    edge = np.array([0.3, BOX - 0.2, 29.9])  # the halo straddles three faces of the box
    a = write_snapshot(tmp_path / "inner", halo_parts(inner, seed=5), BOX)[0]
    b = write_snapshot(tmp_path / "edge", halo_parts(edge, seed=5), BOX)[0]
    cl_a, map_a = maps_of(a, inner)
    cl_b, map_b = maps_of(b, edge)
    assert len(cl_a.dm) == len(cl_b.dm) and len(cl_a.gas) == len(cl_b.gas)
    for f in map_a:
        np.testing.assert_allclose(map_b[f], map_a[f], rtol=1e-7, atol=1e-12 * map_a[f].max(), err_msg=f)
    # without wrapping, the halo at the edge loses most of its particles
    cl_c, map_c = maps_of(b, edge, cfg={"periodic": False})
    assert len(cl_c.dm) < 0.5 * len(cl_b.dm)
    assert map_c["dm"].sum() < 0.5 * map_b["dm"].sum()


def test_multi_file_snapshot_reads_like_one_file(snap, tmp_path):
    path, centre, parts = snap
    paths = write_snapshot(tmp_path / "snap_010", parts, BOX, n_files=3)
    assert [p.name for p in paths] == ["snap_010.0.hdf5", "snap_010.1.hdf5", "snap_010.2.hdf5"]
    with h5py.File(paths[1], "r") as f:
        assert 0 < f["Header"].attrs["NumPart_ThisFile"][1] < len(parts[DM]["pos"])
    _, one = maps_of(path, centre)
    _, three = maps_of(tmp_path / "snap_010.*.hdf5", centre)
    for f in one:
        np.testing.assert_allclose(three[f], one[f], rtol=1e-10, atol=1e-14 * one[f].max(), err_msg=f)
    with pytest.raises(SnapshotError, match=r"matches 2 file\(s\).*NumFilesPerSnapshot = 3"):
        Snapshot(tmp_path / "snap_010.[01].hdf5")


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "omit, cfg, words",
    [
        ("PartType0/InternalEnergy", {}, "PartType0/InternalEnergy"),
        ("PartType0/ElectronAbundance", {}, "PartType0/ElectronAbundance"),
        ("PartType1/Masses", {}, "PartType1/Masses"),
        ("PartType1/Coordinates", {}, "PartType1/Coordinates"),
    ],
)
def test_missing_dataset_named_with_its_file(tmp_path, omit, cfg, words):
    centre = np.array([15.0, 15.0, 15.0])
    paths = write_snapshot(tmp_path / "snap", halo_parts(centre, n_dm=200, n_gas=200), BOX, n_files=2, omit=(omit,))
    with pytest.raises(SnapshotError) as err:
        maps_of(tmp_path / "snap.*.hdf5", centre, cfg)
    assert words in str(err.value) and str(paths[0]) in str(err.value)
    if omit == "PartType1/Masses":
        assert "MassTable[1] = 0" in str(err.value)


def test_missing_electron_abundance_can_be_assumed_ionised(tmp_path):
    centre = np.array([15.0, 15.0, 15.0])
    parts = halo_parts(centre, n_dm=200, n_gas=300)
    (a,) = write_snapshot(tmp_path / "with", parts, BOX)
    (b,) = write_snapshot(tmp_path / "without", parts, BOX, omit=("PartType0/ElectronAbundance",))
    _, with_xe = maps_of(a, centre)
    _, assumed = maps_of(b, centre, {"missing_electron_abundance": "fully_ionised"})
    np.testing.assert_allclose(assumed["tsz"], with_xe["tsz"], rtol=1e-12)  # gas_fields wrote fully ionised x_e


def test_inconsistent_units_rejected_with_file_and_attribute(snap, tmp_path):
    path, centre, parts = snap
    # config declares kpc/h, the file says Mpc/h
    mpc = write_snapshot(tmp_path / "mpc", parts, BOX, units=Gadget(length_cm=3.085678e24))[0]
    with pytest.raises(SnapshotError) as err:
        Snapshot(mpc, {"length_unit_cm": 3.085678e21})
    msg = str(err.value)
    assert str(mpc) in msg and "Parameters/UnitLength_in_cm" in msg and "length_unit_cm" in msg
    # the same file read without a declaration is the same halo
    _, m_mpc = maps_of(mpc, centre)
    _, m_kpc = maps_of(path, centre)
    np.testing.assert_allclose(m_mpc["dm"], m_kpc["dm"], rtol=1e-9, atol=1e-12 * m_kpc["dm"].max())
    # a dataset whose own scaling attributes disagree with the header
    bad = write_snapshot(tmp_path / "bad", parts, BOX)[0]
    with h5py.File(bad, "r+") as f:
        f["PartType1/Coordinates"].attrs["to_cgs"] = 3.085678e24
        f["PartType0/Density"].attrs["a_scaling"] = 0.0
    with pytest.raises(SnapshotError, match=r"PartType1/Coordinates has attribute to_cgs") as err:
        maps_of(bad, centre)
    assert str(bad) in str(err.value)
    with h5py.File(bad, "r+") as f:
        f["PartType1/Coordinates"].attrs["to_cgs"] = 3.085678e21
    with pytest.raises(SnapshotError, match=r"PartType0/Density has attribute a_scaling = 0"):
        maps_of(bad, centre)


def test_units_must_be_declared_when_the_file_has_none(snap, tmp_path):
    path, centre, parts = snap
    bare = write_snapshot(tmp_path / "bare", parts, BOX, unit_attrs=False, scaling=False)[0]
    with pytest.raises(
        SnapshotError,
        match=r"no unit attribute Header/UnitLength_in_cm or Parameters/UnitLength_in_cm; declare particles.snapshot.length_unit_cm",
    ):
        Snapshot(bare)
    units = {"length_unit_cm": 3.085678e21, "mass_unit_g": 1.989e43, "velocity_unit_cm_s": 1e5}
    _, declared = maps_of(bare, centre, units)
    _, from_file = maps_of(path, centre)
    for f in declared:
        np.testing.assert_allclose(declared[f], from_file[f], rtol=1e-12)


def test_cosmology_and_scale_factor_checked(snap, tmp_path):
    path, centre, parts = snap
    with pytest.raises(SnapshotError, match=r"Parameters/Omega0 = 0.3 but cosmology.Om0 = 0.31"):
        maps_of(path, centre, params=cm.CosmologyParams(Om0=0.31))
    with pytest.raises(SnapshotError, match=r"Parameters/HubbleParam = 0.7 but cosmology.H0 / 100 = 0.677"):
        maps_of(path, centre, params=cm.CosmologyParams(H0=67.7))
    odd = write_snapshot(tmp_path / "odd", parts, BOX)[0]
    with h5py.File(odd, "r+") as f:
        f["Header"].attrs["Time"] = 3.2  # a time, not a scale factor
    with pytest.raises(SnapshotError, match=r"Header/Time = 3.2 is not the scale factor"):
        Snapshot(odd)


def test_periodic_cube_must_fit_in_the_box(snap):
    path, centre, _ = snap
    with pytest.raises(ValueError, match="more than half the periodic box"):
        ShardParticles({**CFG, "files": str(path), "pad_Mpc": 12.0}, [row(centre)], {0: EYE}, HALF)


# ------------------------------------------------------------------------------------------------ group catalogue
def test_group_catalog_read_and_converted(tmp_path):
    pos = np.array([[1.0, 2.0, 3.0], [29.9, 0.1, 15.0], [10.0, 10.0, 10.0], [5.0, 5.0, 5.0]])
    M = np.array([2e14, 5e14, 3e13, 0.0])
    R = np.array([1.2, 1.6, 0.6, 0.0])
    paths = write_group_catalog(tmp_path / "fof_subhalo_tab_010", pos, M, R, BOX, n_files=2)
    with h5py.File(paths[0], "r") as f:
        raw = float(f["Group/Group_M_Mean200"][0])
    assert raw * 1.989e43 / 1.98841e33 / 0.7 == pytest.approx(2e14, rel=1e-6)  # 1e10 Msun/h, float32
    cat = read_group_catalog(tmp_path / "fof_subhalo_tab_010.*.hdf5", {}, m_min=1e13, params=cm.PAPER)
    assert list(cat.columns) == COLUMNS + CENTRE_COLUMNS
    assert cat["halo_id"].tolist() == [1, 0, 2]  # index in the whole catalogue, by decreasing mass
    np.testing.assert_allclose(cat["M200m_Msun"], [5e14, 2e14, 3e13], rtol=1e-6)
    np.testing.assert_allclose(cat["R200m_Mpc"], [1.6, 1.2, 0.6], rtol=1e-6)
    np.testing.assert_allclose(cat[CENTRE_COLUMNS].to_numpy(), pos[[1, 0, 2]], rtol=1e-6)
    assert cat["c200m"].isna().all() and (cat["rot_qw"] == 1).all()
    top = read_group_catalog(tmp_path / "fof_subhalo_tab_010.*.hdf5", {}, m_min=1e14, n_halos=1)
    assert top["halo_id"].tolist() == [1]
    assert top["seed"].iloc[0] == cat["seed"].iloc[0]  # per-group seeds do not depend on the cut


def test_group_catalog_missing_dataset_named(tmp_path):
    paths = write_group_catalog(
        tmp_path / "fof", [[1.0, 2.0, 3.0]], [2e14], [1.2], BOX, omit=("Group/Group_R_Mean200",)
    )
    with pytest.raises(SnapshotError) as err:
        read_group_catalog(paths[0])
    assert str(paths[0]) in str(err.value) and "Group/Group_R_Mean200" in str(err.value)


def test_user_catalogue_keeps_halo_centres(tmp_path):
    from massmaps.data.catalog import read_catalog

    df = pd.DataFrame({"M200m_Msun": [2e14, 5e14], "centre_x_Mpc": [1.0, 2.0], "centre_y_Mpc": [3.0, 4.0],
                       "centre_z_Mpc": [5.0, 6.0]})  # fmt: skip
    df.to_csv(tmp_path / "halos.csv", index=False)
    cat = read_catalog(tmp_path / "halos.csv")
    assert list(cat.columns) == COLUMNS + CENTRE_COLUMNS
    assert cat["centre_x_Mpc"].tolist() == [2.0, 1.0]  # sorted by mass with their rows
    df[["M200m_Msun", "centre_x_Mpc"]].to_csv(tmp_path / "partial.csv", index=False)
    with pytest.raises(ValueError, match=r"partial.csv: has \['centre_x_Mpc'\] but not all of the centre columns"):
        read_catalog(tmp_path / "partial.csv")
    df.loc[1, "centre_y_Mpc"] = np.nan
    df.to_csv(tmp_path / "nan.csv", index=False)
    with pytest.raises(ValueError, match=r"nan.csv: column 'centre_y_Mpc' must be finite"):
        read_catalog(tmp_path / "nan.csv")


def test_source_combinations_checked():
    snap = {"files": "snap.hdf5", "group_catalog": "fof.hdf5"}
    check_sources({"source": "group_catalog"}, {"source": "snapshot", "snapshot": snap})
    check_sources({"source": "file"}, {"source": "snapshot", "snapshot": snap})
    with pytest.raises(ValueError, match="catalog.source: group_catalog needs particles.source: snapshot"):
        check_sources({"source": "group_catalog"}, {"source": "mock", "snapshot": snap})
    with pytest.raises(ValueError, match="needs halo centres"):
        check_sources({"source": "hmf"}, {"source": "snapshot", "snapshot": snap})
    with pytest.raises(ValueError, match="particles.snapshot.files"):
        check_sources({"source": "file"}, {"source": "snapshot", "snapshot": {}})
    with pytest.raises(ValueError, match="n_ngbb"):
        check_sources({"source": "hmf"}, {"source": "mock", "snapshot": {"n_ngbb": 3}})


# ------------------------------------------------------------------------------------------------ SWIFT-style
def write_swift(path, parts, box, a=0.8, h=0.7, physical=()):
    """What SWIFT writes: comoving Mpc and 1e10 Msun without h, h = H / gamma_K in SmoothingLengths, and each
    dataset's a-scale exponent (comoving InternalEnergies: a^(3 (gamma - 1)) u = a^2 u). ``physical``: datasets
    written as physical values, flagged "Value stored as physical" = 1 as SWIFT does."""
    UL, UM, Ut = 3.08567758e24, 1.98841e43, 3.08567758e19
    counts = np.array([len(parts[GAS]["pos"]), len(parts[DM]["pos"]), 0, 0, 0, 0, 0])
    with h5py.File(path, "w") as f:
        hdr = f.create_group("Header")
        hdr.attrs.update({"BoxSize": np.full(3, box / a), "Scale-factor": [a], "Redshift": [1 / a - 1],
                          "NumPart_ThisFile": counts, "NumPart_Total": counts, "NumPart_Total_HighWord": 0 * counts,
                          "MassTable": np.zeros(7), "NumFilesPerSnapshot": [1]})  # fmt: skip
        cosmo = f.create_group("Cosmology")
        cosmo.attrs.update({"h": [h], "Omega_m": [0.3], "Omega_b": [0.045], "Scale-factor": [a],
                            "Redshift": [1 / a - 1]})  # fmt: skip
        units = f.create_group("Units")
        units.attrs.update({"Unit length in cgs (U_L)": [UL], "Unit mass in cgs (U_M)": [UM],
                            "Unit time in cgs (U_t)": [Ut]})  # fmt: skip
        L, M, V = UL / 3.0856776e24, UM / 1.98841e33, UL / Ut  # comoving Mpc, Msun, cm/s per internal unit
        # (a-scale exponent, U_L, U_M, U_t exponents) of each dataset, as SWIFT writes them
        dims = {"Coordinates": (1, 1, 0, 0), "Masses": (0, 0, 1, 0), "Densities": (-3, -3, 1, 0),
                "InternalEnergies": (-2, 2, 0, -2), "SmoothingLengths": (1, 1, 0, 0)}  # fmt: skip
        for t, p in parts.items():
            g = f.create_group(f"PartType{t}")
            data = {"Coordinates": p["pos"] / L, "Masses": p["mass"] / M}
            if t == GAS:
                data |= {"Densities": p["density"] / (M / L**3), "InternalEnergies": p["u"] / V**2,
                         "SmoothingLengths": p["hsml"] / L / 1.936492}  # fmt: skip
            for name, v in data.items():
                ea, el, em, et = dims[name]
                stored_physical = name in physical
                d = g.create_dataset(name, data=v if stored_physical else v / a**ea)
                cgs = UL**el * UM**em * Ut**et
                d.attrs.update({"a-scale exponent": [float(ea)], "h-scale exponent": [0.0], "U_L exponent": [float(el)],
                                "U_M exponent": [float(em)], "U_t exponent": [float(et)],
                                "Conversion factor to CGS (not including cosmological corrections)": [cgs],
                                "Value stored as physical": [int(stored_physical)]})  # fmt: skip


def test_swift_layout_reads_the_same_halo(snap, tmp_path):
    path, centre, parts = snap
    # the same physical particles at the same redshift, written the SWIFT way
    z = 0.25
    write_swift(tmp_path / "swift.hdf5", parts, BOX, a=1 / (1 + z))
    cfg = {"layout": "swift"}  # the default hsml_factor turns SWIFT's h into the Wendland C2 support radius
    with pytest.raises(SnapshotError, match="missing dataset PartType0/ElectronAbundance"):
        maps_of(tmp_path / "swift.hdf5", centre, cfg)
    cl_s, m_s = maps_of(tmp_path / "swift.hdf5", centre, {**cfg, "missing_electron_abundance": "fully_ionised"})
    cl_g, m_g = maps_of(path, centre)
    np.testing.assert_allclose(np.sort(cl_s.gas.hsml), np.sort(cl_g.gas.hsml), rtol=1e-6)
    for f in m_g:
        np.testing.assert_allclose(m_s[f], m_g[f], rtol=1e-5, atol=1e-9 * m_g[f].max(), err_msg=f)
    with pytest.raises(SnapshotError, match="no group catalogue"):
        read_group_catalog(tmp_path / "swift.hdf5", cfg)


# ------------------------------------------------------------------------------------------------ bad content
#: case -> (file kind, dataset or attribute group, row or attribute name, value written over it, words of the error)
CORRUPTED = {
    "coordinates far outside the box": ("gadget", "PartType1/Coordinates", (17, 0), 1.2e247,
                                        "value 1.2e+247 at row 17, column 0 outside [0, BoxSize="),
    "NaN density": ("gadget", "PartType0/Density", 5, np.nan, "value nan at row 5; expected finite values > 0"),
    "negative mass": ("gadget", "PartType1/Masses", 3, -2.0, "value -2 at row 3; expected finite values > 0"),
    "infinite internal energy": ("gadget", "PartType0/InternalEnergy", 7, np.inf, "value inf at row 7"),
    "negative electron abundance": ("gadget", "PartType0/ElectronAbundance", 0, -0.1,
                                    "value -0.1 at row 0; expected finite values >= 0"),
    "group centre outside the box": ("group", "Group/GroupPos", (0, 2), -50.0,
                                     "value -50 at row 0, column 2 outside [0, BoxSize="),
    "short NumPart_Total_HighWord": ("gadget", "Header", "NumPart_Total_HighWord", np.zeros(5, np.uint32),
                                     "Header/NumPart_Total has 6, Header/NumPart_Total_HighWord has 5"),
    "long MassTable": ("gadget", "Header", "MassTable", np.zeros(7), "Header/MassTable has 7"),
    "swift u with an impossible a-scale exponent": ("swift", "PartType0/InternalEnergies", "a-scale exponent", [1.0],
                                                    "a-scale exponent = 1, expected 0 or -2"),
}  # fmt: skip


def _overwrite(path, where, index, value):
    with h5py.File(path, "r+") as f:
        if isinstance(index, str):
            f[where].attrs[index] = value
        else:
            f[where][index] = value


@pytest.mark.parametrize("case", [*CORRUPTED, "swift comoving fields at a = 0.8"])
def test_snapshot_content_checked_and_swift_conventions_converted(tmp_path, case):
    """Bad values and header arrays are errors naming file, dataset or attribute, and value; SWIFT converts.

    SWIFT's comoving fields are made physical with the exponents the file declares (or as stored physical),
    and its smoothing lengths h get the Wendland C2 support H = 1.936492 h by default.
    """
    centre = np.array([15.0, 15.0, 15.0])
    parts = halo_parts(centre, n_dm=200, n_gas=300)
    swift = {"layout": "swift", "missing_electron_abundance": "fully_ionised"}
    if case in CORRUPTED:
        kind, where, index, value, words = CORRUPTED[case]
        if kind == "group":
            (path,) = write_group_catalog(tmp_path / "fof", [centre], [2e14], [1.2], BOX)
        elif kind == "swift":
            path = tmp_path / "swift.hdf5"
            write_swift(path, parts, BOX)
        else:
            (path,) = write_snapshot(tmp_path / "snap", parts, BOX)
        _overwrite(path, where, index, value)
        with pytest.raises(SnapshotError) as err:
            read_group_catalog(path) if kind == "group" else maps_of(path, centre, swift if kind == "swift" else {})
        msg = str(err.value)
        assert str(path) in msg and where in msg and words in msg, msg
        return
    # gas_fields wrote kT = 5 keV: SWIFT's comoving u = a^2 u must not read as a^2 x 5 keV
    inside = np.all(np.abs(parts[GAS]["pos"] - centre) <= HALF + CFG["pad_Mpc"], axis=1)
    for physical in ((), ("InternalEnergies", "Densities")):
        path = tmp_path / f"swift{len(physical)}.hdf5"
        write_swift(path, parts, BOX, a=0.8, physical=physical)
        cl, _ = maps_of(path, centre, swift, fields=("tsz",))
        np.testing.assert_allclose(cl.gas.temperature_keV, 5.0, rtol=1e-6)
        np.testing.assert_allclose(np.sort(cl.gas.density), np.sort(parts[GAS]["density"][inside]), rtol=1e-6)
        np.testing.assert_allclose(np.sort(cl.gas.hsml), np.sort(parts[GAS]["hsml"][inside]), rtol=1e-6)
    cl, _ = maps_of(path, centre, {**swift, "hsml_factor": 1.0}, fields=("gas",))  # an explicit factor overrides
    np.testing.assert_allclose(np.sort(cl.gas.hsml), np.sort(parts[GAS]["hsml"][inside]) / 1.936492, rtol=1e-6)


# ------------------------------------------------------------------------------------------------ workflow
def test_project_shard_from_a_snapshot(snap, tmp_path):
    from massmaps.data.sightlines import plan_sightlines
    from massmaps.projection.shards import project_shard

    path, centre, parts = snap
    M = np.array([3e14])
    write_group_catalog(tmp_path / "fof", centre[None], M, [1.5], BOX)
    cat = read_group_catalog(tmp_path / "fof.hdf5")
    plan = plan_sightlines(cat, target_per_bin=3, max_per_cluster=3, n_shards=1)
    ds = project_shard(cat, plan, 0, source="snapshot", snapshot_config={**CFG, "files": str(path)},
                       cosmology={"Om0": 0.3, "Ob0": 0.045, "H0": 70.0}, npix=NPIX, pixel_Mpc=PIX, progress=False)  # fmt: skip
    assert ds.attrs["particle_source"] == "snapshot" and ds.attrs["snapshot_redshift"] == pytest.approx(0.25)
    assert sorted(ds["axis"].values.tolist()) == [0, 1, 2]
    cl, _ = maps_of(path, cat[CENTRE_COLUMNS].to_numpy()[0])  # GroupPos is float32
    for i, axis in enumerate(ds["axis"].values):
        expect = project_fields(cl, None, int(axis), npix=NPIX, pixel_Mpc=PIX, redshift=0.25)
        for k, f in enumerate(ds["field"].values):
            np.testing.assert_allclose(ds["maps"].values[i, k], expect[f], rtol=1e-6, atol=1e-7 * expect[f].max())


WORKFLOW = """
run: snap
seed: 3
catalog: {{source: group_catalog, m_min_Msun: 1.0e+14}}
sightlines: {{target_per_bin: 2, max_per_cluster: 3, n_shards: 2}}
particles:
  source: snapshot
  snapshot: {{files: "{files}", group_catalog: "{groups}", n_ngb: 32, pad_Mpc: 1.0}}
projection: {{npix: 16, pixel_Mpc: 0.8}}
dataset: {{chunk_sightlines: 4}}
"""


def test_workflow_from_group_catalog_to_dataset(tmp_path):
    """catalog from the group file -> plan -> project (two shards) -> assembled dataset, through Snakemake."""
    sim = tmp_path / "sim"
    sim.mkdir()
    centres = np.array([[15.0, 15.0, 15.0], [0.5, 29.6, 14.0], [7.0, 22.0, 25.0]])
    M = np.array([4e14, 2e14, 5e13])  # the third is below m_min
    parts = [halo_parts(c, seed=i, n_dm=600, n_gas=400) for i, c in enumerate(centres)]
    merged = {t: {q: np.concatenate([p[t][q] for p in parts]) for q in parts[0][t]} for t in (GAS, DM)}
    write_snapshot(sim / "snap_010", merged, BOX, n_files=2)
    write_group_catalog(sim / "fof_subhalo_tab_010", centres, M, [1.5, 1.2, 0.8], BOX, n_files=2)
    work = tmp_path / "work"
    work.mkdir()
    (work / "snap.yaml").write_text(
        WORKFLOW.format(files=sim / "snap_010.*.hdf5", groups=sim / "fof_subhalo_tab_010.*.hdf5")
    )
    target = "results/snap/dataset/maps.zarr"
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(work),
           "--configfile", str(ROOT / "config" / "config.yaml"), str(work / "snap.yaml"), "--cores", "2", target]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    res = work / "results" / "snap"
    cat = pd.read_parquet(res / "catalog" / "halos.parquet")
    assert cat["halo_id"].tolist() == [0, 1]
    np.testing.assert_allclose(cat[CENTRE_COLUMNS].to_numpy(), centres[:2], rtol=1e-6)
    ds = store.open_store(res / "dataset" / "maps.zarr")
    maps = ds["maps"].values
    assert maps.shape[1:] == (5 + len(XRAY_NODE_FIELDS), 16, 16) and np.isfinite(maps).all()
    emits = maps[:, 3] > 0  # the snapshot gas's emission-weighted temperature, where it emits
    assert emits.any() and (maps[:, 4][emits] > 0).all() and (maps[:, 4][~emits] == 0).all()
    # its X-ray spectrum: the node maps add up to the bolometric map
    np.testing.assert_allclose(
        maps[:, 5:].sum(axis=1, dtype=np.float64), maps[:, 3], rtol=1e-5, atol=1e-6 * maps[:, 3].max()
    )
    assert ds.attrs["particle_source"] == "snapshot"
    assert sorted(set(ds["halo_id"].values.tolist())) == [0, 1]
    # every DM map holds the halo's clump: the mass in the 12.8 Mpc cube over the mean at z = 0.25
    rho_dm = (0.3 - 0.045) * cm.rho_crit(cm.PAPER) * 1.25**3
    for i, hid in enumerate(ds["halo_id"].values):
        mass = maps[i, 1].sum() * 0.8**2 * rho_dm * 12.8
        assert mass == pytest.approx(600 * 1e11, rel=0.02), hid
    again = subprocess.run([*cmd, "-n"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    # the simulation's files are inputs: editing one reruns what reads it, and what follows (a file only
    # touched, same bytes, reruns nothing: Snakemake compares the checksums of small inputs)
    time.sleep(1.1)
    with h5py.File(sim / "snap_010.1.hdf5", "a") as f:
        f["Header"].attrs["Note"] = "edited"
    again = subprocess.run([*cmd, "-n"], capture_output=True, text=True, timeout=120)
    jobs = again.stdout + again.stderr
    assert again.returncode == 0 and "project_shard" in jobs and "halo_catalog" not in jobs, jobs[-3000:]
    with h5py.File(sim / "fof_subhalo_tab_010.0.hdf5", "a") as f:
        f["Header"].attrs["Note"] = "edited"
    again = subprocess.run([*cmd, "-n"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "halo_catalog" in again.stdout + again.stderr

"""The snapshot file layouts (``particles.snapshot.layout``): dataset names, header attributes, unit conventions.

Units (``layout: gadget``, Gadget-2/4 and AREPO)
------------------------------------------------
Lengths are comoving in ``UnitLength_in_cm / h``, masses in ``UnitMass_in_g / h``, and the internal
energy per unit mass in ``UnitVelocity_in_cm_per_s ** 2`` (physical). With ``a = Header/Time`` and
``h = HubbleParam``:

* position [physical Mpc] = Coordinates x (UnitLength_in_cm / Mpc) x a / h (``SmoothingLength``,
  ``BoxSize``, ``GroupPos`` and ``Group_R_Mean200`` alike);
* mass [Msun] = Masses x (UnitMass_in_g / Msun) / h, or ``Header/MassTable[type]`` where the
  ``Masses`` dataset is absent (``Group_M_Mean200`` alike);
* density [Msun / physical Mpc^3] = Density x (mass unit / h) / (length unit x a / h)^3;
* u [erg / g] = InternalEnergy x UnitVelocity_in_cm_per_s^2.

``layout: swift`` reads SWIFT's names (``Densities``, ``InternalEnergies``, ``SmoothingLengths``), its
``Units`` and ``Cosmology`` groups, and has no factors of h. SWIFT stores the comoving internal energy
a^(3 (gamma - 1)) u, so its u [erg / g] = InternalEnergies x (U_L / U_t)^2 x a^-2. The unit attributes of
the file (``UnitLength_in_cm`` ... in ``Header`` or ``Parameters``; SWIFT's ``Units`` group) are used when
the config leaves the unit null, and must agree with the config's unit when both are given. Where a dataset
carries its own scaling attributes (``a_scaling``, ``h_scaling``, ``length_scaling``, ``mass_scaling``,
``velocity_scaling``, ``to_cgs``; SWIFT's ``a-scale exponent`` ... ``Conversion factor to CGS``), the h
and unit exponents and the cgs factor are checked against the conversion above, and the power of a is the
one the dataset declares (physical = stored x a^exponent; 0 where SWIFT flags ``Value stored as
physical``), provided the quantity can have it: 1 for lengths, 0 for masses, -3 for densities, 0
(physical) or -2 (comoving) for the internal energy. Without the attribute the layout's convention holds.

:class:`massmaps.data.snapshot_files.SnapshotFiles` applies these conventions to a file's headers and datasets.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DIMENSIONS",
    "GADGET",
    "GAMMA_ADIABATIC",
    "LAYOUT",
    "Layout",
    "SWIFT",
    "U_COMOVING_A_EXPONENT",
    "WENDLAND_C2_GAMMA_K",
    "allowed_a_exponents",
]

GAMMA_ADIABATIC = 5.0 / 3.0

#: Dimensions of each quantity: exponents of (a, h, length unit, mass unit, velocity unit) in the
#: Gadget convention (SWIFT: the same without h, and a comoving internal energy, U_COMOVING_A_EXPONENT).
DIMENSIONS: dict[str, tuple[int, int, int, int, int]] = {
    "pos": (1, -1, 1, 0, 0),
    "mass": (0, -1, 0, 1, 0),
    "density": (-3, 2, -3, 1, 0),
    "u": (0, 0, 0, 0, 2),
    "hsml": (1, -1, 1, 0, 0),
    "x_e": (0, 0, 0, 0, 0),
    "group_pos": (1, -1, 1, 0, 0),
    "group_m200m": (0, -1, 0, 1, 0),
    "group_r200m": (1, -1, 1, 0, 0),
}
#: a-scale exponent of a comoving internal energy (SWIFT stores a^(3 (gamma - 1)) u): its values times a^-2 are physical
U_COMOVING_A_EXPONENT = -3.0 * (GAMMA_ADIABATIC - 1.0)
#: Support radius H over SWIFT's smoothing length h for the Wendland C2 kernel in 3D (SWIFT writes h = H / gamma_K)
WENDLAND_C2_GAMMA_K = 1.936492


def allowed_a_exponents(quantity: str) -> tuple[float, ...]:
    """The a-scale exponents a dataset of ``quantity`` may declare: its DIMENSIONS one; u physical (0) or comoving."""
    return (0.0, U_COMOVING_A_EXPONENT) if quantity == "u" else (float(DIMENSIONS[quantity][0]),)


@dataclass(frozen=True)
class Layout:
    name: str
    datasets: dict  # quantity -> dataset name (None: the layout has none)
    h_scaled: bool
    # header quantity -> candidate attribute locations "group/attr", first found wins
    attrs: dict
    # names of the per-dataset scaling attributes: exponents of (a, h, L, M, V) and the cgs factor
    scaling_attrs: tuple
    u_a_exponent: float  # a-scale exponent of the internal energy where the dataset does not declare one
    hsml_factor: float  # kernel support radius over the file's smoothing length (SnapshotConfig.hsml_factor null)
    physical_flag: str | None = None  # dataset attribute whose value 1 marks values stored physical


GADGET = Layout(
    name="gadget",
    datasets={
        "pos": "Coordinates",
        "mass": "Masses",
        "density": "Density",
        "u": "InternalEnergy",
        "hsml": "SmoothingLength",
        "x_e": "ElectronAbundance",
        "group_pos": "Group/GroupPos",
        "group_m200m": "Group/Group_M_Mean200",
        "group_r200m": "Group/Group_R_Mean200",
    },
    h_scaled=True,
    attrs={
        "box": ["Header/BoxSize", "Parameters/BoxSize"],
        "a": ["Header/Time"],
        "z": ["Header/Redshift"],
        "h": ["Header/HubbleParam", "Parameters/HubbleParam"],
        "Om0": ["Header/Omega0", "Parameters/Omega0"],
        "Ob0": ["Header/OmegaBaryon", "Parameters/OmegaBaryon"],
        "length": ["Header/UnitLength_in_cm", "Parameters/UnitLength_in_cm"],
        "mass": ["Header/UnitMass_in_g", "Parameters/UnitMass_in_g"],
        "velocity": ["Header/UnitVelocity_in_cm_per_s", "Parameters/UnitVelocity_in_cm_per_s"],
    },
    scaling_attrs=("a_scaling", "h_scaling", "length_scaling", "mass_scaling", "velocity_scaling", "to_cgs"),
    u_a_exponent=0.0,  # Gadget's InternalEnergy is physical
    hsml_factor=1.0,  # Gadget's and AREPO's smoothing length is the support radius
)

SWIFT = Layout(
    name="swift",
    datasets={
        "pos": "Coordinates",
        "mass": "Masses",
        "density": "Densities",
        "u": "InternalEnergies",
        "hsml": "SmoothingLengths",
        "x_e": None,
        "group_pos": None,
        "group_m200m": None,
        "group_r200m": None,
    },
    h_scaled=False,
    attrs={
        "box": ["Header/BoxSize"],
        "a": ["Cosmology/Scale-factor", "Header/Scale-factor"],
        "z": ["Cosmology/Redshift", "Header/Redshift"],
        "h": ["Cosmology/h"],
        "Om0": ["Cosmology/Omega_m"],
        "Ob0": ["Cosmology/Omega_b"],
        "length": ["Units/Unit length in cgs (U_L)"],
        "mass": ["Units/Unit mass in cgs (U_M)"],
        "time": ["Units/Unit time in cgs (U_t)"],
    },
    scaling_attrs=(
        "a-scale exponent",
        "h-scale exponent",
        "U_L exponent",
        "U_M exponent",
        "U_t exponent",
        "Conversion factor to CGS (not including cosmological corrections)",
    ),
    u_a_exponent=U_COMOVING_A_EXPONENT,
    hsml_factor=WENDLAND_C2_GAMMA_K,
    physical_flag="Value stored as physical",
)

LAYOUT = {"gadget": GADGET, "swift": SWIFT}

"""The snapshot config (``particles.snapshot``) and SnapshotError, raised by a file that cannot be read as declared.

The layouts the config names are in :mod:`massmaps.data.snapshot_layouts`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..configkeys import reject_unknown_keys
from ..constants import GAUNT_FF_DEFAULT
from .snapshot_layouts import LAYOUT

__all__ = ["GROUP_CATALOG_KEYS", "SnapshotConfig", "SnapshotError", "check_sources"]

LAYOUTS = ("gadget", "swift")
ELECTRON_POLICIES = ("error", "fully_ionised")


class SnapshotError(ValueError):
    """A snapshot or group catalogue that cannot be read as declared (the message names file and dataset)."""


@dataclass(frozen=True)
class SnapshotConfig:
    """How to read a snapshot (the workflow's ``particles.snapshot`` block). Build with :meth:`from_mapping`."""

    layout: str = "gadget"
    files: str | None = None  # path or glob of the snapshot file(s)
    group_catalog: str | None = None  # path or glob of the group catalogue file(s)
    # internal units (null: from the file's attributes; both given: they must agree)
    length_unit_cm: float | None = None
    mass_unit_g: float | None = None
    velocity_unit_cm_s: float | None = None
    unit_rtol: float = 0.005
    periodic: bool = True
    pad_Mpc: float = 2.0
    n_ngb: int = 64
    sph_workers: int = 2
    use_file_hsml: bool = True
    hsml_factor: float | None = None  # null: the layout's (Layout.hsml_factor)
    hydrogen_fraction: float = 0.76
    missing_electron_abundance: str = "error"
    g_ff: float = GAUNT_FF_DEFAULT
    read_chunk: int = 1 << 20

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.missing_electron_abundance not in ELECTRON_POLICIES:
            raise ValueError(
                f"missing_electron_abundance must be one of {ELECTRON_POLICIES}, got {self.missing_electron_abundance!r}"
            )
        if self.n_ngb < 2 or self.read_chunk < 1 or self.pad_Mpc < 0:
            raise ValueError("need n_ngb >= 2, read_chunk >= 1 and pad_Mpc >= 0")
        if not (self.hsml_factor is None or self.hsml_factor > 0):
            raise ValueError(f"hsml_factor must be positive or null (the layout's), got {self.hsml_factor!r}")
        if not 0 < self.hydrogen_fraction <= 1:
            raise ValueError(f"hydrogen_fraction must be in (0, 1], got {self.hydrogen_fraction}")
        for name in ("length_unit_cm", "mass_unit_g", "velocity_unit_cm_s"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ValueError(f"{name} must be positive or null, got {v!r}")

    @classmethod
    def from_mapping(cls, d: Mapping | None) -> SnapshotConfig:
        """Build from a plain mapping (e.g. YAML; a subset of the keys is fine). Unknown keys raise ValueError naming them."""
        if d is None:
            return cls()
        reject_unknown_keys(cls, d, "SnapshotConfig")
        return cls(**d)

    @classmethod
    def coerce(cls, cfg: SnapshotConfig | Mapping | None) -> SnapshotConfig:
        return cfg if isinstance(cfg, cls) else cls.from_mapping(cfg)

    @property
    def support_factor(self) -> float:
        """Kernel support radius over the file's smoothing length: ``hsml_factor``, or the layout's where null."""
        return LAYOUT[self.layout].hsml_factor if self.hsml_factor is None else self.hsml_factor


def check_sources(catalog: Mapping, particles: Mapping) -> None:
    """Raise a ValueError naming the config keys when the catalogue and particle sources do not fit together."""
    cat_src, part_src = catalog.get("source", "hmf"), particles.get("source", "mock")
    try:
        snap = SnapshotConfig.from_mapping(particles.get("snapshot") or {})
    except (TypeError, ValueError) as err:
        raise ValueError(f"config: particles.snapshot: {err}") from None
    if cat_src == "group_catalog":
        if part_src != "snapshot":
            raise ValueError(
                "config: catalog.source: group_catalog needs particles.source: snapshot (the mock cannot build simulated halos)"
            )
        if not snap.group_catalog:
            raise ValueError(
                "config: catalog.source: group_catalog needs particles.snapshot.group_catalog (a path or glob)"
            )
        if LAYOUT[snap.layout].datasets["group_pos"] is None:
            raise ValueError(
                f"config: particles.snapshot.layout: {snap.layout} has no group catalogue; use catalog.source: file with centre columns"
            )
    if part_src == "snapshot":
        if not snap.files:
            raise ValueError("config: particles.source: snapshot needs particles.snapshot.files (a path or glob)")
        if cat_src == "hmf":
            raise ValueError(
                "config: particles.source: snapshot needs halo centres in the snapshot: set catalog.source to "
                "group_catalog, or to file with the columns centre_x_Mpc, centre_y_Mpc, centre_z_Mpc"
            )


#: The SnapshotConfig keys that reading a group catalogue depends on.
GROUP_CATALOG_KEYS = ("layout", "group_catalog", "length_unit_cm", "mass_unit_g", "velocity_unit_cm_s", "unit_rtol")

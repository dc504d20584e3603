"""Instrument models of the observe stage and their named presets (docs/observing.md).

A :class:`TSZInstrument` turns the clean tSZ map into Compton y or a temperature decrement at one
frequency, smoothed by a Gaussian beam, plus white noise. An :class:`XrayInstrument` turns the clean
(source-frame, bolometric) X-ray map into the surface brightness in an energy band seen at the redshift,
smoothed by a PSF, and optionally into Poisson counts with a uniform background. A preset is a named
set of these numbers; any of them can be overridden in the config. The numbers and their sources are in
docs/observing.md; values marked there as assumptions are round numbers to be replaced by your own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["TSZ_PRESETS", "XRAY_PRESETS", "PSF", "TSZInstrument", "XrayInstrument", "Redshift", "from_config"]


@dataclass(frozen=True)
class TSZInstrument:
    """unit ``y`` (Compton y) or ``microK`` (Delta T at ``frequency_GHz``); beam FWHM in arcmin (0: none);
    white noise in the map's unit times arcmin (microK-arcmin, or y-arcmin for ``y``; 0: none);
    ``sky_cl_file``: a table of (ell, C_ell) in the map's unit squared (primary CMB plus foreground
    residuals), added as a Gaussian random field before the beam; ``highpass_ell``: a high-pass filter
    whose transfer falls to 1/2 at that multipole (0: none), applied after the beam, before the noise."""

    unit: str = "y"
    frequency_GHz: float | None = None
    beam_fwhm_arcmin: float = 0.0
    noise_arcmin: float = 0.0
    sky_cl_file: str | None = None
    highpass_ell: float = 0.0

    def __post_init__(self):
        if self.unit not in ("y", "microK"):
            raise ValueError(f"tSZ unit must be 'y' or 'microK', got {self.unit!r}")
        if self.unit == "microK" and not (self.frequency_GHz and self.frequency_GHz > 0):
            raise ValueError(f"a tSZ map in microK needs frequency_GHz > 0, got {self.frequency_GHz!r}")
        for name in ("beam_fwhm_arcmin", "noise_arcmin", "highpass_ell"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"tSZ {name} must be >= 0, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class PSF:
    """``gaussian`` (``fwhm_arcsec``), ``king`` ((1 + (r / core_arcsec)^2)^-slope) or ``none``."""

    shape: str = "none"
    fwhm_arcsec: float = 0.0
    core_arcsec: float = 0.0
    slope: float = 1.5

    def __post_init__(self):
        if self.shape not in ("none", "gaussian", "king"):
            raise ValueError(f"psf shape must be none, gaussian or king, got {self.shape!r}")
        if self.shape == "gaussian" and not self.fwhm_arcsec > 0:
            raise ValueError(f"a gaussian psf needs fwhm_arcsec > 0, got {self.fwhm_arcsec!r}")
        if self.shape == "king" and not (self.core_arcsec > 0 and self.slope > 1):
            raise ValueError(
                f"a king psf needs core_arcsec > 0 and slope > 1, got {self.core_arcsec!r}, {self.slope!r}"
            )


@dataclass(frozen=True)
class XrayInstrument:
    """``output``: ``surface_brightness`` (erg s^-1 cm^-2 arcmin^-2 in ``band_keV``) or ``counts`` per pixel
    (expected counts from effective area x exposure, plus a uniform background, Poisson-drawn)."""

    output: str = "surface_brightness"
    band_keV: tuple[float, float] = (0.5, 2.0)
    psf: PSF = field(default_factory=PSF)
    effective_area_cm2: float = 0.0
    exposure_s: float = 0.0
    background_per_s_arcmin2: float = 0.0

    def __post_init__(self):
        if self.output not in ("surface_brightness", "counts"):
            raise ValueError(f"X-ray output must be surface_brightness or counts, got {self.output!r}")
        e1, e2 = self.band_keV
        if not 0 < e1 < e2:
            raise ValueError(f"X-ray band_keV needs 0 < E1 < E2, got {list(self.band_keV)}")
        if self.output == "counts" and not (self.effective_area_cm2 > 0 and self.exposure_s > 0):
            raise ValueError(
                "X-ray counts need effective_area_cm2 > 0 and exposure_s > 0, got "
                f"{self.effective_area_cm2!r} and {self.exposure_s!r}"
            )
        if not self.background_per_s_arcmin2 >= 0:
            raise ValueError(f"background_per_s_arcmin2 must be >= 0, got {self.background_per_s_arcmin2!r}")

    @property
    def units(self) -> str:
        return "counts" if self.output == "counts" else "erg s-1 cm-2 arcmin-2"


@dataclass(frozen=True)
class Redshift:
    """``fixed`` at ``value``, or ``uniform`` in ``range`` (one draw per sightline, seeded from the config)."""

    kind: str = "fixed"
    value: float = 0.3
    range: tuple[float, float] = (0.1, 0.5)

    def __post_init__(self):
        if self.kind not in ("fixed", "uniform"):
            raise ValueError(f"redshift kind must be fixed or uniform, got {self.kind!r}")
        if self.kind == "fixed" and not self.value > 0:
            raise ValueError(f"an observed redshift must be > 0, got {self.value!r}")
        if self.kind == "uniform" and not 0 < self.range[0] < self.range[1]:
            raise ValueError(f"redshift range needs 0 < z1 < z2, got {list(self.range)}")


#: tSZ presets: name -> (settings, source). Sources and caveats: docs/observing.md.
TSZ_PRESETS: dict[str, dict] = {
    # ACT DR6.02 NILC Compton-y: 1.6 arcmin Gaussian beam (LAMBDA product page); noise: ACT DR6's median
    # combined depth of 10 microK-arcmin (Naess et al. 2025) taken to y at 150 GHz (f = -0.95), white.
    "act_dr6_y": dict(unit="y", beam_fwhm_arcmin=1.6, noise_arcmin=3.85e-6),
    # SPT-3G D1 main field (Quan et al. 2026): white noise 4.4 / 5.4 microK-arcmin at 150 / 95 GHz;
    # beams ~1.2 / 1.6 arcmin FWHM (Camphuis et al. 2025).
    "spt3g_150": dict(unit="microK", frequency_GHz=150.0, beam_fwhm_arcmin=1.2, noise_arcmin=4.4),
    "spt3g_95": dict(unit="microK", frequency_GHz=95.0, beam_fwhm_arcmin=1.6, noise_arcmin=5.4),
    # Planck NILC/MILCA y maps: 10 arcmin beam; the noise level is an assumption (docs/observing.md).
    "planck_y": dict(unit="y", beam_fwhm_arcmin=10.0, noise_arcmin=2.0e-5),
    "custom": dict(),
}

#: X-ray presets: name -> settings (``psf`` as a mapping). Sources and caveats: docs/observing.md.
XRAY_PRESETS: dict[str, dict] = {
    # eRASS1: 0.2-2.3 keV (Merloni et al. 2024), ~200 s exposure; 7 modules ~1500 cm^2 at 1.5 keV and
    # an effective survey resolution of 25-30 arcsec (Predehl et al. 2010); background an assumption.
    "erosita_erass1": dict(
        output="counts",
        band_keV=(0.2, 2.3),
        psf=dict(shape="gaussian", fwhm_arcsec=28.0),
        effective_area_cm2=1500.0,
        exposure_s=200.0,
        background_per_s_arcmin2=1.0e-3,
    ),
    # XMM-Newton EPIC-pn pointing: King PSF on axis at 1 keV (core 6.636 - 0.305 E arcsec, slope
    # 1.525 - 0.015 E; XMM-CCF-REL-116); effective area, exposure and background are assumptions.
    "xmm_pn": dict(
        output="counts",
        band_keV=(0.5, 2.0),
        psf=dict(shape="king", core_arcsec=6.33, slope=1.51),
        effective_area_cm2=1000.0,
        exposure_s=3.0e4,
        background_per_s_arcmin2=1.0e-3,
    ),
    # Chandra ACIS-I pointing: on-axis half-power diameter 0.66 arcsec (a Gaussian of that FWHM); effective
    # area (after the contamination of the filter), exposure and background are assumptions.
    "chandra_acis": dict(
        output="counts",
        band_keV=(0.5, 2.0),
        psf=dict(shape="gaussian", fwhm_arcsec=0.66),
        effective_area_cm2=300.0,
        exposure_s=5.0e4,
        background_per_s_arcmin2=3.0e-4,
    ),
    "custom": dict(),
}


def _build(cls, presets: Mapping[str, dict], block: Mapping, what: str):
    block = dict(block)
    name = block.pop("preset", "none")
    if name == "none":
        if block:
            raise ValueError(f"observe.{what}: preset none (the ideal map) takes no settings, got {sorted(block)}")
        return None
    if name not in presets:
        raise ValueError(f"observe.{what}.preset: unknown preset {name!r}; valid: none, {', '.join(presets)}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(block) - known)
    if unknown:
        raise ValueError(f"observe.{what}: unknown setting(s) {unknown}; valid: preset, {', '.join(sorted(known))}")
    settings = {**presets[name], **block}
    if "psf" in settings:
        psf = settings["psf"]
        settings["psf"] = psf if isinstance(psf, PSF) else PSF(**{**presets[name].get("psf", {}), **dict(psf)})
    if "band_keV" in settings:
        settings["band_keV"] = tuple(float(e) for e in settings["band_keV"])
    try:
        return cls(**settings)
    except ValueError as err:
        raise ValueError(f"observe.{what} (preset {name}): {err}") from None


def from_config(observe: Mapping) -> tuple[TSZInstrument | None, XrayInstrument | None, Redshift]:
    """The instruments (None for the ideal map) and redshift law of an ``observe`` config block."""
    tsz = _build(TSZInstrument, TSZ_PRESETS, observe.get("tsz", {}), "tsz")
    xray = _build(XrayInstrument, XRAY_PRESETS, observe.get("xray", {}), "xray")
    z = dict(observe.get("redshift", {}))
    if "range" in z:
        z["range"] = tuple(z["range"])
    try:
        redshift = Redshift(**z)
    except (TypeError, ValueError) as err:
        raise ValueError(f"observe.redshift: {err}") from None
    return tsz, xray, redshift


def is_ideal(observe: Mapping) -> bool:
    """True when neither map is observed (the observe stage is skipped and the clean maps are used)."""
    tsz, xray, _ = from_config(observe)
    return tsz is None and xray is None

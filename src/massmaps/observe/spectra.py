"""Spectral factors of the observe stage: the tSZ spectral function and the X-ray band of a thermal plasma.

tSZ (non-relativistic, Sunyaev & Zel'dovich 1972): Delta T / T_cmb = f(x) y with x = h nu / (k T_cmb) and
f(x) = x coth(x / 2) - 4; f < 0 below the null near 217 GHz. Relativistic corrections (a few per cent
above kT ~ 5-10 keV) are left out.

X-ray: thermal bremsstrahlung with a constant Gaunt factor (the mock's bolometric emissivity uses one,
``GAUNT_FF_DEFAULT``), so the emitted energy per unit energy is proportional to exp(-E / kT) and the
bolometric emissivity to the integral of that over E. A source at redshift z seen in the observed band
[E1, E2] emits in the rest-frame band [E1 (1 + z), E2 (1 + z)] (the K-correction), so the fraction of the
bolometric energy flux that lands in the band is

    exp(-E1 (1 + z) / kT) - exp(-E2 (1 + z) / kT).

Metal lines (which add flux below ~2 keV for kT < 2-3 keV), the energy dependence of the Gaunt factor and
Galactic absorption are left out. The photon rate needs the mean photon energy in the band: the observed
photon spectrum is exp(-E / tau) / E with tau = kT / (1 + z), whose integral is a difference of
exponential integrals E_1.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from ..constants import K_B_ERG_PER_K, T_CMB_K

#: Planck's constant in erg s.
H_ERG_S = 6.62607015e-27

__all__ = ["band_fraction", "mean_photon_energy_keV", "sz_spectral_function"]


def sz_spectral_function(frequency_GHz: float) -> float:
    """f(x) = x coth(x / 2) - 4 at ``frequency_GHz``: Delta T / T_cmb per unit Compton y."""
    if not frequency_GHz > 0:
        raise ValueError(f"frequency_GHz must be > 0, got {frequency_GHz}")
    x = H_ERG_S * frequency_GHz * 1e9 / (K_B_ERG_PER_K * T_CMB_K)
    return float(x / np.tanh(x / 2.0) - 4.0)


def _check_band(band_keV) -> tuple[float, float]:
    e1, e2 = (float(e) for e in band_keV)
    if not 0 < e1 < e2:
        raise ValueError(f"an energy band needs 0 < E1 < E2 in keV, got {list(band_keV)}")
    return e1, e2


def band_fraction(kT_keV: np.ndarray, band_keV, redshift: float) -> np.ndarray:
    """Fraction of the bolometric bremsstrahlung energy flux observed in ``band_keV`` from gas at ``kT_keV``.

    0 where kT <= 0 (no emission: the projected temperature of an empty pixel).
    """
    e1, e2 = _check_band(band_keV)
    kT = np.asarray(kT_keV, dtype=np.float64)
    out = np.zeros_like(kT)
    hot = kT > 0
    scale = (1.0 + float(redshift)) / kT[hot]
    out[hot] = np.exp(-e1 * scale) - np.exp(-e2 * scale)
    return out


def mean_photon_energy_keV(kT_keV: np.ndarray, band_keV, redshift: float) -> np.ndarray:
    """Mean energy in keV of the photons observed in ``band_keV`` (energy flux / photon flux).

    For tau = kT / (1 + z): tau (exp(-E1/tau) - exp(-E2/tau)) / (E_1(E1/tau) - E_1(E2/tau)); where kT <= 0
    (no emission), the band's centre.
    """
    e1, e2 = _check_band(band_keV)
    kT = np.asarray(kT_keV, dtype=np.float64)
    out = np.full_like(kT, 0.5 * (e1 + e2))
    hot = kT > 0
    tau = kT[hot] / (1.0 + float(redshift))
    a, b = e1 / tau, e2 / tau
    energy = np.exp(-a) - np.exp(-b)
    photons = special.exp1(a) - special.exp1(b)
    ok = photons > 0  # very cold gas: both terms underflow; the photons sit at the band's lower edge
    mean = np.full_like(tau, e1)
    mean[ok] = tau[ok] * energy[ok] / photons[ok]
    out[hot] = np.clip(mean, e1, e2)
    return out

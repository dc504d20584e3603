"""Writes cmb_tt_lensed.txt: the lensed primary-CMB temperature power spectrum C_ell (microK^2) of the
laptop default's cosmology, for the tSZ instrument's ``sky_cl_file`` (docs/observing.md).

    pip install camb && python config/spectra/make_cmb_spectrum.py

Flat LambdaCDM with the cosmology block of config/config.yaml (Om0 0.3, Ob0 0.045, H0 70, ns 0.96,
sigma8 0.8; A_s set so that CAMB's sigma8 is 0.8), massless neutrinos, and tau = 0.054 (not in the config;
the Planck 2018 value). ell 2-10000 (every ell to 2999, then every 10th; the stage interpolates linearly).
"""

from pathlib import Path

import camb
import numpy as np

OM0, OB0, H0, NS, SIGMA8, TAU, LMAX = 0.3, 0.045, 70.0, 0.96, 0.8, 0.054, 10000


def spectrum(a_s: float) -> tuple[np.ndarray, float]:
    h2 = (H0 / 100) ** 2
    pars = camb.set_params(
        H0=H0,
        ombh2=OB0 * h2,
        omch2=(OM0 - OB0) * h2,
        mnu=0.0,
        num_massive_neutrinos=0,
        tau=TAU,
        As=a_s,
        ns=NS,
        lmax=LMAX + 500,
        lens_potential_accuracy=1,
        WantTransfer=True,
        kmax=2.0,
    )
    pars.set_matter_power(redshifts=[0.0], kmax=2.0)
    res = camb.get_results(pars)
    cl = res.get_cmb_power_spectra(pars, CMB_unit="muK", raw_cl=True)["lensed_scalar"][:, 0]
    return cl, float(res.get_sigma8_0())


a_s = 2.1e-9
_, s8 = spectrum(a_s)
a_s *= (SIGMA8 / s8) ** 2
cl, s8 = spectrum(a_s)
ell = np.concatenate([np.arange(2, 3000), np.arange(3000, LMAX + 1, 10)])  # every ell, then every 10th
out = Path(__file__).with_name("cmb_tt_lensed.txt")
header = (
    f"lensed CMB TT C_ell in microK^2 from CAMB {camb.__version__}: Om0 {OM0}, Ob0 {OB0}, H0 {H0}, ns {NS}, "
    f"sigma8 {s8:.4f} (A_s {a_s:.4e}), tau {TAU}, massless neutrinos; made by make_cmb_spectrum.py\nell C_ell"
)
np.savetxt(out, np.column_stack([ell, cl[ell]]), fmt=["%d", "%.6e"], header=header, comments="# ")
d_ell = ell * (ell + 1) * cl[ell] / (2 * np.pi)
print(out, "sigma8", s8, "D_ell peak", d_ell.max(), "at ell", ell[np.argmax(d_ell)])

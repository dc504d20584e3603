"""From clean maps to what a telescope records, one sightline at a time (docs/observing.md).

The clean maps are those of the projection stage: tSZ as T_cmb y in microK, X-ray as the source-frame
bolometric emission per unit area integrated along the sightline, S = int l dl in erg s^-1 cm^-2, split
over the temperature nodes T_k of the X-ray spectrum (S_k, :mod:`massmaps.projection.observables`). The
cluster (simulated at z = 0, physical Mpc) is placed at
redshift z: a pixel of ``pixel_Mpc`` spans pixel_Mpc / D_A(z) radians, with D_A from astropy for the
config's cosmology.

tSZ: y = tsz / (T_cmb 1e6); in microK, Delta T = f(nu) T_cmb 1e6 y; a Gaussian beam (FFT, zero-padded,
so signal leaves through the edges as it would off a cut-out); optionally a Gaussian random field of a
tabulated C_ell (primary CMB, foreground residuals) before the beam and a high-pass filter after it; white
noise of sigma = w / (pixel side in arcmin) per pixel.

X-ray: I = sum_k S_k f(T_k) / (4 pi (1 + z)^4) erg s^-1 cm^-2 sr^-1, the (1 + z)^-4 dimming of the
bolometric surface brightness times the band fraction f of gas at each node's temperature
(:func:`~massmaps.observe.spectra.band_fraction`, with the K-correction), in erg s^-1 cm^-2 arcmin^-2,
smoothed by the PSF. Counts: expected source photons per pixel = the same sum with f(T_k) / <E>(T_k) (the
mean photon energy in the band) x pixel solid angle x effective area x exposure, smoothed by the PSF, plus
the uniform background x exposure x pixel area in arcmin^2, then one Poisson draw. The functions also take
one bolometric map with its emission-weighted temperature map (one "node" per pixel): the approximation
the X-ray spectrum replaced, kept to measure it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import numpy as np
from astropy.cosmology import FlatLambdaCDM

from ..constants import KEV_ERG, T_CMB_K
from ..cosmology import CosmologyParams
from .instruments import PSF, TSZInstrument, XrayInstrument
from .spectra import band_fraction, mean_photon_energy_keV, sz_spectral_function

__all__ = [
    "angular_pixel_arcmin",
    "band_photon_brightness",
    "band_surface_brightness",
    "convolve",
    "gaussian_kernel",
    "king_kernel",
    "observe_tsz",
    "observe_xray",
]

RAD_ARCMIN = 180.0 * 60.0 / np.pi
SR_PER_ARCMIN2 = (1.0 / RAD_ARCMIN) ** 2


def astropy_cosmology(cosmo: CosmologyParams | Mapping) -> FlatLambdaCDM:
    c = cosmo if isinstance(cosmo, CosmologyParams) else CosmologyParams(**dict(cosmo))
    return FlatLambdaCDM(H0=c.H0, Om0=c.Om0, Ob0=c.Ob0, Tcmb0=T_CMB_K)


def angular_pixel_arcmin(pixel_Mpc: float, redshift: float, cosmo: CosmologyParams | Mapping) -> float:
    """Side in arcmin of a pixel of ``pixel_Mpc`` physical Mpc at ``redshift`` (angular-diameter distance)."""
    if not redshift > 0:
        raise ValueError(f"an observed cluster needs a redshift > 0, got {redshift!r}")
    d_a = astropy_cosmology(cosmo).angular_diameter_distance(redshift).to_value("Mpc")
    return float(pixel_Mpc / d_a * RAD_ARCMIN)


def gaussian_kernel(fwhm_pix: float, n: int) -> np.ndarray:
    """A Gaussian of FWHM ``fwhm_pix`` pixels integrated over each pixel of a (2n-1)^2 grid, summing to 1
    over the plane (the part beyond the grid is lost, as off a cut-out)."""
    from scipy.special import erf

    s = fwhm_pix / np.sqrt(8.0 * np.log(2.0))
    edges = np.arange(-(n - 1) - 0.5, n, dtype=np.float64)
    cdf = 0.5 * (1.0 + erf(edges / (np.sqrt(2.0) * s)))
    w = np.diff(cdf)
    return np.outer(w, w)


def king_kernel(core_pix: float, slope: float, n: int, oversample: int = 5) -> np.ndarray:
    """(1 + (r / core)^2)^-slope averaged over each pixel (``oversample``^2 points), normalised so that its
    integral over the whole plane, pi core^2 / (slope - 1), is 1."""
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5
    r = np.arange(-(n - 1), n, dtype=np.float64)
    xx = (r[:, None] + sub[None, :]).ravel()
    rr2 = xx[:, None] ** 2 + xx[None, :] ** 2
    k = (1.0 + rr2 / core_pix**2) ** (-slope)
    k = k.reshape(r.size, oversample, r.size, oversample).mean(axis=(1, 3))
    return k * (slope - 1.0) / (np.pi * core_pix**2)


def convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Linear (zero-padded) convolution of an (n, n) image with a centred (2n-1, 2n-1) kernel, by FFT."""
    n = image.shape[0]
    size = 2 * n - 1 + n - 1
    fi = np.fft.rfft2(image, s=(size, size))
    fk = np.fft.rfft2(kernel, s=(size, size))
    full = np.fft.irfft2(fi * fk, s=(size, size))
    return full[n - 1 : 2 * n - 1, n - 1 : 2 * n - 1]


def psf_kernel(psf: PSF, pixel_arcmin: float, n: int) -> np.ndarray | None:
    if psf.shape == "gaussian":
        return gaussian_kernel(psf.fwhm_arcsec / 60.0 / pixel_arcmin, n)
    if psf.shape == "king":
        return king_kernel(psf.core_arcsec / 60.0 / pixel_arcmin, psf.slope, n)
    return None


def _ell(n: int, pixel_arcmin: float) -> np.ndarray:
    """Multipole ell = 2 pi |f| / pixel angle of each Fourier mode of an (n, n) map (flat sky)."""
    f = np.fft.fftfreq(n)
    return 2.0 * np.pi * np.hypot(f[:, None], f[None, :]) / (pixel_arcmin / RAD_ARCMIN)


@lru_cache(maxsize=16)
def load_cl(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(ell, C_ell) from a whitespace table (comment lines with #); errors name the file and what is wrong."""
    try:
        table = np.loadtxt(path, comments="#", ndmin=2)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: sky_cl_file: expected a table of two numeric columns (ell, C_ell): {err}") from None
    if table.shape[1] != 2 or table.shape[0] < 2:
        raise ValueError(
            f"{path}: sky_cl_file: expected two columns (ell, C_ell) and two rows or more, got {table.shape}"
        )
    ell, cl = table[:, 0], table[:, 1]
    if not (np.all(np.isfinite(table)) and np.all(np.diff(ell) > 0) and np.all(cl >= 0)):
        raise ValueError(f"{path}: sky_cl_file: expected finite values, ell increasing and C_ell >= 0")
    return ell, cl


def gaussian_random_field(
    ell_tab: np.ndarray, cl_tab: np.ndarray, n: int, pixel_arcmin: float, rng: np.random.Generator
) -> np.ndarray:
    """A periodic (n, n) Gaussian random field whose flat-sky power spectrum is C_ell (interpolated in the
    table, 0 outside it and at ell = 0): unit white noise times sqrt(C_ell / pixel solid angle) in Fourier space."""
    pix_sr = (pixel_arcmin / RAD_ARCMIN) ** 2
    ell = _ell(n, pixel_arcmin)
    cl = np.interp(ell, ell_tab, cl_tab, left=0.0, right=0.0)
    cl[0, 0] = 0.0
    return np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n))) * np.sqrt(cl / pix_sr)).real


def highpass(image: np.ndarray, ell_c: float, pixel_arcmin: float) -> np.ndarray:
    """The map filtered by F(ell) = ell^4 / (ell^4 + ell_c^4) (periodic; F = 1/2 at ell_c, the mean removed):
    a stand-in for the transfer function of scan-filtered ground-based maps."""
    ell4 = _ell(image.shape[0], pixel_arcmin) ** 4
    return np.fft.ifft2(np.fft.fft2(image) * ell4 / (ell4 + ell_c**4)).real


def observe_tsz(tsz_uK: np.ndarray, inst: TSZInstrument, pixel_arcmin: float, rng: np.random.Generator) -> np.ndarray:
    """Clean T_cmb y [microK] -> y or Delta T [microK]: plus the sky's random field, beam-smoothed, high-pass
    filtered, plus white noise (float64)."""
    y = np.asarray(tsz_uK, dtype=np.float64) / (T_CMB_K * 1e6)
    signal = y if inst.unit == "y" else sz_spectral_function(inst.frequency_GHz) * T_CMB_K * 1e6 * y
    if inst.sky_cl_file:
        signal = signal + gaussian_random_field(*load_cl(str(inst.sky_cl_file)), signal.shape[0], pixel_arcmin, rng)
    if inst.beam_fwhm_arcmin > 0:
        signal = convolve(signal, gaussian_kernel(inst.beam_fwhm_arcmin / pixel_arcmin, signal.shape[0]))
    if inst.highpass_ell > 0:
        signal = highpass(signal, inst.highpass_ell, pixel_arcmin)
    noise = rng.standard_normal(signal.shape)  # drawn whatever the level, so streams do not shift
    return signal + (inst.noise_arcmin / pixel_arcmin) * noise


def _over_nodes(xray_src, kT_keV, per_node) -> np.ndarray:
    """sum_k S_k g(T_k) for node maps S (K, n, n) with temperatures (K,), or S g(T) for one map S (n, n)
    with its temperature map T (n, n); ``per_node(T)`` gives g."""
    src = np.asarray(xray_src, dtype=np.float64)
    kT = np.asarray(kT_keV, dtype=np.float64)
    if src.ndim == 3:
        if kT.shape != (src.shape[0],):
            raise ValueError(f"{src.shape[0]} X-ray node maps need {src.shape[0]} node temperatures, got {kT.shape}")
        return np.tensordot(per_node(kT), src, axes=1)
    return src * per_node(kT)


def band_surface_brightness(xray_src: np.ndarray, kT_keV: np.ndarray, band_keV, redshift: float) -> np.ndarray:
    """Observed surface brightness in ``band_keV``, erg s^-1 cm^-2 arcmin^-2, before any PSF: from the
    node maps (K, n, n) and the node temperatures (K,), or from one bolometric map and its temperature map."""
    dimming = 4.0 * np.pi * (1.0 + redshift) ** 4

    def per_node(kT):
        return band_fraction(kT, band_keV, redshift)

    return _over_nodes(xray_src, kT_keV, per_node) / dimming * SR_PER_ARCMIN2


def band_photon_brightness(xray_src: np.ndarray, kT_keV: np.ndarray, band_keV, redshift: float) -> np.ndarray:
    """Observed photon surface brightness in ``band_keV``, photons s^-1 cm^-2 arcmin^-2 (arguments as for
    :func:`band_surface_brightness`)."""
    dimming = 4.0 * np.pi * (1.0 + redshift) ** 4

    def per_node(kT):
        return band_fraction(kT, band_keV, redshift) / (mean_photon_energy_keV(kT, band_keV, redshift) * KEV_ERG)

    return _over_nodes(xray_src, kT_keV, per_node) / dimming * SR_PER_ARCMIN2


def observe_xray(
    xray_src: np.ndarray,
    kT_keV: np.ndarray,
    inst: XrayInstrument,
    redshift: float,
    pixel_arcmin: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Clean source-frame X-ray maps -> band surface brightness or counts (float64). ``xray_src``: the
    spectrum's node maps S_k [erg s^-1 cm^-2] (K, n, n) with ``kT_keV`` the node temperatures (K,) [keV];
    or one bolometric map with its emission-weighted temperature map."""
    if inst.output == "surface_brightness":
        sb = band_surface_brightness(xray_src, kT_keV, inst.band_keV, redshift)
        kernel = psf_kernel(inst.psf, pixel_arcmin, sb.shape[0])
        # a node sum can dip a hair below zero where the splines oscillate over no emission
        return np.maximum(sb if kernel is None else convolve(sb, kernel), 0.0)
    photons = band_photon_brightness(xray_src, kT_keV, inst.band_keV, redshift)
    n = photons.shape[0]
    kernel = psf_kernel(inst.psf, pixel_arcmin, n)
    pix_arcmin2 = pixel_arcmin**2
    source = np.maximum(photons, 0.0) * pix_arcmin2 * inst.effective_area_cm2 * inst.exposure_s
    if kernel is not None:
        source = np.maximum(convolve(source, kernel), 0.0)  # FFT round-off can dip below zero far out
    expected = source + inst.background_per_s_arcmin2 * inst.exposure_s * pix_arcmin2
    return rng.poisson(expected).astype(np.float64)


def beam_half_transfer_k(observe: Mapping, cosmology: CosmologyParams | Mapping) -> float:
    """k in h/Mpc (k = 2 pi / wavelength, in the Mpc of the maps' pixels) where the transfer function
    exp(-k^2 s^2 / 2) of the tSZ beam of the ``observe`` block falls to 1/2, at its fixed redshift (or the
    middle of a uniform range); NaN when there is no beam."""
    from .instruments import from_config

    tsz, _, law = from_config(observe)
    if tsz is None or not tsz.beam_fwhm_arcmin:
        return float("nan")
    z = law.value if law.kind == "fixed" else 0.5 * (law.range[0] + law.range[1])
    mpc_per_arcmin = 1.0 / angular_pixel_arcmin(1.0, z, cosmology)
    sigma_Mpc = tsz.beam_fwhm_arcmin * mpc_per_arcmin / np.sqrt(8 * np.log(2))
    h = (cosmology["H0"] if isinstance(cosmology, Mapping) else cosmology.H0) / 100.0
    return float(np.sqrt(2 * np.log(2)) / sigma_Mpc / h)

"""massmaps: galaxy-cluster mass maps from SZ and X-ray images with score-based generative models.

The library knows nothing of Snakemake: the workflow's rules call into it. It is grouped by the
workflow's stages, in their order:

* :mod:`massmaps.data`: halo catalogue, sightline plan, and the particles of each halo (mock or snapshot);
* :mod:`massmaps.projection`: particles to the four maps of each sightline;
* :mod:`massmaps.learning`: split, normalisation, score model, training and posterior sampling;
* :mod:`massmaps.evaluation`: metrics, calibration, tables and figures.

What every stage uses stays here: the configuration (:mod:`massmaps.config`, :mod:`massmaps.configkeys`),
constants and cosmology (:mod:`massmaps.constants`, :mod:`massmaps.cosmology`), the zarr stores and files
between jobs (:mod:`massmaps.store`, :mod:`massmaps.files`) and logging (:mod:`massmaps.logs`).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("massmaps")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

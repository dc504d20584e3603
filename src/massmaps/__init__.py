"""massmaps: galaxy-cluster mass maps from SZ and X-ray images with score-based generative models.

The library knows nothing of Snakemake: the workflow's rules call into it.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("massmaps")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

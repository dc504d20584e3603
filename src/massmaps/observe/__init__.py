"""The observe stage: from clean projected maps to what a telescope records (docs/observing.md).

- :mod:`.spectra`: the tSZ spectral function and the X-ray band fraction of a thermal plasma;
- :mod:`.instruments`: the tSZ and X-ray instrument models, the redshift law and the named presets;
- :mod:`.observe`: beams, PSFs, noise and counts on one sightline's maps;
- :mod:`.stage`: the stage over a dataset store, seeded per sightline.
"""

"""The data stage: halos, sightlines and the particles of each halo.

* :mod:`.catalog`: the halo catalogue (rule ``halo_catalog``, workflow/rules/catalog.smk), drawn from a
  mass function or read from a user's file;
* :mod:`.sightlines`: the sightline plan (rule ``sightline_plan``, workflow/rules/sightlines.smk);
* :mod:`.mock`, with the analytic :mod:`.profiles` and the substructure draws of :mod:`.substructure`:
  the mock clusters' particles;
* :mod:`.snapshot`: a simulation's particles and group catalogue instead;
* :mod:`.particles`: the particle containers that the projection stage (:mod:`massmaps.projection`)
  turns into maps.
"""

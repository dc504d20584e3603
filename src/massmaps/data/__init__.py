"""The data stage: halos, sightlines and the particles of each halo.

* :mod:`.catalog`: the halo catalogue (rule ``halo_catalog``, workflow/rules/catalog.smk), drawn from a
  mass function or read from a user's file;
* :mod:`.sightlines`: the sightline plan (rule ``sightline_plan``, workflow/rules/sightlines.smk);
* :mod:`.mock`: the mock clusters' particles, from the configuration to a cluster; its host halo and
  building blocks are in :mod:`.mock_host`, its subhalos, merger and neighbours in :mod:`.mock_satellites`,
  with the analytic :mod:`.profiles` and the substructure draws of :mod:`.substructure`;
* :mod:`.snapshot`: a simulation's particles instead, read through :mod:`.snapshot_files` (headers and
  units) with the conventions of :mod:`.snapshot_layouts`, the checks of :mod:`.snapshot_checks` and the
  config of :mod:`.snapshot_config`; :mod:`.group_catalog`: its halos;
* :mod:`.particles`: the particle containers that the projection stage (:mod:`massmaps.projection`)
  turns into maps.
"""

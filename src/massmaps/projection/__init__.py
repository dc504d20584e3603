"""The projection stage: particles to maps (rule ``project_shard``, workflow/rules/project.smk).

* :mod:`.shards`: what one ``project_shard`` job does: the particles of each halo of a shard, then
  every sightline's maps;
* :mod:`.observables`: the four fields (gas and dark-matter surface density, thermal SZ, X-ray);
* :mod:`.pixels`: :func:`~.pixels.project`, particles onto pixels with the Wendland C2 column kernel, and
  its backends; :mod:`.exact` the exact backend's algorithm, :mod:`.exact_fast` its speed paths;
* :mod:`.kernels`: the kernel, its column integral and the tables of exact pixel integration;
* :mod:`.sph` and :mod:`.knn`: smoothing lengths and densities from the nearest neighbours.

docs/projection.md explains the algorithm and its speed measures.
"""

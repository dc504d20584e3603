"""The evaluation stage: metrics, tables and figures (workflow/rules/evaluate.smk and figures.smk).

* :mod:`.evaluate`: the paper's evaluation of the posterior samples, map by map (rules ``evaluate_posterior``,
  ``linear_baselines``); :mod:`.tables`: its tables (rules ``table1``, ``calibration``, and the summary of
  ``evaluate_posterior``);
* :mod:`.metrics`: the metrics on maps; :mod:`.calibration`: the calibration statistics;
* :mod:`.figures`: every figure from the pipeline's files (the figure rules), drawn by :mod:`.plotting`.
"""

"""The learning stage: split the data set, train the score model, draw posterior samples.

* :mod:`.split`: train / validation / test by cluster (rule ``split_dataset``, workflow/rules/split.smk);
* :mod:`.normalise`: the per-field normalisation to [0, 1];
* :mod:`.score`: the conditional NCSN++ score model and its denoiser;
* :mod:`.training`: the training loop and its checkpoints (rule ``train_model``, workflow/rules/train.smk);
* :mod:`.samplers`: the posterior samplers (rule ``sample_posterior``, workflow/rules/sample.smk);
* :mod:`.reconstruct`: the drivers those rules call, from the assembled data set to a model and samples.
"""

"""The learning stage: split the data set, train the score model, draw posterior samples.

* :mod:`.split`: train / validation / test by cluster (rule ``split_dataset``, workflow/rules/split.smk);
* :mod:`.normalise`: the per-field normalisation to [0, 1];
* :mod:`.score`: the conditional NCSN++ score model and its denoiser;
* :mod:`.training`: the training loop (rule ``train_model``, workflow/rules/train.smk), fed by the dataset
  and batch stream of :mod:`.training_data`, its checkpoints and directory lock in :mod:`.checkpoints`;
* :mod:`.samplers`: the posterior samplers (rule ``sample_posterior``, workflow/rules/sample.smk);
* :mod:`.reconstruct`: the drivers those rules call, from the assembled data set to a model and samples.
"""

"""Rel-MF: unbiased recommender learning from missing-not-at-random implicit feedback (Saito et al., WSDM 2020).

The command is ``python -m domains.recsys.mnar`` (:mod:`domains.recsys.mnar.__main__`). Library modules,
one job each:

- :mod:`~domains.recsys.mnar.config`: the run's settings and their checks.
- :mod:`~domains.recsys.mnar.data`: readers of Yahoo! R3, Coat, click logs and RecBole ratings.
- :mod:`~domains.recsys.mnar.feedback`: clicks with propensities (:class:`ImplicitFeedback`).
- :mod:`~domains.recsys.mnar.sampling`: minibatches of pairs and the trainer's batch source.
- :mod:`~domains.recsys.mnar.models`: matrix factorisation, single and replicated.
- :mod:`~domains.recsys.mnar.losses`: the estimators' losses (naive, WMF, Rel-MF, UBPR).
- :mod:`~domains.recsys.mnar.training`: real-data fits through the core trainer.
- :mod:`~domains.recsys.mnar.alternating_least_squares`: closed-form ALS for WMF and linear-score Rel-MF.
- :mod:`~domains.recsys.mnar.expomf`: the ExpoMF baseline (EM).
- :mod:`~domains.recsys.mnar.metrics`: MAR ranking metrics and IPS/SNIPS estimates.
- :mod:`~domains.recsys.mnar.semi_synthetic`: the semi-synthetic world (generator fits, R, O, Y).
- :mod:`~domains.recsys.mnar.semi_synthetic_log`: that world as a click log with logged propensities
  (command: ``python -m domains.recsys.mnar.write_semi_synthetic_log``).
- :mod:`~domains.recsys.mnar.replicated_training`: the compared models, all replicas in one batched loop.
- :mod:`~domains.recsys.mnar.semi_synthetic_experiment` and :mod:`~domains.recsys.mnar.real_data_experiment`:
  the two protocols; :mod:`~domains.recsys.mnar.experiment` runs one into a run folder;
  :mod:`~domains.recsys.mnar.report` and :mod:`~domains.recsys.mnar.store_export` write what it found.
"""

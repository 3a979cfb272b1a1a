"""Results of training jobs: checkpoint validation, streamed ZIP downloads, analytics.

Submodules are imported on use, so that reading analytics never pulls in torch:

* :mod:`workbench.results.evaluate` — ``validate`` (perplexity, accuracy, BLEU);
* :mod:`workbench.results.downloads` — ``iter_zip``, ``model_zip``, ``logs_zip``;
* :mod:`workbench.results.analytics` — ``job_analytics``, ``summary``, ``compare``.
"""

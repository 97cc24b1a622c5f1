"""ddcore plugin ``diffsel`` (bundled): diffusion-driven patch selection. See ``docs/diffsel.md``.

Modules: ``plugin`` (hooks), ``config`` (options), ``priors`` / ``pixel_prior`` / ``sd_prior`` /
``sources`` (diffusion priors), ``train_prior`` (ddcore's own prior), ``windows`` and ``scorers``
(Stage I), ``pool`` (streaming and the cached pool), ``ranking`` and ``assemble`` (Stage II),
``selection`` (the hook work), ``features``, ``kd`` and ``evaluate`` (the KD evaluator), ``commands``.
"""

__version__ = "0.1.0"

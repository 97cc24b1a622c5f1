"""The built-in trajectory-matching distiller (``distill = "tm"``), one module per part:

- :mod:`ddcore.tm.config`: the ``[tm]`` table (:class:`~ddcore.tm.config.TMConfig`);
- :mod:`ddcore.tm.presets`: per-IPC presets (``spec-ipc*``, ``digits-ipc*``);
- :mod:`ddcore.tm.flatparams`: a network's parameters as one flat vector, the currency of trajectories;
- :mod:`ddcore.tm.experts`: expert trajectories, trained once and cached (``dd experts``);
- :mod:`ddcore.tm.matching`: the pure unroll and matching loss of one outer step (``tm.unroll = "full"``);
- :mod:`ddcore.tm.unroll`: the constant-memory exact unroll (``tm.unroll = "constant"``);
- :mod:`ddcore.tm.memory`: the projected peak of each unroll and the choice of ``tm.unroll`` before any work;
- :mod:`ddcore.tm.loop`: the outer loop (optimisers, start window, processes, resume);
- :mod:`ddcore.tm.correct_init`: EDF's "predicted correctly" initialisation (``tm.init = "correct"``);
- :mod:`ddcore.tm.distiller`: the :class:`~ddcore.Distiller` the run pipeline calls;
- :mod:`ddcore.tm.plugin`: its registration through ``dd_register_distillers``.
"""

"""The field's standard benchmarks, read from local files (nothing is ever downloaded).

======================  =====================================  ========  ===========  ============
name                    files under ``--data-root``            size      held         ConvNet
======================  =====================================  ========  ===========  ============
``cifar10``             ``cifar-10-batches-py/`` (pickles)     32 px     in memory    D3
``cifar100``            ``cifar-100-python/`` (pickles)        32 px     in memory    D3
``mnist``               ``MNIST/raw/`` (idx)                   28 px     in memory    D3
``fashion-mnist``       ``FashionMNIST/raw/`` (idx)            28 px     in memory    D3
``tiny-imagenet``       ``wnids.txt``, ``train/``, ``val/``    64 px     streamed     D4
``imagenette``          ``train/<wnid>/``, ``val/<wnid>/``     128 px    streamed     D5
``imagewoof``           ``train/<wnid>/``, ``val/<wnid>/``     128 px    streamed     D5
======================  =====================================  ========  ===========  ============

One module per format: :mod:`.cifar`, :mod:`.mnist`, :mod:`.tinyimagenet`, :mod:`.imagenette`; the shared
layout checks and in-memory splits in :mod:`.common`. The built-in ``datasets`` plugin registers them
(:mod:`ddcore.builtin.datasets`). See ``docs/datasets.md``.
"""

"""dd-herding: herding selection (Welling 2009) as a ddcore plugin.

The algorithm lives in :mod:`dd_herding.herding` (pure tensor functions, no ddcore needed);
:mod:`dd_herding.plugin` is the thin ``dd_select`` hook that ddcore loads as ``--plugin herding``.
"""

from dd_herding.herding import FEATURE_SPACES, herding_order, image_features

__version__ = "0.1.0"
__all__ = ["FEATURE_SPACES", "herding_order", "image_features", "__version__"]

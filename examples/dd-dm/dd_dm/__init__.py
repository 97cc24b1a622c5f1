"""dd-dm: Distribution Matching (Zhao & Bilen, WACV 2023) as a ddcore distiller.

The algorithm's pieces are tensor functions in :mod:`dd_dm.matching`; the loop is
:mod:`dd_dm.distiller`; :mod:`dd_dm.plugin` registers it as ``--distill dm`` (entry point ``dm``).
"""

from dd_dm.config import DMConfig
from dd_dm.matching import class_loss, dm_loss, embedder, embedding_network, siamese_dsa

__version__ = "0.1.0"
__all__ = ["DMConfig", "class_loss", "dm_loss", "embedder", "embedding_network", "siamese_dsa", "__version__"]

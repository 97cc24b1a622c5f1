"""The ``dd`` command (installed as the ``ddcore_cli`` package)."""

"""``python -m ddcore_cli``: the ``dd`` command, for launchers that need a module (accelerate, torchrun)."""

from ddcore_cli.app import main

if __name__ == "__main__":
    main()

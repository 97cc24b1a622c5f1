"""The `edf` plugin's hook implementations (loaded through the `edf` entry point)."""

name = "edf"

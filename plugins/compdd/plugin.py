"""The `compdd` plugin's hook implementations (loaded through the `compdd` entry point)."""

name = "compdd"

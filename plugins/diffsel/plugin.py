"""The `diffsel` plugin's hook implementations (loaded through the `diffsel` entry point)."""

name = "diffsel"

"""ddcore plugin `edf` (bundled). See plugins/README.md."""

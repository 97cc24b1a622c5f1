"""ddcore plugin `diffsel` (bundled). See plugins/README.md."""

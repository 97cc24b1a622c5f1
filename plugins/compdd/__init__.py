"""ddcore plugin `compdd` (bundled). See plugins/README.md."""

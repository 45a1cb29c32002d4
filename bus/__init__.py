"""nanoservice."""

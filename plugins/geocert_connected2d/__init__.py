"""geocert plugin (being written)."""

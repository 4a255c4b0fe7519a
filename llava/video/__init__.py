"""video package of llava."""

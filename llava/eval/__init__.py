"""eval package of llava."""

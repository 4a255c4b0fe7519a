"""model package of llava."""

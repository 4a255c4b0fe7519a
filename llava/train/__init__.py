"""train package of llava."""

"""The serve tests use the shared tiny_checkpoint, tiny_video and tiny_image fixtures of tests/conftest.py."""

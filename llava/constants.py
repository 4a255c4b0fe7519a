"""Placeholder ids, the ignore index and the special strings shared by every layer of the package."""

IGNORE_INDEX = -100
IMAGE_TOKEN_INDEX = -200
VIDEO_TOKEN_INDEX = -201

DEFAULT_IMAGE_TOKEN = "<image>"
DEFAULT_VIDEO_TOKEN = "<video>"

# placeholder string in a prompt -> the negative id that stands for it in input_ids
MEDIA_TOKEN_INDEX = {DEFAULT_IMAGE_TOKEN: IMAGE_TOKEN_INDEX, DEFAULT_VIDEO_TOKEN: VIDEO_TOKEN_INDEX}

# written by a model where an answer states a time (the LLM never sees clock times); the serving session replaces
# it with the answer's best evidence span in words (`llava.serve.time_answers`)
TIME_PLACEHOLDER = "<when>"

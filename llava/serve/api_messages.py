"""Validate an OpenAI chat-completions request body and replay its messages into a prompt template.

Messages are system / developer (the template's system prompt), user and assistant turns; content is a
string or a list of parts ({"type": "text"}, {"type": "video_url"}, {"type": "image_url"}). The last message
must be the user's: the answer is generated for it. The media tag goes in front of the first user turn that
holds the (single) video or image; earlier assistant turns are replayed as given.
"""

from __future__ import annotations

from dataclasses import dataclass

from llava.constants import DEFAULT_IMAGE_TOKEN, DEFAULT_VIDEO_TOKEN, MEDIA_TOKEN_INDEX
from llava.conversation import Conversation
from llava.serve.api_media import MediaError, MediaRef
from llava.serve.chat_session import GenerationSettings

MEDIA_PARTS = {"video_url": "video", "image_url": "image"}
SYSTEM_ROLES = ("system", "developer")


def _invalid(message: str, code: str = "invalid_request") -> MediaError:
    return MediaError(400, message, code)


@dataclass
class ChatRequest:
    model: str
    turns: list[tuple[str, str]]  # ("user" | "assistant", text); the last one is the user's question
    settings: GenerationSettings
    system: str | None = None
    media: MediaRef | None = None
    media_turn: int | None = None  # index in `turns` of the first user turn holding the media
    stream: bool = False
    include_usage: bool = False
    evidence: bool = False  # add the answer's evidence (time spans of the video it rests on) to the response

    @property
    def media_token(self) -> str:
        return DEFAULT_IMAGE_TOKEN if self.media is not None and self.media.kind == "image" else DEFAULT_VIDEO_TOKEN

    def replay(self, conversation: Conversation) -> None:
        """Append every turn (the media tag in front of the media turn) and the pending assistant turn."""
        user, assistant = conversation.roles
        if self.system is not None:
            conversation.system = self.system
        for index, (role, text) in enumerate(self.turns):
            if index == self.media_turn:
                text = f"{self.media_token}\n{text}"
            conversation.append_message(user if role == "user" else assistant, text)
        conversation.append_message(assistant, None)


def _clean(text: str) -> str:
    """Client text must not smuggle in media placeholders."""
    for token in MEDIA_TOKEN_INDEX:
        text = text.replace(token, "")
    return text


def _parse_content(content, role: str, where: str) -> tuple[str, list[MediaRef]]:
    """A message's content -> its text (text parts joined by newlines) and its media references."""
    if content is None and role == "assistant":
        return "", []
    if isinstance(content, str):
        return _clean(content), []
    if not isinstance(content, list):
        raise _invalid(f"{where}.content must be a string or a list of content parts", "invalid_content")
    texts, refs = [], []
    for i, part in enumerate(content):
        at = f"{where}.content[{i}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise _invalid(f"{at}.text must be a string", "invalid_content_part")
            texts.append(_clean(part["text"]))
        elif isinstance(kind, str) and kind in MEDIA_PARTS:  # a list or object type is unhashable
            if role != "user":
                raise _invalid(f"{at}: only user messages may hold a {kind} part", "invalid_content_part")
            value = part.get(kind)
            url = value.get("url") if isinstance(value, dict) else value
            if not isinstance(url, str) or not url:
                raise _invalid(f"{at}.{kind}.url must be a non-empty string", "invalid_content_part")
            refs.append(MediaRef(MEDIA_PARTS[kind], url))
        else:
            valid = ", ".join(["text", *MEDIA_PARTS])
            raise _invalid(f"{at}: unsupported content part type {kind!r} (valid: {valid})", "invalid_content_part")
    return "\n".join(t for t in texts if t), refs


def _number(body: dict, name: str, default, low: float, high: float, integer: bool = False):
    value = body.get(name)
    if value is None:
        return default
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise _invalid(f"{name} must be {kind} in [{low:g}, {high:g}]", "invalid_parameter")
    return value


def _settings(body: dict, defaults: GenerationSettings) -> GenerationSettings:
    """The request's max_tokens, temperature and top_p; `defaults` (the server's flags) for those it leaves out."""
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = _number({"max_tokens": max_tokens}, "max_tokens", defaults.max_new_tokens, 1, 1 << 20, integer=True)
    if _number(body, "n", 1, 1, 1, integer=True) != 1:
        raise _invalid("n must be 1", "invalid_parameter")
    return GenerationSettings(
        max_new_tokens=max_tokens,
        temperature=float(_number(body, "temperature", defaults.temperature, 0.0, 2.0)),
        top_p=float(_number(body, "top_p", defaults.top_p, 1e-6, 1.0)),
    )


def parse_chat_request(body: dict, model_id: str, defaults: GenerationSettings) -> ChatRequest:
    """Validate the body; every problem is a 400 (404 for an unknown model) naming the offending field."""
    model = body.get("model", model_id)
    if model != model_id:
        raise MediaError(404, f"unknown model {model!r}; this server serves {model_id!r}", "model_not_found")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("messages must be a non-empty list", "missing_messages")
    system: list = []
    turns: list = []
    media, media_turn = None, None
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role not in (*SYSTEM_ROLES, "user", "assistant"):
            valid = ", ".join((*SYSTEM_ROLES, "user", "assistant"))
            raise _invalid(f"{where}.role must be one of {valid} (got {role!r})", "invalid_role")
        if "content" not in message:
            raise _invalid(f"{where}.content is missing", "invalid_content")
        text, refs = _parse_content(message["content"], "user" if role in SYSTEM_ROLES else role, where)
        if role in SYSTEM_ROLES:
            if refs:
                raise _invalid(f"{where}: system messages hold text only", "invalid_content_part")
            system.append(text)
            continue
        for ref in refs:
            if media is None:
                media, media_turn = ref, len(turns)
            elif ref != media:
                raise _invalid("only one video or image per request is supported", "too_many_media")
        turns.append((role, text))
    if not turns or turns[-1][0] != "user":
        raise _invalid("the last message must be the user's (the answer is generated for it)", "invalid_messages")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _invalid("stream must be true or false", "invalid_parameter")
    options = body.get("stream_options") or {}
    evidence = body.get("evidence", False)
    if not isinstance(evidence, bool):
        raise _invalid("evidence must be true or false", "invalid_parameter")
    return ChatRequest(
        model=model_id,
        turns=turns,
        settings=_settings(body, defaults),
        system="\n".join(system) if system else None,
        media=media,
        media_turn=media_turn,
        stream=stream,
        include_usage=bool(isinstance(options, dict) and options.get("include_usage")),
        evidence=evidence,
    )

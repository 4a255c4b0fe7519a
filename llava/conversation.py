"""Prompt templates (vicuna v1 / llava_v1, plain) and the one formatter that renders them.

The two Vicuna-style templates differ only in the system prompt, as in the original: `vicuna_v1` (alias `v1`,
what the released checkpoints were trained with) says "user", `llava_v1` (this project's default) says "human".

`Conversation.render()` returns the prompt and the character spans of the assistant's replies, so that
training can supervise exactly those spans and inference can end the prompt with the assistant's role.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from llava.errors import ConfigError

VICUNA_SYSTEM = (  # llava_v1's (this project's default template)
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
VICUNA_V1_SYSTEM = (  # vicuna_v1's, the original's v1 (the released checkpoints')
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


@dataclass
class Conversation:
    """A chat: `system`, two `roles`, and messages [role, text or None]; None marks the turn to generate.

    Style "two_sep" (vicuna v1): "{system} USER: {q} ASSISTANT: {a}</s>USER: ..." (sep between a question and
    its answer, sep2 after each answer). Style "plain": "{q}{a}\n" with no roles, for caption pretraining.
    """

    name: str
    system: str
    roles: tuple[str, str]
    style: str = "two_sep"
    sep: str = " "
    sep2: str = "</s>"
    messages: list[list] = field(default_factory=list)

    def append_message(self, role: str, text: str | None) -> None:
        if role not in self.roles:
            raise ConfigError(f"unknown role {role!r}; this template has {self.roles}")
        self.messages.append([role, text])

    def copy(self) -> Conversation:
        return copy.deepcopy(self)

    def render(self) -> tuple[str, list[tuple[int, int]]]:
        """The full prompt and the [start, end) character spans of the assistant replies (with their sep2)."""
        if self.style == "plain":
            return self._render_plain()
        text, spans = self.system + self.sep, []
        for role, message in self.messages:
            if message is None:
                text += role + ":"
                continue
            if role == self.roles[1]:
                text += role + ":"
                start = len(text)  # the space after the role belongs to the reply: generation starts there
                text += " " + message + self.sep2
                spans.append((start, len(text)))
            else:
                text += role + ": " + message + self.sep
        return text, spans

    def _render_plain(self) -> tuple[str, list[tuple[int, int]]]:
        text, spans = "", []
        for role, message in self.messages:
            if message is None:
                continue
            if role == self.roles[1]:
                spans.append((len(text), len(text) + len(message) + 1))
                text += message + "\n"
            else:
                text += message
        return text, spans

    def get_prompt(self) -> str:
        return self.render()[0]


_VICUNA_V1 = Conversation(name="vicuna_v1", system=VICUNA_V1_SYSTEM, roles=("USER", "ASSISTANT"))
TEMPLATES: dict[str, Conversation] = {
    "vicuna_v1": _VICUNA_V1,
    "v1": _VICUNA_V1,  # the original's name for the same template (its training flag --version v1)
    "llava_v1": Conversation(name="llava_v1", system=VICUNA_SYSTEM, roles=("USER", "ASSISTANT")),
    "plain": Conversation(name="plain", system="", roles=("USER", "ASSISTANT"), style="plain", sep="\n", sep2="\n"),
}
DEFAULT_TEMPLATE = "llava_v1"  # this project's checkpoints are trained with it (`VideoLLaMBConfig.conv_template`)
RELEASE_TEMPLATE = "vicuna_v1"  # the released checkpoints were trained with --version v1


def get_template(name: str) -> Conversation:
    """A fresh copy of a registered template; an unknown name lists the valid ones."""
    if name not in TEMPLATES:
        raise ConfigError(f"unknown conversation template {name!r}; valid: {', '.join(sorted(TEMPLATES))}")
    return TEMPLATES[name].copy()

"""VideoLLaMB as an lmms-eval model (`--model videollamb`), registered through the `lmms_eval.models` entry point
(`llava.eval.lmms_eval_plugin`).

    python -m lmms_eval --model videollamb --model_args pretrained=checkpoints/videollamb-tiny-shapes,device=cpu \\
        --tasks TASK --include_path TASKS

model_args: pretrained (a checkpoint folder; default the bundled demo model), model_base, device (auto, cpu, cuda,
...; also lmms-eval's --device), dtype (auto, float32, bfloat16, float16), conv_mode, num_frames / video_fps /
max_frames (change the checkpoint's frame sampling, as the shared flags do), max_new_tokens (when a task gives none).

Requests are answered one at a time by a `ChatSession`, each video encoded once however many requests in a row ask
about it. generate_until: the context is the user's question after the video and the answer is cut at the task's
stop strings. loglikelihood: the continuation is scored as the assistant's reply (`llava.serve.reply_likelihood`); as
lmms-eval's LLaVA models do, the value returned is the continuation's mean token cross-entropy (lower = likelier),
which lmms-eval's multiple_choice scoring ranks by its lowest: the choice of `llava.eval.videoqa --protocol
likelihood`. generate_until_multi_round: round by round, each a new conversation, as lmms-eval's task asks (its
doc_to_text gives each later round's visuals and context, and says when the rounds are done); the answer is the
list of the rounds' answers. A document's visual is one video path, one image, or none.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from lmms_eval.api.instance import GenerationResult, Instance
from lmms_eval.api.model import lmms

from llava.errors import ConfigError
from llava.progress import progress_bar
from llava.serve.chat_session import DEFAULT_DEVICE, SHORT_MAX_NEW_TOKENS, ChatSession, GenerationSettings
from llava.serve.options import DTYPES
from llava.serve.reply_likelihood import option_scores


class VideoLLaMB(lmms):
    is_simple = True

    def __init__(
        self,
        pretrained: str | None = None,
        model_base: str | None = None,
        device: str | None = None,
        dtype: str = "auto",
        conv_mode: str | None = None,
        num_frames: int | None = None,
        video_fps: float | None = None,
        max_frames: int | None = None,
        max_new_tokens: int = SHORT_MAX_NEW_TOKENS,
        batch_size: int | str = 1,
        max_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        if dtype not in DTYPES:
            raise ConfigError(f"model_args dtype={dtype!r}: expected one of {', '.join(DTYPES)}")
        self.session = ChatSession.from_pretrained(
            pretrained, device=device or DEFAULT_DEVICE, model_base=model_base, dtype=DTYPES[dtype], conv_mode=conv_mode
        )
        self.session.sampling = self.session.sampling.override(
            num_frames=None if num_frames is None else int(num_frames),
            fps=None if video_fps is None else float(video_fps),
            max_frames=None if max_frames is None else int(max_frames),
        )
        self.max_new_tokens = int(max_new_tokens)
        self.loaded: str | None = None  # the video whose tokens the session holds

    # --- the document's visual -------------------------------------------------------------------------------
    def _doc(self, doc_id: int, task: str, split: str) -> dict:
        return self.task_dict[task][split][doc_id]

    def _load_visual(self, visuals: list | None, where: str) -> None:
        """Encode a document's video or image into the session (a video already loaded is reused); no visual:
        text alone. The session starts a new conversation either way."""
        visuals = visuals or []
        if len(visuals) > 1:
            raise ConfigError(f"{where}: {len(visuals)} visuals; VideoLLaMB takes one video or image")
        visual = visuals[0] if visuals else None
        if isinstance(visual, str | Path):
            if str(visual) != self.loaded:
                self.loaded = None
                self.session.load_video(visual)
                self.loaded = str(visual)
        elif visual is None:
            self.session.media, self.loaded = None, None
        else:  # a PIL image, as lmms-eval's image tasks hand them over
            self.session.load_image(np.asarray(visual.convert("RGB")))
            self.loaded = None
        self.session.reset()

    # --- lmms-eval's requests -----------------------------------------------------------------------------
    def generate_until(self, requests: list[Instance]) -> list[str]:
        answers = []
        for request in progress_bar(requests, desc="videollamb generate", unit="request"):
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            self._load_visual(doc_to_visual(self._doc(doc_id, task, split)), f"{task} document {doc_id}")
            answers.append(self._answer(context, gen_kwargs))
        return answers

    def generate_until_multi_round(self, requests: list[Instance]) -> list[list[str]]:
        answers = []
        for request in progress_bar(requests, desc="videollamb generate rounds", unit="request"):
            context, gen_kwargs, doc_to_visual, doc_to_text, doc_id, task, split = request.args
            doc, where = self._doc(doc_id, task, split), f"{task} document {doc_id}"
            self._load_visual(doc_to_visual(doc), where)
            rounds, info = [], None
            while True:
                rounds.append(self._answer(context, gen_kwargs))
                visuals, context, done, kept, info = doc_to_text(
                    doc, previous_output=rounds, round_idx=len(rounds), previous_round_info=info
                )
                rounds = list(kept)  # a task may rewrite the answers so far
                if done:
                    break
                self._load_visual(visuals, f"{where}, round {len(rounds)}")
            answers.append(rounds)
        return answers

    def _answer(self, context: str, gen_kwargs: dict) -> str:
        """The session's answer to `context` under the task's generation_kwargs, cut at its stop strings."""
        return cut_at_stops(self.session.ask(context, self._settings(gen_kwargs)), gen_kwargs.get("until"))

    def loglikelihood(self, requests: list[Instance]) -> list[GenerationResult]:
        results = []
        for request in progress_bar(requests, desc="videollamb loglikelihood", unit="request"):
            context, continuation, doc_to_visual, doc_id, task, split = request.args
            doc = self._doc(doc_id, task, split)
            if callable(continuation):  # a loglikelihood task hands over its doc_to_target
                continuation = continuation(doc)
            self._load_visual(doc_to_visual(doc), f"{task} document {doc_id}")
            if self.session.media is None:
                raise ConfigError(f"{task} document {doc_id}: loglikelihood needs a video or an image")
            (score,) = option_scores(self.session, context, [str(continuation)])
            # lmms-eval 0.7 turns every result that is not a string or a GenerationResult into its str() before
            # scoring (evaluator: unwrap_generation_output), which breaks its own multiple_choice scoring of
            # (value, is_greedy) pairs; a GenerationResult's payload goes through unchanged.
            results.append(GenerationResult(text=(score.loss, score.greedy)))
        return results

    def _settings(self, gen_kwargs: dict) -> GenerationSettings:
        """lmms-eval's generation_kwargs as the session's settings; greedy unless the task samples."""
        sample = bool(gen_kwargs.get("do_sample")) and float(gen_kwargs.get("temperature") or 0) > 0
        return GenerationSettings(
            max_new_tokens=int(gen_kwargs.get("max_new_tokens") or self.max_new_tokens),
            temperature=float(gen_kwargs["temperature"]) if sample else 0.0,
            top_p=float(gen_kwargs.get("top_p") or 1.0) if sample else 1.0,
        )


def cut_at_stops(text: str, until: str | list[str] | None) -> str:
    """`text` up to the first of the stop strings (none: all of it)."""
    stops = [until] if isinstance(until, str) else list(until or [])
    cut = min((text.find(stop) for stop in stops if stop and stop in text), default=len(text))
    return text[:cut]

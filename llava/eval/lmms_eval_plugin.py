"""Registers `videollamb` with lmms-eval: pyproject.toml's entry point (group `lmms_eval.models`) names `manifest`,
which lmms-eval calls when it builds its model registry. Light on purpose: the model class
(`llava.eval.lmms_eval_model.VideoLLaMB`) is imported only when a run asks for it."""

from __future__ import annotations

from lmms_eval.models.registry_v2 import ModelManifest

MODEL_ID = "videollamb"


def manifest() -> ModelManifest:
    return ModelManifest(model_id=MODEL_ID, simple_class_path="llava.eval.lmms_eval_model.VideoLLaMB")

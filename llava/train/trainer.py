"""The transformers Trainer with the modality-grouped sampler and the loss at every recurrent iteration.

`--log_row_ids True` records which rows each process trained on: every training batch appends one JSON line
`{"rank": r, "step": s, "ids": [...]}` to `output_dir/row_ids.rank{r}.jsonl` (r = global rank, s = the
optimizer step the batch counts towards, ids = the row ids of the batch's readable rows). It shows how DDP
sharded the data and which rows a run has seen; resuming appends to the same files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import Trainer

from llava.data.dataset import DataCollator
from llava.data.sampler import ModalityGroupedSampler
from llava.train.args import TrainingArguments

ROW_IDS_KEY = "row_ids"  # batch key of the ids; removed before the model's forward


@dataclass
class RowIdCollator(DataCollator):
    """`DataCollator` that also returns the ids of the rows it kept, under "row_ids" (a list of str)."""

    def __call__(self, samples):
        batch = super().__call__(samples)
        batch[ROW_IDS_KEY] = [s["id"] for s in samples if s is not None]
        return batch


class VideoLLaMBTrainer(Trainer):
    args: TrainingArguments  # this project's, with group_by_modality_length, loss_per_iteration, log_row_ids

    def _get_train_sampler(self, train_dataset=None):
        dataset: Any = train_dataset if train_dataset is not None else self.train_dataset
        if not self.args.group_by_modality_length:
            return super()._get_train_sampler(train_dataset)
        return ModalityGroupedSampler(
            dataset.modalities,
            batch_size=self.args.per_device_train_batch_size,
            world_size=self.args.world_size,
            seed=self.args.seed,
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if ROW_IDS_KEY in inputs:
            inputs = dict(inputs)
            ids = inputs.pop(ROW_IDS_KEY)
            if getattr(self.args, "log_row_ids", False) and model.training:
                self._log_row_ids(ids)
        if inputs["input_ids"].shape[0] == 0:  # every row of this batch was unreadable (already logged by id)
            anchor = next(p for p in model.parameters() if p.requires_grad)
            return anchor.sum() * 0.0
        if not self.args.loss_per_iteration:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch=num_items_in_batch)
        # The model repeats each video row once per segment, so the Trainer's supervised-token count (taken from
        # the batch before the copies) would inflate the loss by the number of segments: let the model average
        # over its copies, and divide for gradient accumulation here, which training_step skips when handed a count.
        inputs = {**inputs, "loss_every_segment": True}
        result: Any = super().compute_loss(model, inputs, return_outputs, num_items_in_batch=None)
        handed_count = self.model_accepts_loss_kwargs and num_items_in_batch is not None
        scaled = self.loss_is_scaled_for_ga
        trainer_divides = scaled is False or (scaled is None and not handed_count)
        if model.training and not trainer_divides:
            steps = self.current_gradient_accumulation_steps
            result = (result[0] / steps, result[1]) if return_outputs else result / steps
        return result

    def _log_row_ids(self, ids: list[Any]) -> None:
        rank = self.args.process_index
        line = {"rank": rank, "step": self.state.global_step + 1, "ids": list(ids)}
        folder = Path(str(self.args.output_dir))
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"row_ids.rank{rank}.jsonl", "a", encoding="utf-8") as file:
            file.write(json.dumps(line) + "\n")

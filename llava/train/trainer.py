"""The transformers Trainer with the modality-grouped sampler and the loss at every recurrent iteration."""

from __future__ import annotations

from transformers import Trainer

from llava.data.sampler import ModalityGroupedSampler


class VideoLLaMBTrainer(Trainer):
    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not self.args.group_by_modality_length:
            return super()._get_train_sampler(train_dataset)
        return ModalityGroupedSampler(
            dataset.modalities,
            batch_size=self.args.per_device_train_batch_size,
            world_size=self.args.world_size,
            seed=self.args.seed,
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if inputs["input_ids"].shape[0] == 0:  # every row of this batch was unreadable (already logged by id)
            anchor = next(p for p in model.parameters() if p.requires_grad)
            return anchor.sum() * 0.0
        if self.args.loss_per_iteration:
            inputs = {**inputs, "loss_every_segment": True}
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

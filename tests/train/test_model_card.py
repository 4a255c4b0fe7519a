"""The demo model's card is written from the measured files, and says whether the memory works."""

import json

from llava.eval.niavh.report import summarize
from llava.train.model_card import main


def needle_cells(found: float) -> list[dict]:
    """NIAVH cell records as `llava.eval.niavh` writes them: two needles x two lengths, `found` of the video
    needle's cells answered right and all of the image needle's."""
    cells = []
    for modality, needle in (("image", "object:purple triangle:still"), ("video", "object:purple triangle:moving")):
        for i, length in enumerate((30, 60)):
            score = 1.0 if modality == "image" else float(i < 2 * found)
            cells.append({"model": "demo", "scoring": "exact", "score_range": [0, 1], "modality": modality,
                          "needle": needle, "score": score, "context_length": length, "depth_percent": 50,
                          "trivial": False, "haystack": "synthetic:seed=0", "fps": 1.0, "size": 224,
                          "model_settings": {"name": "demo", "sample_fps": 1.0}})
    return cells


def write_inputs(folder, first, first_ablated):
    summary = {"seed": 0, "tower_attribute_accuracy": 0.97, "minutes": 29.3, "machine": "x86_64 CPU, 2 cores",
               "curriculum": [{"min_scenes": 1, "max_scenes": 2, "num_videos": 10, "steps": 5,
                               "kinds": "caption", "num_frames": 24, "video_fps": None},
                              {"min_scenes": 2, "max_scenes": 4, "num_videos": 10, "steps": 5,
                               "kinds": "caption,first_scene", "num_frames": 128, "video_fps": 1.0}],
               "stage_losses": [0.5, 0.25]}
    scores = {"scene_caption_accuracy": 0.96, "scenes": 217, "first_scene_accuracy_6plus": first,
              "videos_6plus": 21, "seed": 1001, "num_videos": 40, "stream_fps": 1.0,
              "streaming_caption_accuracy": 0.86}
    (folder / "training_summary.json").write_text(json.dumps(summary))
    for name, found in (("niavh.json", 1.0), ("niavh_ablated.json", 0.0)):
        (folder / name).write_text(json.dumps(summarize(needle_cells(found))))
    (folder / "scores.json").write_text(json.dumps(scores))
    (folder / "scores_ablated.json").write_text(json.dumps(scores | {"first_scene_accuracy_6plus": first_ablated}))


def test_the_card_carries_the_measured_numbers(tmp_path):
    write_inputs(tmp_path, first=0.93, first_ablated=0.04)
    assert main([str(tmp_path)]) == 0
    card = (tmp_path / "README.md").read_text()
    assert "29.3 minutes" in card and "| 1 | 2-4 | caption,first_scene | 1 fps, at most 128 | 10 | 5 | 0.250 |" in card
    assert "| 0 | 1-2 | caption | 24 uniform | 10 | 5 | 0.500 |" in card
    assert "| video (`object:purple triangle:moving`) | 1.000 | 0.000 |" in card
    assert "| image (`object:purple triangle:still`) | 1.000 | 1.000 |" in card
    assert "--lengths 30,60" in card and "--sample-fps 1" in card and "`synthetic:seed=0`" in card
    assert "| 0.930 | 0.040 |" in card
    assert "The memory carries the first scene" in card


def test_a_memory_no_better_than_its_ablation_is_called_a_limitation(tmp_path):
    write_inputs(tmp_path, first=0.10, first_ablated=0.05)
    assert main([str(tmp_path)]) == 0
    assert "Known limitation" in (tmp_path / "README.md").read_text()


def test_missing_inputs_are_one_error_line(tmp_path, capsys):
    assert main([str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith("error:")

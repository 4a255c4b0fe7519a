"""The demo model's card is written from the measured files, and says whether the memory works."""

import json

from llava.train.model_card import main


def write_inputs(folder, first, first_ablated):
    summary = {"seed": 0, "tower_attribute_accuracy": 0.97, "minutes": 29.3, "machine": "x86_64 CPU, 2 cores",
               "curriculum": [{"min_scenes": 1, "max_scenes": 2, "num_videos": 10, "steps": 5,
                               "kinds": "caption"},
                              {"min_scenes": 2, "max_scenes": 4, "num_videos": 10, "steps": 5,
                               "kinds": "caption,first_scene"}],
               "stage_losses": [0.5, 0.25]}
    scores = {"scene_caption_accuracy": 0.96, "scenes": 217, "first_scene_accuracy_6plus": first,
              "videos_6plus": 21, "seed": 1001, "num_videos": 40, "stream_fps": 1.0,
              "streaming_caption_accuracy": 0.86}
    (folder / "training_summary.json").write_text(json.dumps(summary))
    (folder / "scores.json").write_text(json.dumps(scores))
    (folder / "scores_ablated.json").write_text(json.dumps(scores | {"first_scene_accuracy_6plus": first_ablated}))


def test_the_card_carries_the_measured_numbers(tmp_path):
    write_inputs(tmp_path, first=0.93, first_ablated=0.04)
    assert main([str(tmp_path)]) == 0
    card = (tmp_path / "README.md").read_text()
    assert "29.3 minutes" in card and "| 1 | 2-4 | caption,first_scene | 10 | 5 | 0.250 |" in card
    assert "| 0.930 | 0.040 |" in card
    assert "The memory carries the first scene" in card


def test_a_memory_no_better_than_its_ablation_is_called_a_limitation(tmp_path):
    write_inputs(tmp_path, first=0.10, first_ablated=0.05)
    assert main([str(tmp_path)]) == 0
    assert "Known limitation" in (tmp_path / "README.md").read_text()


def test_missing_inputs_are_one_error_line(tmp_path, capsys):
    assert main([str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith("error:")


def test_a_needle_stage_is_listed_first_with_its_own_loss(tmp_path):
    write_inputs(tmp_path, first=0.93, first_ablated=0.04)
    summary = json.loads((tmp_path / "training_summary.json").read_text())
    summary["needle_stage"] = {"min_scenes": 1, "max_scenes": 2, "num_videos": 10, "steps": 8, "kinds": "brief_object"}
    summary["stage_losses"] = [0.125, 0.5, 0.25]
    summary["note"] = "its needle stage started from another seed"
    (tmp_path / "training_summary.json").write_text(json.dumps(summary))
    assert main([str(tmp_path)]) == 0
    card = (tmp_path / "README.md").read_text()
    assert "| needle | 1-2 | brief_object | 10 | 8 | 0.125 |" in card
    assert "(its needle stage started from another seed)" in card
    assert "| 0 | 1-2 | caption | 10 | 5 | 0.500 |" in card and "| 1 | 2-4 | caption,first_scene | 10 | 5 | 0.250 |" in card


def test_a_long_stage_is_listed_last_with_how_its_frames_were_sampled(tmp_path):
    write_inputs(tmp_path, first=0.93, first_ablated=0.04)
    summary = json.loads((tmp_path / "training_summary.json").read_text())
    summary["long_stage"] = {"min_scenes": 10, "max_scenes": 80, "num_videos": 12, "steps": 4, "kinds": "caption",
                             "fps": 1.0, "sample_fps": 1.0}
    summary["stage_losses"] = [0.5, 0.25, 0.375]
    (tmp_path / "training_summary.json").write_text(json.dumps(summary))
    assert main([str(tmp_path)]) == 0
    card = (tmp_path / "README.md").read_text()
    assert "| long | 10-80 (every frame at 1 fps) | caption | 12 | 4 | 0.375 |" in card
    assert "| 1 | 2-4 | caption,first_scene | 10 | 5 | 0.250 |" in card  # uniform stages say nothing more


def test_lettered_scores_are_listed_overall_and_per_kind(tmp_path):
    write_inputs(tmp_path, first=0.93, first_ablated=0.04)
    lettered = {"lettered_accuracy_6plus": 0.875, "lettered_questions_6plus": 8,
                "lettered_accuracy_by_kind": {"count": 0.75, "first_scene": 1.0}}
    scores = json.loads((tmp_path / "scores.json").read_text())
    (tmp_path / "scores.json").write_text(json.dumps(scores | lettered))
    ablated = lettered | {"lettered_accuracy_6plus": 0.5, "lettered_accuracy_by_kind": {"count": 0.75,
                                                                                         "first_scene": 0.25}}
    (tmp_path / "scores_ablated.json").write_text(json.dumps(scores | ablated))
    assert main([str(tmp_path)]) == 0
    card = (tmp_path / "README.md").read_text()
    assert "one question per kind (8 questions) | 0.875 | 0.500 |" in card
    assert "| - first_scene | 1.000 | 0.250 |" in card and "| - count | 0.750 | 0.750 |" in card


def test_a_lettered_stage_is_listed_with_its_share_and_the_added_layers(tmp_path):
    write_inputs(tmp_path, first=0.93, first_ablated=0.04)
    summary = json.loads((tmp_path / "training_summary.json").read_text())
    summary["letter_stage"] = {"min_scenes": 6, "max_scenes": 8, "num_videos": 15, "steps": 6, "kinds": "caption",
                               "mc_ratio": 0.5}
    summary["letter_layers"] = 2
    summary["stage_losses"] = [0.5, 0.25, 0.125]
    (tmp_path / "training_summary.json").write_text(json.dumps(summary))
    assert main([str(tmp_path)]) == 0
    card = (tmp_path / "README.md").read_text()
    assert "| lettered | 6-8 | caption (50% lettered, options judged) | 15 | 6 | 0.125 |" in card
    assert "the LLM gained 2 decoder layers before the lettered stage" in card
    assert "| 1 | 2-4 | caption,first_scene | 10 | 5 | 0.250 |" in card  # other stages say nothing more
    summary["letter_stage"] |= {"replay_videos": 1000, "freeze_adapter": True}
    (tmp_path / "training_summary.json").write_text(json.dumps(summary))
    assert main([str(tmp_path)]) == 0
    card = (tmp_path / "README.md").read_text()
    assert ("| caption (50% lettered, options judged) (+ the long stage's rows of 1000 videos; bridge and projector "
            "frozen) | 15 |") in card


def test_the_scene_cut_score_is_stated_where_the_scores_have_it(tmp_path):
    write_inputs(tmp_path, first=0.93, first_ablated=0.04)
    assert main([str(tmp_path)]) == 0
    assert "SceneTilling's segments" not in (tmp_path / "README.md").read_text()  # scores from before it existed
    scores = json.loads((tmp_path / "scores.json").read_text())
    (tmp_path / "scores.json").write_text(json.dumps(scores | {"scene_cuts_exact": 0.575}))
    assert main([str(tmp_path)]) == 0
    assert "scene changes in 0.575 of the 40 videos" in (tmp_path / "README.md").read_text()


def test_the_memory_pretraining_and_the_minutes_of_each_part_are_stated(tmp_path):
    write_inputs(tmp_path, first=0.93, first_ablated=0.04)
    summary = json.loads((tmp_path / "training_summary.json").read_text())
    summary["memory_stage"] = {"min_scenes": 2, "max_scenes": 8, "num_videos": 24, "steps": 15}
    summary["memory_record"] = {"steps": 15, "held_out": {"objects_shown": 0.981, "objects_absent": 1.0,
                                                          "scene_objects": 0.875, "scene_counts": 0.621}}
    summary["stage_minutes"] = {"data": 1.24, "tower": 7.5}
    (tmp_path / "training_summary.json").write_text(json.dumps(summary))
    assert main([str(tmp_path)]) == 0
    card = (tmp_path / "README.md").read_text()
    assert "29.3 minutes on x86_64 CPU, 2 cores (data 1.2, tower 7.5)" in card
    assert "24 videos of 2-8 scenes, 15 steps" in card
    assert "kept 0.98 of the objects shown (1.00 of the absent ones called absent), 0.88 of" in card
    assert "0.62 of the scene counts" in card


def test_the_seeds_after_the_curriculum_are_named_in_the_recipe_order(tmp_path):
    write_inputs(tmp_path, first=0.93, first_ablated=0.04)
    summary = json.loads((tmp_path / "training_summary.json").read_text())
    (tmp_path / "training_summary.json").write_text(json.dumps(summary | {"seeds": [0, 1, 2, 3]}))
    assert main([str(tmp_path)]) == 0
    assert "data seeds: 0, 1, 2, 3 (one per curriculum stage; the needle" in (tmp_path / "README.md").read_text()
    long_stage = {"min_scenes": 10, "max_scenes": 80, "num_videos": 12, "steps": 4, "kinds": "caption"}
    summary |= {"long_stage": long_stage, "cut_calibration": {"alpha": 0.5}, "stage_losses": [0.5, 0.25, 0.375],
                "seeds": [0, 1, 2, 4]}
    (tmp_path / "training_summary.json").write_text(json.dumps(summary))
    assert main([str(tmp_path)]) == 0
    card = (tmp_path / "README.md").read_text()
    assert "(one per curriculum stage, then the long stage's and the cut calibration's; the needle" in card


def test_the_training_cuts_and_the_served_cuts_are_stated(tmp_path):
    write_inputs(tmp_path, first=0.93, first_ablated=0.04)
    assert main([str(tmp_path)]) == 0
    assert "scene cuts:" not in (tmp_path / "README.md").read_text()  # a summary from before they were recorded
    summary = json.loads((tmp_path / "training_summary.json").read_text())
    summary["cut_calibration"] = {"exact_cuts_by_alpha": {"0.0": 0.495, "0.5": 0.655}, "alpha": 0.5,
                                  "feature": "tokens",
                                  "training_cuts": {"scenetilling_feature": "cls", "scenetilling_alpha": 0.0}}
    (tmp_path / "training_summary.json").write_text(json.dumps(summary))
    assert main([str(tmp_path)]) == 0
    card = (tmp_path / "README.md").read_text()
    assert "every stage cut its videos by the frames' CLS feature at alpha 0; served by the frames' bridge" in card
    assert "at alpha 0.5, the alpha that cut the most" in card
    assert "(by alpha: 0: 0.495, 0.5: 0.655)" in card


def test_the_counting_and_formats_stages_are_listed_after_the_long_stage_with_what_they_changed(tmp_path):
    write_inputs(tmp_path, first=0.93, first_ablated=0.04)
    summary = json.loads((tmp_path / "training_summary.json").read_text())
    kinds = "caption,count"
    summary |= {
        "long_stage": {"min_scenes": 10, "max_scenes": 80, "num_videos": 12, "steps": 4, "kinds": "caption"},
        "counting_stage": {"min_scenes": 3, "max_scenes": 8, "num_videos": 15, "steps": 6, "kinds": kinds,
                           "sample_fps": 1.0, "llm_input": "memories_and_last_segment"},
        "formats_stage": {"min_scenes": 3, "max_scenes": 8, "num_videos": 16, "steps": 7, "kinds": kinds,
                          "sample_fps": 1.0, "mc_ratio": 0.5, "mc_reply": "option", "replay_videos": 10},
        "cut_calibration": {"alpha": 0.0},
        "stage_losses": [0.5, 0.25, 0.375, 0.125, 0.0625],
        "seeds": [0, 1, 2, 4, 6, 7],
    }
    (tmp_path / "training_summary.json").write_text(json.dumps(summary))
    assert main([str(tmp_path)]) == 0
    card = (tmp_path / "README.md").read_text()
    rows = [line for line in card.splitlines() if line.startswith("| long") or line.startswith("| counting")
            or line.startswith("| formats")]
    assert rows == [
        "| long | 10-80 | caption | 12 | 4 | 0.375 |",
        "| counting | 3-8 (every frame at 1 fps) | caption,count (the LLM reads `memories_and_last_segment` from here "
        "on) | 15 | 6 | 0.125 |",
        "| formats | 3-8 (every frame at 1 fps) | caption,count (50% lettered, answered in the option's words) "
        "(+ the long stage's rows of 10 videos) | 16 | 7 | 0.062 |",
    ]
    assert ("then the long stage's, the cut calibration's, the counting stage's and the formats stage's" in card)


def test_a_model_taught_to_answer_lettered_prompts_in_words_says_so(tmp_path):
    write_inputs(tmp_path, first=0.93, first_ablated=0.04)
    assert main([str(tmp_path)]) == 0
    assert "option's words" not in (tmp_path / "README.md").read_text()
    summary = json.loads((tmp_path / "training_summary.json").read_text())
    summary["formats_stage"] = {"min_scenes": 3, "max_scenes": 8, "num_videos": 16, "steps": 7, "kinds": "caption",
                                "mc_ratio": 0.5, "mc_reply": "option"}
    summary["stage_losses"] = [0.5, 0.25, 0.125]
    (tmp_path / "training_summary.json").write_text(json.dumps(summary))
    assert main([str(tmp_path)]) == 0
    assert "answer the lettered prompt with the right option's words" in (tmp_path / "README.md").read_text()

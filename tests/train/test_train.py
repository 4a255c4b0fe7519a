"""llava.train.train end to end on a tiny model and synthetic videos: loss goes down, checkpoints load and
generate, LoRA / loss-per-iteration / resume work, bad rows are skipped or stop the run cleanly, two-process DDP
shards the rows, DeepSpeed ZeRO-2 runs, and the released-recipe launch scripts run on CPU."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch
from safetensors.torch import load_file
from transformers import set_seed

from llava.conversation import get_template
from llava.mm_utils import prompt_tensor
from llava.model.builder import load_pretrained_model
from llava.model.config import VideoLLaMBConfig
from llava.model.videollamb import VideoLLaMBForCausalLM
from llava.train.train import main
from llava.video.decode import load_video

from .conftest import REPO, free_port, losses, row_ids, subprocess_env, torchrun

STEPS = 12


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, train_args):
    """12 steps (batch 4, lr 3e-3) of the tiny model from scratch; the output folder."""
    out = tmp_path_factory.mktemp("run")
    assert main(train_args(out, "--max_steps", str(STEPS))) == 0
    return out


def generate_answer(checkpoint, video_path, question="Describe the video in one sentence.") -> str:
    tokenizer, model, processor, _ = load_pretrained_model(checkpoint, device="cpu")
    frames, _ = load_video(video_path, num_frames=4)
    conversation = get_template("llava_v1")
    conversation.append_message(conversation.roles[0], f"<video>\n{question}")
    conversation.append_message(conversation.roles[1], None)
    input_ids = prompt_tensor(conversation.get_prompt(), tokenizer)
    output = model.generate(input_ids, videos=[processor.video(frames)], max_new_tokens=8, min_new_tokens=2,
                            do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(output[0], skip_special_tokens=True).strip()


def test_training_lowers_the_loss_and_saves_a_checkpoint_that_generates(trained_run, data_dir, rows):
    logged = losses(trained_run)
    assert sorted(logged) == list(range(1, STEPS + 1))
    first, last = [logged[s] for s in (1, 2, 3)], [logged[s] for s in (STEPS - 2, STEPS - 1, STEPS)]
    # random init starts near ln(320) = 5.8; a working optimiser gets well below within 12 steps
    assert sum(first) / 3 - sum(last) / 3 > 0.5, logged
    answer = generate_answer(trained_run, data_dir / rows[0]["video"])
    assert isinstance(answer, str) and answer


@pytest.mark.parametrize("extra", [
    pytest.param(["--loss_per_iteration", "True"], id="loss_per_iteration"),
    pytest.param(["--lora_enable", "True", "--lora_r", "4", "--lora_alpha", "8"], id="lora"),
])
def test_variants_complete_and_save_a_loadable_checkpoint(tmp_path, train_args, model_config, trained_run, extra):
    assert main(train_args(tmp_path, "--max_steps", "3", *extra)) == 0
    logged = losses(tmp_path)
    assert all(torch.isfinite(torch.tensor(v)) for v in logged.values())
    # same seed, same first batch, same initial weights as trained_run: at step 1 the loss (per-segment copies
    # averaged, or LoRA with B = 0) is the plain model's, not a multiple of it
    assert logged[1] == pytest.approx(losses(trained_run)[1], rel=0.05)
    _, model, _, _ = load_pretrained_model(tmp_path, device="cpu")
    saved = load_file(tmp_path / "model.safetensors")
    assert not [k for k in saved if "lora_" in k or "base_model" in k or "modules_to_save" in k]
    set_seed(0)  # what train() does before building the fresh model: the same initial weights
    initial = VideoLLaMBForCausalLM(VideoLLaMBConfig.from_json_file(str(model_config))).state_dict()
    trained = model.state_dict()
    assert set(trained) == set(initial)
    for key in ("language_model.model.layers.0.self_attn.q_proj.weight",  # with LoRA: the adapters merged in
                "bridge.layer.mlp.0.weight", "mm_projector.0.weight"):
        assert not torch.equal(trained[key], initial[key]), key
    tower = "video_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight"
    assert torch.equal(trained[tower], initial[tower])  # frozen


def test_freeze_mm_mlp_adapter_trains_the_llm_alone(tmp_path, train_args, model_config):
    assert main(train_args(tmp_path, "--max_steps", "2", "--freeze_mm_mlp_adapter", "True")) == 0
    set_seed(0)  # what train() does before building the fresh model: the same initial weights
    initial = VideoLLaMBForCausalLM(VideoLLaMBConfig.from_json_file(str(model_config))).state_dict()
    trained = load_pretrained_model(tmp_path, device="cpu")[1].state_dict()
    frozen = [k for k in initial if k.startswith(("bridge.", "mm_projector."))]
    assert frozen and all(torch.equal(trained[k], initial[k]) for k in frozen)
    key = "language_model.model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(trained[key], initial[key])


def test_freeze_bridge_trains_the_projector_and_llm_on_a_fixed_memory(tmp_path, train_args, model_config):
    assert main(train_args(tmp_path, "--max_steps", "2", "--freeze_bridge", "True")) == 0
    set_seed(0)
    initial = VideoLLaMBForCausalLM(VideoLLaMBConfig.from_json_file(str(model_config))).state_dict()
    trained = load_pretrained_model(tmp_path, device="cpu")[1].state_dict()
    bridge = [k for k in initial if k.startswith("bridge.")]
    assert bridge and all(torch.equal(trained[k], initial[k]) for k in bridge)
    for key in ("mm_projector.0.weight", "language_model.model.layers.0.self_attn.q_proj.weight"):
        assert not torch.equal(trained[key], initial[key])


def test_tuning_and_freezing_the_adapter_together_is_one_error_line(tmp_path, train_args, capsys):
    argv = train_args(tmp_path, "--max_steps", "1", "--freeze_mm_mlp_adapter", "True", "--tune_mm_mlp_adapter", "True")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--freeze_mm_mlp_adapter" in err and len(err.strip().splitlines()) == 1


def test_tune_top_layers_trains_those_layers_and_the_head_alone(tmp_path, train_args, model_config):
    assert main(train_args(tmp_path, "--max_steps", "2", "--tune_top_layers", "1")) == 0
    set_seed(0)
    config = VideoLLaMBConfig.from_json_file(str(model_config))
    initial = VideoLLaMBForCausalLM(config).state_dict()
    trained = load_pretrained_model(tmp_path, device="cpu")[1].state_dict()
    top = f"language_model.model.layers.{config.text_config.num_hidden_layers - 1}."
    changed = {k for k in initial if not torch.equal(trained[k], initial[k])}
    assert {"language_model.lm_head.weight", f"{top}mlp.down_proj.weight"} <= changed
    assert all(k.startswith((top, "language_model.lm_head.", "language_model.model.norm.")) for k in changed)


@pytest.mark.parametrize(
    "flags", [("--tune_top_layers", "99"), ("--tune_top_layers", "1", "--tune_mm_mlp_adapter", "True")]
)
def test_tune_top_layers_refuses_what_it_cannot_do_in_one_line(tmp_path, train_args, capsys, flags):
    assert main(train_args(tmp_path, "--max_steps", "1", *flags)) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--tune_top_layers" in err and len(err.strip().splitlines()) == 1


def test_sampling_at_a_frame_rate_trains_and_keeps_the_models_uniform_default(tmp_path, train_args, model_config):
    assert main(train_args(tmp_path, "--max_steps", "2", "--video_fps", "2", "--num_frames", "6")) == 0
    assert all(torch.isfinite(torch.tensor(v)) for v in losses(tmp_path).values())
    saved = json.loads((tmp_path / "config.json").read_text())["num_frames"]
    assert saved == json.loads(model_config.read_text())["num_frames"] != 6  # not the frame cap of the rate


def test_resume_from_checkpoint_continues_to_max_steps(tmp_path, train_args):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    args = ["--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2"]
    assert main(train_args(whole, *args)) == 0
    assert (whole / "checkpoint-2").is_dir() and (whole / "checkpoint-4").is_dir()
    assert main(train_args(resumed, *args, "--resume_from_checkpoint", str(whole / "checkpoint-2"))) == 0
    state = json.loads((resumed / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    assert (resumed / "checkpoint-4").is_dir() and not (resumed / "checkpoint-2").exists()
    # steps 3 and 4 see the same rows, weights and optimiser state as the uninterrupted run
    a, b = losses(whole), losses(resumed)
    assert b[3] == pytest.approx(a[3], rel=1e-3) and b[4] == pytest.approx(a[4], rel=1e-3)
    load_pretrained_model(resumed, device="cpu")


def write_rows(path, rows):
    path.write_text(json.dumps(rows))
    return path


def missing_video_row(rows, row_id: str) -> dict:
    return {**rows[0], "id": row_id, "video": f"videos/{row_id}.mp4"}


def test_a_bad_row_is_reported_by_id_and_skipped(tmp_path, train_args, rows, caplog):
    data = write_rows(tmp_path / "rows.json", rows[:8] + [missing_video_row(rows, "broken_row")])
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):  # 9 rows, 3 steps of 3: one epoch, every row visited once
        code = main(train_args(out, "--max_steps", "3", "--per_device_train_batch_size", "3", "--log_row_ids", "True",
                               data_path=data))
    assert code == 0
    assert any("broken_row" in r.getMessage() and "cannot load" in r.getMessage() for r in caplog.records)
    trained_ids = [i for line in row_ids(out, 0) for i in line["ids"]]
    assert sorted(trained_ids) == sorted(r["id"] for r in rows[:8])  # the others all trained, the bad one not
    assert (out / "model.safetensors").is_file()


@pytest.mark.parametrize("workers", [0, 1])
def test_too_many_bad_rows_stop_with_one_error_line(tmp_path, train_args, rows, capsys, workers):
    bad = [missing_video_row(rows, f"broken_{i}") for i in range(4)]
    data = write_rows(tmp_path / "rows.json", rows[:6] + bad)  # 10 rows, 1 may be unreadable
    code = main(train_args(tmp_path / "out", "--max_steps", "3", "--dataloader_num_workers", str(workers),
                           data_path=data))
    err = capsys.readouterr().err
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert "unreadable" in errors[0] and "broken_" in errors[0]
    assert "Traceback" not in err
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_two_process_ddp_trains_each_rank_on_different_rows(tmp_path, train_args):
    out = tmp_path / "ddp"
    argv = train_args(out, "--max_steps", "3", "--per_device_train_batch_size", "2", "--ddp_backend", "gloo",
                      "--log_row_ids", "True", "--group_by_modality_length", "True")
    command = [*torchrun(), "--nproc_per_node=2", f"--master_port={free_port()}", "-m", "llava.train.train", *argv]
    done = subprocess.run(command, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [row_ids(out, r) for r in (0, 1)]
    for r, lines in enumerate(ranks):
        assert [line["step"] for line in lines] == [1, 2, 3] and {line["rank"] for line in lines} == {r}
        assert all(len(line["ids"]) == 2 for line in lines)
    seen = [{i for line in lines for i in line["ids"]} for lines in ranks]
    assert not seen[0] & seen[1]  # the ranks shared the epoch's rows, none twice
    assert len(seen[0] | seen[1]) == 12
    assert losses(out) and (out / "model.safetensors").is_file()
    load_pretrained_model(out, device="cpu")


@pytest.mark.slow
def test_deepspeed_zero2_one_process_completes_and_saves(tmp_path, train_args):
    pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install -e .[train])")
    out = tmp_path / "zero2"
    argv = train_args(out, "--max_steps", "2", "--deepspeed", str(REPO / "scripts" / "zero2.json"))
    command = [*torchrun(), "--nproc_per_node=1", f"--master_port={free_port()}", "-m", "llava.train.train", *argv]
    # the first DeepSpeed run on a machine JIT-compiles a CPU helper (about a minute), cached afterwards
    done = subprocess.run(command, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 2
    assert "zero_optimization" in json.loads((REPO / "scripts" / "zero2.json").read_text())
    load_pretrained_model(out, device="cpu")


# --- the launch scripts ---------------------------------------------------------------------------------------
SCRIPTS = {"plain": REPO / "scripts" / "finetune_video_image.slurm",
           "loss": REPO / "scripts" / "finetune_video_image_loss.slurm"}


def script_env() -> dict[str, str]:
    """subprocess_env without the SLURM / CUDA variables that would steer the scripts when the tests run in a job."""
    env = {k: v for k, v in subprocess_env().items() if not k.startswith("SLURM_") and k != "CUDA_VISIBLE_DEVICES"}
    return {**env, "REPO_DIR": str(REPO)}


def dry_run(script, **env) -> list[str]:
    """The command line a launch script would run (torchrun replaced by echo)."""
    full = {**script_env(), "TORCHRUN": "echo", **env}
    done = subprocess.run(["bash", str(script), "--extra_flag", "x"], env=full, capture_output=True, text=True,
                          timeout=30, cwd="/")
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def flag(argv: list[str], name: str) -> str:
    """The value of the last occurrence of --name (argparse keeps the last)."""
    return argv[len(argv) - 1 - argv[::-1].index(f"--{name}") + 1]


@pytest.mark.parametrize("kind", sorted(SCRIPTS))
def test_launch_scripts_carry_the_released_recipe(kind):
    text = SCRIPTS[kind].read_text()
    assert "#SBATCH --nodes=1" in text and "#SBATCH --gres=gpu:4" in text
    gpu = dry_run(SCRIPTS[kind], NUM_GPUS="4")
    assert "--nproc_per_node=4" in gpu and gpu[gpu.index("-m") + 1] == "llava.train.train"
    expected = {"learning_rate": "2e-5", "lr_scheduler_type": "cosine", "warmup_steps": "0.03",
                "weight_decay": "0.", "num_train_epochs": "1", "bf16": "True", "tf32": "True",
                "activation_checkpointing": "True", "model_max_length": "2048", "num_frames": "16",
                "group_by_modality_length": "True", "deepspeed": "scripts/zero1.json",
                "model_name_or_path": "checkpoints/llava-v1.5-7b",
                "video_tower": "checkpoints/LanguageBind_Video_merge", "image_tower": "checkpoints/LanguageBind_Image",
                "per_device_train_batch_size": "4" if kind == "loss" else "8"}
    assert {k: flag(gpu, k) for k in expected} == expected
    assert ("--loss_per_iteration" in gpu) == (kind == "loss")
    assert gpu[-2:] == ["--extra_flag", "x"]  # extra arguments come last, so they override
    cpu = dry_run(SCRIPTS[kind], NUM_GPUS="0", DEEPSPEED_CONFIG="", IMAGE_TOWER="")
    assert "--nproc_per_node=1" in cpu and flag(cpu, "use_cpu") == "True"
    assert not {"--bf16", "--tf32", "--deepspeed", "--image_tower"} & set(cpu)


@pytest.mark.slow
def test_launch_script_trains_on_cpu(tmp_path, trained_run, data_dir):
    """finetune_video_image.slurm run with `bash` as a user would, on the tiny model and data, without a GPU:
    one CPU process, with the default ZeRO-1 config (the _loss script only adds arguments, checked above)."""
    env = {**script_env(), "NUM_GPUS": "0", "MODEL_PATH": str(trained_run), "VIDEO_TOWER": "", "IMAGE_TOWER": "",
           "DATA_PATH": str(data_dir / "train.json"), "X_FOLDER": str(data_dir), "OUTPUT_DIR": str(tmp_path / "out"),
           "NUM_FRAMES": "4", "NUM_WORKERS": "0", "MASTER_PORT": str(free_port())}
    done = subprocess.run(["bash", str(SCRIPTS["plain"]), "--max_steps", "2", "--per_device_train_batch_size", "2",
                           "--save_strategy", "no", "--disable_tqdm", "True"],
                          env=env, capture_output=True, text=True, timeout=500, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "out" / "trainer_state.json").read_text())["global_step"] == 2
    load_pretrained_model(tmp_path / "out", device="cpu")

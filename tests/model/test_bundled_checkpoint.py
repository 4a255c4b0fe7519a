"""The bundled demo model is found from a checkout and from a non-editable install; missing, it is named where it
belongs."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llava.model.checkpoint import DEMO_CHECKPOINT_NAME, INSTALLED_CHECKPOINTS, bundled_checkpoint, bundled_checkpoint_places
from llava.serve import chat_session

REPO = Path(__file__).resolve().parents[2]


def test_the_checkout_finds_its_own_demo_model():
    assert bundled_checkpoint() == REPO / "checkpoints" / DEMO_CHECKPOINT_NAME
    assert chat_session.DEMO_CHECKPOINT == bundled_checkpoint()
    assert (chat_session.DEMO_CHECKPOINT / "config.json").is_file()


def test_installed_places_are_tried_after_the_checkout():
    places = bundled_checkpoint_places()
    assert places[0] == REPO / "checkpoints" / DEMO_CHECKPOINT_NAME
    assert Path(sys.prefix) / INSTALLED_CHECKPOINTS / DEMO_CHECKPOINT_NAME in places
    assert REPO / INSTALLED_CHECKPOINTS / DEMO_CHECKPOINT_NAME in places  # next to the package: pip --target


def test_a_missing_checkpoint_is_named_where_it_belongs():
    assert bundled_checkpoint("no-such-model") == REPO / "checkpoints" / "no-such-model"


FIND_DEMO = """
import json, sys
import llava
from llava.model.checkpoint import bundled_checkpoint
from llava.serve.chat_session import DEMO_CHECKPOINT
print(json.dumps({"llava": llava.__file__, "found": str(bundled_checkpoint()), "engine": str(DEMO_CHECKPOINT)}))
"""


@pytest.mark.slow
def test_a_non_editable_install_finds_the_demo_model(tmp_path):
    """`pip install . --target DIR` (no dependencies, the build backend of this environment), then import the
    installed copy from elsewhere: the demo model comes with it."""
    source, target = tmp_path / "src", tmp_path / "target"
    source.mkdir()
    for item in REPO.iterdir():
        if item.is_file():
            shutil.copy2(item, source / item.name)
    shutil.copytree(REPO / "llava", source / "llava", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "checkpoints" / DEMO_CHECKPOINT_NAME, source / "checkpoints" / DEMO_CHECKPOINT_NAME)
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
               "--target", str(target), str(source)]
    subprocess.run(install, check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", FIND_DEMO], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout.strip().splitlines()[-1])
    installed = target / INSTALLED_CHECKPOINTS / DEMO_CHECKPOINT_NAME
    assert Path(found["llava"]).is_relative_to(target)
    assert Path(found["found"]) == Path(found["engine"]) == installed
    names = {p.name for p in installed.iterdir()}
    assert names == {p.name for p in (REPO / "checkpoints" / DEMO_CHECKPOINT_NAME).iterdir()}
    assert not (target / "checkpoints").exists()

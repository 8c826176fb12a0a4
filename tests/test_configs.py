"""The configs shipped in the package: they load and pass their stage's checks, and `videoldm train` finds
them by name (a path that exists wins; an unknown name lists the shipped ones)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.main import get_command
from typer.testing import CliRunner

from videoldm.cli import app
from videoldm.configs import CONFIGS_DIR, resolve_config, shipped_config, shipped_configs
from videoldm.training.config import read_config
from videoldm.training.stages import STAGES, load_config

SHIPPED = [
    "tiny-shapes/autoencoder",
    "tiny-shapes/autoencoder-textured",
    "tiny-shapes/decoder",
    "tiny-shapes/decoder-textured",
    "tiny-shapes/image",
    "tiny-shapes/interpolation",
    "tiny-shapes/interpolation-blend",
    "tiny-shapes/interpolation-continue",
    "tiny-shapes/interpolation-polish",
    "tiny-shapes/keyframes",
    "tiny-shapes/prediction",
    "tiny-shapes/prediction-inview",
    "tiny-shapes/temporal",
    "tiny-shapes/temporal-continue",
    "tiny-shapes/upsampler",
    "tiny-shapes/upsampler-image",
    "tiny-shapes/upsampler-plain",
    "tiny-shapes/upsampler-plain-image",
]


def test_shipped_configs_are_named_by_their_path_below_the_package_folder():
    assert shipped_configs() == SHIPPED
    assert shipped_config("tiny-shapes/temporal") == CONFIGS_DIR / "tiny-shapes" / "temporal.yaml"
    assert shipped_config("tiny-shapes/temporal.yaml") == shipped_config("tiny-shapes/temporal")
    assert all(shipped_config(name).is_file() for name in SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_config_loads_and_passes_its_stage_checks(name, tmp_path, monkeypatch):
    # The configs' relative paths (data/, runs/) resolve against the working directory: give them one where
    # the inputs they name exist, as they do after the previous stages of scripts/train_tiny_shapes.sh.
    monkeypatch.chdir(tmp_path)
    raw = yaml.safe_load(shipped_config(name).read_text())
    (tmp_path / raw["data"]["videos"]).mkdir(parents=True)
    (tmp_path / raw["data"]["videos"] / "captions.csv").write_text("path,caption\n")
    if "pretrained" in raw.get("model", {}):
        (tmp_path / raw["model"]["pretrained"]).mkdir(parents=True)
        if raw["stage"] == "upsampler":  # what the image upsampler's run exports
            from upsampler_fixtures import save_tiny_model

            folder = save_tiny_model(tmp_path / raw["model"]["pretrained"], temporal=False)
            scheduler = folder / "upsampler" / "scheduler" / "scheduler_config.json"  # predicting what the run says
            saved = json.loads(scheduler.read_text())
            saved["prediction_type"] = raw["model"].get("prediction_type", "epsilon")
            scheduler.write_text(json.dumps(saved))
    config = load_config(shipped_config(name))
    assert config.stage in STAGES
    assert config.output_dir == tmp_path / raw["output_dir"]


def test_an_existing_path_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_config("tiny-shapes/temporal") == shipped_config("tiny-shapes/temporal")
    local = tmp_path / "tiny-shapes" / "temporal.yaml"
    local.parent.mkdir()
    local.write_text("stage: temporal\n")
    assert resolve_config("tiny-shapes/temporal.yaml") == Path("tiny-shapes/temporal.yaml")
    assert resolve_config(local) == local


def test_an_unknown_name_lists_the_shipped_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no shipped config of that name; shipped: tiny-shapes/autoencoder"):
        resolve_config("tiny-shapes/video")
    with pytest.raises(FileNotFoundError, match=r"no shipped config named '\.\./pyproject'"):
        shipped_config("../pyproject")


def test_train_cli_says_which_file_it_read_and_rejects_unknown_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/shapes here: the config is found, then fails its path check
    runner = CliRunner()
    found = runner.invoke(app, ["train", "tiny-shapes/autoencoder"])
    assert found.exit_code == 2
    assert f"config: {shipped_config('tiny-shapes/autoencoder')}" in found.output
    assert "data.videos: folder" in found.output
    unknown = runner.invoke(app, ["train", "tiny-shapes/nope"])
    assert unknown.exit_code == 2
    assert "shipped: " + ", ".join(SHIPPED) in unknown.output


def test_train_cli_help_lists_the_registered_stages():
    help_text = get_command(app).commands["train"].help
    assert ", ".join(STAGES) in help_text


def test_train_cli_help_names_every_shipped_config_and_no_missing_folder():
    (argument,) = [p for p in get_command(app).commands["train"].params if p.name == "config"]
    for name in SHIPPED:
        assert name in argument.help, name
    assert "src/videoldm/configs/" not in argument.help  # a checkout's folder: not there after pip install
    result = CliRunner().invoke(app, ["train", "--help"], terminal_width=400)
    assert result.exit_code == 0
    assert "tiny-shapes/temporal-continue" in result.output


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "docs" / "runs").glob("*.yaml")), ids=str)
def test_the_configs_of_documented_runs_still_read(path):
    """docs/runs/ holds the exact configs of runs that docs/ reports; they must stay readable by today's schema
    (their data and model paths are the machine's of that session, so the stage's path checks are not run)."""
    config = read_config(path, check=False)
    assert config.stage in STAGES

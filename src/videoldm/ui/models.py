"""The models `videoldm serve` offers: the base folder and the personalised models found next to it.

A personalised model is a complete Video LDM folder (a DreamBooth-fine-tuned image UNet with the base's temporal
layers, PAPER.md section 7) holding `personalisation.json` ({"instance_prompt": "a sks star", ...}, written by
the `dreambooth` training stage). "Next to the base" means:

- a sibling folder of the base folder (same parent directory), or the `model/` folder inside one (a training
  run's output: `OUTPUT_DIR/model/`);
- when the base itself is a run's `model/` folder (`runs/temporal/model`), also the `model/` folder of each
  sibling run (`runs/dreambooth-star/model`).

Folders without `personalisation.json`, with an unreadable one, or missing a Video LDM part are not offered.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from videoldm.layout import PERSONALISATION, VIDEO_LDM_PARTS
from videoldm.loading import ModelGeometry, check_model_dir
from videoldm.pipelines.generate import has_interpolation, has_upsampler

RUN_MODEL = "model"  # the folder a training run writes its model to: OUTPUT_DIR/model/

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelChoice:
    """One model of the page's dropdown: its folder, what the stack can do with it and its default size.

    `instance_prompt` is the personalised concept's prompt (None for the base model): the words to use in a
    prompt to get the concept.
    """

    folder: Path
    name: str
    interpolation: bool
    upsampler: bool
    geometry: ModelGeometry
    instance_prompt: str | None = None

    @property
    def label(self) -> str:
        """The dropdown's text: the name, and for a personalised model the words that call its concept."""
        if self.instance_prompt is None:
            return f"{self.name} (base model)"
        return f'{self.name} (personalised: use "{self.instance_prompt}")'

    @property
    def key(self) -> str:
        """The dropdown's value: the folder's path."""
        return str(self.folder)


def display_name(folder: Path) -> str:
    """A run's name for its `model/` folder (`runs/dreambooth-star/model` -> dreambooth-star), else the folder's."""
    return folder.parent.name if folder.name == RUN_MODEL and folder.parent.name else folder.name


def read_instance_prompt(folder: Path) -> str | None:
    """The "instance_prompt" of `folder/personalisation.json`; None when the file is absent, not JSON, or lacks a
    non-empty string "instance_prompt" (logged: a half-written file is not offered)."""
    path = folder / PERSONALISATION
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        log.warning("%s is not readable JSON (%s): model not offered", path, err)
        return None
    prompt = data.get("instance_prompt") if isinstance(data, dict) else None
    if not isinstance(prompt, str) or not prompt.strip():
        log.warning('%s has no "instance_prompt": model not offered', path)
        return None
    return prompt.strip()


def describe(folder: Path, *, instance_prompt: str | None = None) -> ModelChoice:
    """A `ModelChoice` for a Video LDM folder (sizes from its JSON configs: nothing loaded). Raises
    FileNotFoundError for a missing part, OSError / ValueError / KeyError for unreadable configs."""
    check_model_dir(folder, VIDEO_LDM_PARTS)
    return ModelChoice(
        folder=folder,
        name=display_name(folder),
        interpolation=has_interpolation(folder),
        upsampler=has_upsampler(folder),
        geometry=ModelGeometry.read(folder),
        instance_prompt=instance_prompt,
    )


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError:
        return []


def _candidates(base: Path) -> list[Path]:
    """Folders that may hold a personalised model next to `base` (see the module's docstring)."""
    siblings = [p for p in _subfolders(base.parent) if p != base]
    found = [folder for sibling in siblings for folder in (sibling, sibling / RUN_MODEL)]
    if base.name == RUN_MODEL:  # base is a run's output: look at the other runs' outputs too
        run = base.parent
        found += [other / RUN_MODEL for other in _subfolders(run.parent) if other != run]
    return found


def find_models(base: Path) -> list[ModelChoice]:
    """The base model first, then the personalised models next to it (sorted by folder, each once)."""
    base = base.resolve()
    models = [describe(base)]
    seen = {base}
    for folder in _candidates(base):
        folder = folder.resolve()
        if folder in seen or not folder.is_dir():
            continue
        instance_prompt = read_instance_prompt(folder)
        if instance_prompt is None:
            continue
        seen.add(folder)
        try:
            models.append(describe(folder, instance_prompt=instance_prompt))
        except (OSError, ValueError, KeyError) as err:
            log.warning("%s has %s but is not a Video LDM folder (%s): not offered", folder, PERSONALISATION, err)
    return models

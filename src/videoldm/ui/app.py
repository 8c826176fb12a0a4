"""The gradio page of `videoldm serve`: a prompt in, a video out (README "Web page").

Inputs: the model (the base folder and the personalised models next to it, `ui.models`), prompt, negative
prompt, seed, frames, steps, guidance, and the stack's options shown only when the chosen model has them
(Interpolate: key frames -> x4 -> x4, else key frames only; Upscale with its `upsampler/`); the size under
"Size". Output: the mp4 (with a download button) and a line saying what made it. The progress bar follows each
stage's tqdm bar (`gr.Progress(track_tqdm=True)`). One job runs at a time (the queue's concurrency is 1); bad
input comes back as a message (`gr.Error`) and the server keeps serving. The API endpoint is `/generate`, the
prompt its first input.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

# gradio's usage statistics and version check call out to the network: off unless the user turned them on
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr

from videoldm.defaults import DEFAULT_STEPS
from videoldm.ui.jobs import MAX_GUIDANCE, Form, Limits, VideoJobs, check_form
from videoldm.ui.models import ModelChoice, find_models

MAX_QUEUE = 16  # requests waiting behind the running one; more are turned away with a message
CSS = "#video video { image-rendering: pixelated; }"  # small videos drawn large: sharp pixels, not a blur
log = logging.getLogger(__name__)


def _hint(model: ModelChoice) -> str:
    """The line under the model dropdown: for a personalised model, the words that call its concept."""
    if model.instance_prompt is None:
        return ""
    return f'Personalised model: write **"{model.instance_prompt}"** in the prompt to get its concept.'


def _options(model: ModelChoice, limits: Limits) -> list[Any]:
    """Updates of the model-dependent inputs: hint, Interpolate, Upscale, Frames, Height, Width."""
    size = model.geometry.default_size
    return [
        gr.update(value=_hint(model), visible=model.instance_prompt is not None),
        gr.update(visible=model.interpolation, value=model.interpolation),
        gr.update(visible=model.upsampler, value=False),
        gr.update(value=limits.default_frames(stack=model.interpolation)),
        gr.update(value=size),
        gr.update(value=size),
    ]


def build_page(base: Path, limits: Limits, jobs: VideoJobs) -> gr.Blocks:
    """The page for the models found at `base` (rescanned at each page load and each request)."""
    first = find_models(base)[0]

    def model_for(key: str | None) -> ModelChoice:
        models = find_models(base)
        for model in models:
            if model.key == key:
                return model
        if key is None:
            return models[0]
        raise ValueError(f"unknown model {key!r}: reload the page to see the models this server offers")

    def generate(
        prompt: str,
        negative_prompt: str,
        seed: float | None,
        frames: float | None,
        steps: float | None,
        guidance: float | None,
        model_key: str | None,
        interpolate: bool,
        upscale: bool,
        height: float | None,
        width: float | None,
        progress: gr.Progress = gr.Progress(track_tqdm=True),
    ) -> tuple[str, str]:
        """Check the inputs (a message on the page when wrong), then sample the video; its path and a summary."""
        try:
            model = model_for(model_key)
            form = Form(prompt, negative_prompt, seed, frames, steps, guidance, interpolate, upscale, height, width)
            request = check_form(form, model, limits)
        except ValueError as err:
            raise gr.Error(str(err), print_exception=False) from None
        progress(0, desc="loading the model")
        try:
            result = jobs.run(model, request, upscale=upscale)
        except Exception as err:  # any failure is a message on the page; the server keeps serving
            log.exception("generation failed")
            raise gr.Error(f"Generation failed: {err}") from err
        return str(result.path), result.summary()

    with gr.Blocks(title="Video LDM", analytics_enabled=False, delete_cache=(3600, 3600)) as page:
        gr.Markdown(
            "# Video LDM\nText to video: key frames from the prompt, interpolated x4 -> x4 when the model has an "
            f"interpolation model, decoded once. One video at a time; at most {limits.max_frames} frames, "
            f"{limits.max_size} px and {limits.max_steps} steps."
        )
        with gr.Row():
            with gr.Column():
                model = gr.Dropdown(
                    choices=[(m.label, m.key) for m in find_models(base)],
                    value=first.key,
                    label="Model",
                    elem_id="model",
                )
                hint = gr.Markdown(_hint(first), visible=first.instance_prompt is not None)
                prompt = gr.Textbox(label="Prompt", placeholder="a red circle moving right", elem_id="prompt")
                negative = gr.Textbox(label="Negative prompt", elem_id="negative-prompt")
                with gr.Row():
                    seed = gr.Number(label="Seed (-1: random)", value=-1, precision=0, elem_id="seed")
                    guidance = gr.Slider(0, MAX_GUIDANCE, value=7.5, step=0.5, label="Guidance", elem_id="guidance")
                frames = gr.Slider(
                    1,
                    limits.max_frames,
                    value=limits.default_frames(stack=first.interpolation),
                    step=1,
                    label="Frames",
                    elem_id="frames",
                )
                steps = gr.Slider(
                    1,
                    limits.max_steps,
                    value=min(DEFAULT_STEPS, limits.max_steps),
                    step=1,
                    label="Steps",
                    elem_id="steps",
                )
                interpolate = gr.Checkbox(
                    value=first.interpolation,
                    visible=first.interpolation,
                    label="Interpolate: key frames -> x4 -> x4 at 30 fps (off: the key frames alone, 8 fps)",
                    elem_id="interpolate",
                )
                upscale = gr.Checkbox(
                    value=False, visible=first.upsampler, label="Upscale with the video upsampler", elem_id="upscale"
                )
                with gr.Accordion("Size", open=False), gr.Row():
                    height = gr.Number(label="Height (px)", value=first.geometry.default_size, precision=0)
                    width = gr.Number(label="Width (px)", value=first.geometry.default_size, precision=0)
                button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column():
                video = gr.Video(
                    label="Video",
                    format="mp4",
                    interactive=False,
                    autoplay=True,
                    loop=True,
                    buttons=["download"],
                    elem_id="video",
                )
                info = gr.Markdown(elem_id="info")

        options = [hint, interpolate, upscale, frames, height, width]
        model.change(lambda key: _options(model_for(key), limits), model, options, api_visibility="private")
        interpolate.input(
            lambda on: gr.update(value=limits.default_frames(stack=on)), interpolate, frames, api_visibility="private"
        )
        page.load(
            lambda: gr.update(choices=[(m.label, m.key) for m in find_models(base)]),
            outputs=model,
            api_visibility="private",
        )
        gr.on(
            [button.click, prompt.submit],
            generate,
            inputs=[prompt, negative, seed, frames, steps, guidance, model, interpolate, upscale, height, width],
            outputs=[video, info],
            api_name="generate",
            concurrency_limit=1,
        )
    return page


def launch(
    base: Path,
    limits: Limits,
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    prevent_thread_lock: bool = False,
    quiet: bool = False,
) -> gr.Blocks:
    """Build the page and serve it on `host`:`port` with a queue of concurrency 1. Blocks until Ctrl-C unless
    `prevent_thread_lock` (then `page.close()` stops it). Raises OSError when the port is taken."""
    output_dir = Path(tempfile.mkdtemp(prefix="videoldm-serve-"))
    atexit.register(shutil.rmtree, output_dir, ignore_errors=True)
    page = build_page(base, limits, VideoJobs(output_dir / "video"))
    page.queue(default_concurrency_limit=1, max_size=MAX_QUEUE)
    page.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=prevent_thread_lock,
        quiet=quiet,
        show_error=True,
        allowed_paths=[str(output_dir)],
        ssr_mode=False,
        mcp_server=False,
        css=CSS,
    )
    return page

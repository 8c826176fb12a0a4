"""`videoldm serve`: the page's model list and input checks (pure functions), the CLI's wiring, the `/generate`
API (bad requests, then a good one: the server keeps serving; the video is `videoldm generate`'s), and a person
at the page in headless Chromium (Debian's, driven by Playwright): types a prompt, clicks Generate, sees the
progress of each stage and gets a playable video with a download link."""

from __future__ import annotations

import json
import re
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from interpolation_fixtures import save_tiny_interpolation_model
from test_pipeline_fixtures import write_tiny_video_ldm
from upsampler_fixtures import save_tiny_model
from videoldm.cli import app
from videoldm.io import read_video
from videoldm.layout import PERSONALISATION
from videoldm.ui import CHROMIUM_ARGS
from videoldm.ui.jobs import Form, Limits, VideoJobs, check_form
from videoldm.ui.models import find_models

CHROMIUM = Path("/usr/bin/chromium")
PROMPT = "a red circle moving right"
LIMITS = Limits(max_frames=24, max_size=32, max_steps=4)


def _personalise(folder: Path, instance_prompt: str = "a sks star") -> Path:
    personalisation = {"instance_prompt": instance_prompt, "class_prompt": "a star"}
    (folder / PERSONALISATION).write_text(json.dumps(personalisation))
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """base: the stack (interpolation/) with an upsampler; star: a personalised plain Video LDM next to it."""
    root = tmp_path_factory.mktemp("models")
    base = save_tiny_interpolation_model(root / "base")
    save_tiny_model(base)  # upsampler/
    star = _personalise(write_tiny_video_ldm(root / "star"))
    return {"base": base, "star": star}


@pytest.fixture(scope="module")
def one_thread_module() -> Iterator[None]:
    """One torch thread and denormals flushed (what the CLI sets): a busy 2-core machine runs the tiny models up to
    20x slower on two threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------- the model list
def test_find_models_offers_the_base_then_personalised_models_next_to_it(models: dict[str, Path], tmp_path) -> None:
    root = tmp_path / "runs"
    shutil.copytree(models["star"], root / "plain")  # a Video LDM folder with personalisation.json
    (root / "plain" / PERSONALISATION).unlink()  # ... removed: not offered
    shutil.copytree(models["star"], root / "base")
    (root / "base" / PERSONALISATION).unlink()
    shutil.copytree(models["star"], root / "dreambooth-dog" / "model")  # a run's output folder
    _personalise(root / "dreambooth-dog" / "model", "a sks dog")
    (root / "broken" / "unet").mkdir(parents=True)
    _personalise(root / "broken")  # personalisation.json but not a Video LDM folder
    shutil.copytree(models["star"], root / "half-written")
    (root / "half-written" / PERSONALISATION).write_text('{"instance_prompt": ')  # not JSON
    shutil.copytree(models["star"], root / "zebra")

    found = find_models(root / "base")
    assert [m.name for m in found] == ["base", "dreambooth-dog", "zebra"]
    assert [m.instance_prompt for m in found] == [None, "a sks dog", "a sks star"]
    assert found[0].label == "base (base model)"
    assert found[1].label == 'dreambooth-dog (personalised: use "a sks dog")'
    assert found[1].folder == (root / "dreambooth-dog" / "model").resolve()
    assert not found[2].interpolation and not found[2].upsampler and found[2].geometry.default_size == 16

    # the base is itself a run's model/ folder: the other runs' model/ folders are next to it
    shutil.copytree(models["star"], tmp_path / "runs2" / "temporal" / "model")
    (tmp_path / "runs2" / "temporal" / "model" / PERSONALISATION).unlink()
    shutil.copytree(root / "dreambooth-dog", tmp_path / "runs2" / "dreambooth-dog")
    found = find_models(tmp_path / "runs2" / "temporal" / "model")
    assert [(m.name, m.instance_prompt) for m in found] == [("temporal", None), ("dreambooth-dog", "a sks dog")]


def test_the_base_model_has_the_stack_options(models: dict[str, Path]) -> None:
    base, star = find_models(models["base"])
    assert base.interpolation and base.upsampler and star.instance_prompt == "a sks star"


# ------------------------------------------------------------------------------------------------ input checks
BAD_FORMS = [
    ({"prompt": "  "}, "Type a prompt"),
    ({"frames": 25}, "Frames must be in [2, 24] with interpolation"),
    ({"frames": 1}, "Frames must be in [2, 24] with interpolation"),
    ({"frames": 25, "interpolate": False}, "Frames must be in [1, 24]"),
    ({"frames": 2.5}, "Frames must be a whole number"),
    ({"steps": 0}, "Steps must be in [1, 4]"),
    ({"steps": 5}, "Steps must be in [1, 4]"),
    ({"steps": None}, "Steps must be a whole number"),
    ({"guidance": -1}, "Guidance must be in [0, 20]"),
    ({"height": 36}, "Height must be in [1, 32]"),
    ({"width": 18}, "Width must be a positive multiple of 4"),
]


@pytest.mark.parametrize(("change", "message"), BAD_FORMS)
def test_bad_input_is_a_message(models: dict[str, Path], change: dict, message: str) -> None:
    form = Form(**{"prompt": PROMPT, "frames": 20, "steps": 2, "interpolate": True, **change})
    with pytest.raises(ValueError, match="^" + message.replace("[", r"\[").replace("]", r"\]")):
        check_form(form, find_models(models["base"])[0], LIMITS)


def test_options_the_model_lacks_are_refused(models: dict[str, Path]) -> None:
    star = find_models(models["base"])[1]
    with pytest.raises(ValueError, match="has no interpolation model"):
        check_form(Form(PROMPT, interpolate=True), star, LIMITS)
    with pytest.raises(ValueError, match="has no video upsampler"):
        check_form(Form(PROMPT, upscale=True), star, LIMITS)


def test_a_good_form_is_the_request_videoldm_generate_makes(models: dict[str, Path]) -> None:
    base = find_models(models["base"])[0]
    request = check_form(Form(f" {PROMPT} ", " blue ", seed=3, frames=20, steps=2, interpolate=True), base, LIMITS)
    assert (request.prompt, request.negative_prompt, request.seed, request.num_frames) == (PROMPT, "blue", 3, 20)
    assert (request.height, request.width, request.steps, request.keyframes_only) == (16, 16, 2, False)
    assert check_form(Form(PROMPT, seed=-1, frames=3, steps=2), base, LIMITS).seed >= 0  # a random seed
    assert Limits().default_frames(stack=True) == 113 and Limits().default_frames(stack=False) == 16


def test_jobs_give_videoldm_generates_video(models: dict[str, Path], tmp_path, one_thread_module) -> None:
    """The page's job and `videoldm generate` share one code path: same request, byte-identical mp4."""
    base = find_models(models["base"])[0]
    request = check_form(Form(PROMPT, seed=3, frames=3, steps=2), base, LIMITS)  # key frames only
    result = VideoJobs(tmp_path / "jobs").run(base, request)
    args = [PROMPT, "--model", str(models["base"]), "--keyframes-only", "--num-frames", "3", "--steps", "2"]
    cli = CliRunner().invoke(app, ["generate", *args, "--seed", "3", "-o", str(tmp_path / "cli.mp4")])
    assert cli.exit_code == 0, cli.output
    assert result.path.read_bytes() == (tmp_path / "cli.mp4").read_bytes()
    assert "seed 3 · 3 frames at 8 fps · 16 x 16 px" in result.summary()


# ------------------------------------------------------------------------------------------------------ the CLI
def test_serve_checks_its_arguments_then_launches(models: dict[str, Path], monkeypatch) -> None:
    pytest.importorskip("gradio")
    import videoldm.ui.app

    calls = []
    monkeypatch.setattr(videoldm.ui.app, "launch", lambda *args, **kwargs: calls.append((args, kwargs)))
    result = CliRunner().invoke(app, ["serve", "--model", str(models["base"]), "--port", "7999", "--max-frames", "9"])
    assert result.exit_code == 0, result.output
    (folder, limits), kwargs = calls[0]
    assert folder == models["base"] and limits == Limits(max_frames=9) and kwargs == {"host": "127.0.0.1", "port": 7999}
    for args, message in [
        (["--max-frames", "0"], "--max-frames must be >= 1"),
        (["--port", "0"], "--port must be in [1, 65535]"),
        (["--max-size", "8"], "--max-size 8 is below the model's own size (16 px)"),
        (["--model", str(models["base"] / "unet")], "has no unet/ subfolder"),
    ]:
        result = CliRunner().invoke(app, ["serve", "--model", str(models["base"]), *args])
        assert result.exit_code == 2 and result.stderr.strip().startswith("error: "), result.output
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert len(calls) == 1


def test_serve_without_gradio_says_how_to_install_it(models: dict[str, Path], monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ImportError
    result = CliRunner().invoke(app, ["serve", "--model", str(models["base"])])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: the web page needs gradio: pip install 'videoldm[ui]'"


# ------------------------------------------------------------------------------------------------- the server
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(models: dict[str, Path], one_thread_module, tmp_path_factory) -> Iterator[str]:
    """The page on the tiny stack model, served in this process (the function `videoldm serve` calls)."""
    pytest.importorskip("gradio")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))  # gradio's copies of the videos
        from videoldm.ui.app import launch

        port = _free_port()
        page = launch(models["base"], LIMITS, port=port, prevent_thread_lock=True, quiet=True)
        yield f"http://127.0.0.1:{port}/"
        page.close()


def test_api_generate_survives_bad_requests_then_makes_the_video(server: str, models: dict[str, Path]) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(server, verbose=False)
    endpoint = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/generate"]
    assert endpoint["parameters"][0]["parameter_name"] == "prompt"
    base = str(find_models(models["base"])[0].folder)

    def generate(prompt: str, *, frames: int = 3, steps: int = 2, seed: int = 3, upscale: bool = False):
        args = (prompt, "", seed, frames, steps, 7.5, base, False, upscale, 16, 16)
        return client.predict(*args, api_name="/generate")

    with pytest.raises(AppError, match="Type a prompt"):
        generate("")
    with pytest.raises(AppError, match="greater than maximum value 24"):  # the frames slider's limit
        generate(PROMPT, frames=200)
    with pytest.raises(AppError, match=r"Steps must be in \[1, 4\]|greater than maximum value 4"):
        generate(PROMPT, steps=9)
    video, summary = generate(PROMPT)  # the server kept serving
    frames, fps = read_video(video["video"] if isinstance(video, dict) else video)
    assert frames.shape == (3, 3, 16, 16) and fps == pytest.approx(8, rel=0.05)
    assert summary.startswith("seed 3 · 3 frames at 8 fps")
    video, summary = generate(PROMPT, upscale=True)  # the folder's upsampler: x2
    assert read_video(video["video"] if isinstance(video, dict) else video)[0].shape == (3, 3, 32, 32)
    assert "32 x 32 px" in summary


OBSERVE_TEXT = """() => {
    window.seenTexts = [];
    new MutationObserver((mutations) => {
        for (const m of mutations) window.seenTexts.push((m.target.textContent || "").slice(0, 300));
    }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""
VIDEO_STATE = """() => {
    const v = document.querySelector("#video video");
    return {src: v.currentSrc || v.src, readyState: v.readyState, duration: v.duration, width: v.videoWidth};
}"""


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Debian chromium at {CHROMIUM} (make setup installs it)")
def test_a_person_makes_a_video_in_the_browser(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(server)
            expect(page.locator("#interpolate")).to_be_visible(timeout=30_000)  # the stack's options: this model has
            expect(page.locator("#upscale")).to_be_visible()  # interpolation/ and upsampler/

            page.click("#generate")  # no prompt yet: a message, not a crash
            expect(page.get_by_text("Type a prompt").first).to_be_visible(timeout=30_000)

            page.evaluate(OBSERVE_TEXT)
            page.fill("#prompt textarea", PROMPT)
            page.click("#generate")  # the stack at the server's limits: 24 frames (3 key frames), 4 steps
            expect(page.locator("#video video")).to_have_attribute("src", re.compile(r"\.mp4$"), timeout=60_000)
            page.wait_for_function("document.querySelector('#video video').readyState >= 2", timeout=30_000)
            state = page.evaluate(VIDEO_STATE)
            assert state["duration"] == pytest.approx(24 / 30, abs=0.05) and state["width"] == 16
            seen = "\n".join(page.evaluate("() => window.seenTexts"))
            # the stages that sample; the dense pass (2/2, the latent blend by default) is one instant tick
            for stage in ("key frames", "interpolating x4 (1/2)"):
                assert stage in seen, f"no progress shown for {stage!r}"
            expect(page.locator("#info")).to_contain_text("24 frames at 30 fps")

            download = page.locator("#video a[download]")  # the download button's link
            assert download.get_attribute("download").endswith(".mp4")
            body = page.request.get(download.get_attribute("href")).body()
            (tmp_path / "page.mp4").write_bytes(body)
            frames, fps = read_video(tmp_path / "page.mp4")
            assert frames.shape == (3, 24, 16, 16) and fps == pytest.approx(30, rel=0.05)
            assert body == page.request.get(state["src"]).body()  # the file the player plays

            page.locator("#model input").click()  # the personalised model, its words, no stack options
            page.get_by_role("option", name='star (personalised: use "a sks star")').click()
            expect(page.get_by_text('write "a sks star" in the prompt')).to_be_visible()
            expect(page.locator("#interpolate")).to_be_hidden()
            expect(page.locator("#upscale")).to_be_hidden()
            expect(page.locator("#frames input[type=number]")).to_have_value("16")
        finally:
            browser.close()

"""Live painting: the plan of a live update, the coalescing queue alone, and the Live switch in
the main window on the scriptable fake engine (strokes, cancel, Generate beside it, Keep)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QImage

from desktop.state.live import (
    LIVE_SAMPLER,
    LIVE_STEPS,
    NATIVE_LIVE_STEPS,
    LiveQueue,
    live_plan,
)
from desktop.testing.fake_engine import Script
from engine.api import GenerationRequest, Mode
from engine.capabilities import native_capabilities, sd_capabilities
from engine.errors import InputError
from engine.metadata.detect import read_image_settings

EMOJI_LDM = {"family": "ldm", "resolution": 64, "sampler": "DDIM", "unet": {"conditioning": "text"}}


# -- the plan (pure) ----------------------------------------------------------------------------
def test_built_in_model_runs_its_own_size_and_sampler_with_fewer_steps():
    caps = native_capabilities("emoji-ldm", EMOJI_LDM)
    plan = live_plan(caps, mode=Mode.TXT2IMG, has_image=True, canvas_size=(64, 64), steps=20,
                     guidance_scale=3.0, sampler="Euler a")  # fmt: skip
    assert (plan.mode, plan.width, plan.height) == (Mode.IMG2IMG, 64, 64)
    assert (plan.steps, plan.sampler, plan.guidance_scale) == (NATIVE_LIVE_STEPS, "DDIM", 3.0)
    assert plan.model_defaults == ()  # native models declare no few-step settings
    assert plan.cpu_threads == 1  # too small a model to split over cores
    few = live_plan(caps, steps=8, sampler="DDPM")
    assert (few.steps, few.sampler, few.mode) == (8, "DDPM", Mode.TXT2IMG)


def test_sd15_runs_few_steps_at_half_size_and_lets_a_few_step_model_decide():
    caps = sd_capabilities("sd15", "sd1")
    plan = live_plan(caps, base="sd1", has_image=True, canvas_size=(768, 512), steps=30)
    assert (plan.width, plan.height) == (256, 168)  # long side 256, aspect kept, multiple of 8
    assert (plan.steps, plan.sampler) == (LIVE_STEPS, LIVE_SAMPLER)
    # an LCM / Turbo / Lightning model or LoRA is recognised by the engine once loaded
    assert set(plan.model_defaults) == {"steps", "guidance_scale", "sampler"}
    assert plan.cpu_threads == 0  # the user's setting
    # the user's own few-step setup stays as it is
    lcm = live_plan(caps, base="sd1", steps=4, sampler="LCM", guidance_scale=1.0)
    assert (lcm.steps, lcm.sampler, lcm.guidance_scale) == (4, "LCM", 1.0)
    # a canvas smaller than the live size is not enlarged; SDXL gets 512
    assert live_plan(caps, base="sd1", has_image=True, canvas_size=(96, 64)).width == 96
    xl = live_plan(sd_capabilities("xl", "sdxl"), base="sdxl", size=(1024, 1024))
    assert (xl.mode, xl.width, xl.height) == (Mode.TXT2IMG, 512, 512)


def test_flux_schnell_runs_as_distilled_and_flux_dev_with_few_steps():
    schnell = live_plan(sd_capabilities("s", "flux", "schnell"), base="flux", variant="schnell",
                        steps=28, guidance_scale=3.5)  # fmt: skip
    assert (schnell.steps, schnell.guidance_scale) == (4, 0.0)
    assert (schnell.width % 16, schnell.height % 16) == (0, 0)
    dev = live_plan(sd_capabilities("d", "flux", "dev"), base="flux", variant="dev", steps=28)
    assert dev.steps == LIVE_STEPS and dev.model_defaults == ()


def test_modes_follow_the_canvas():
    caps = sd_capabilities("sd15", "sd1")
    common = {"base": "sd1", "has_image": True, "canvas_size": (512, 512)}
    assert live_plan(caps, mode=Mode.INPAINT, has_mask=True, **common).mode is Mode.INPAINT
    # inpaint chosen but nothing masked yet: the whole canvas follows the brush
    assert live_plan(caps, mode=Mode.INPAINT, has_mask=False, **common).mode is Mode.IMG2IMG
    assert live_plan(caps, mode=Mode.IMG2IMG).mode is Mode.TXT2IMG  # empty canvas
    cyclegan = native_capabilities("horse2zebra", {"family": "cyclegan"})
    with pytest.raises(InputError, match="drop one on the canvas"):
        live_plan(cyclegan)


# -- the queue alone -------------------------------------------------------------------------
class _Jobs:
    def __init__(self):
        self.submitted: list[int] = []
        self.cancelled: list[int] = []

    def submit(self) -> int:
        self.submitted.append(len(self.submitted) + 1)
        return self.submitted[-1]

    def cancel(self, job_id: int) -> None:
        self.cancelled.append(job_id)


def test_queue_coalesces_changes_and_cancels_the_stale_job(qtbot):
    jobs = _Jobs()
    queue = LiveQueue(jobs.submit, jobs.cancel, delay_ms=40)
    for _ in range(10):
        queue.changed()  # ignored while off
    assert not queue.pending
    queue.set_enabled(True)  # one update at once
    qtbot.waitUntil(lambda: jobs.submitted == [1], timeout=2000)
    for _ in range(10):
        queue.changed()
    assert jobs.cancelled == [1]  # stale at the first change, cancelled once
    qtbot.wait(120)
    assert jobs.submitted == [1] and queue.waiting  # waits for job 1 to wind down
    queue.finished(99)  # another job (a Generate) ending changes nothing
    assert jobs.submitted == [1]
    queue.finished(1)
    assert jobs.submitted == [1, 2] and not queue.waiting
    queue.finished(2)
    assert queue.running is None and queue.count == 2
    queue.changed()
    queue.set_enabled(False)
    qtbot.wait(120)
    assert jobs.submitted == [1, 2]  # switched off before the delay ran out


def test_queue_off_cancels_the_running_job(qtbot):
    jobs = _Jobs()
    queue = LiveQueue(jobs.submit, jobs.cancel, delay_ms=10)
    queue.set_enabled(True)
    qtbot.waitUntil(lambda: jobs.submitted == [1], timeout=2000)
    queue.set_enabled(False)
    assert jobs.cancelled == [1]
    queue.finished(1)
    assert jobs.submitted == [1]


# -- the window on the fake engine -------------------------------------------------------------
def _picture(window, colour=(90, 120, 160), size=(64, 64)):
    image = QImage(*size, QImage.Format.Format_ARGB32)
    image.fill(QColor(*colour))
    window.document.set_image(image, "Open")


def _stroke(document, x: float, layer: str = "sketch"):
    document.begin_stroke(layer)
    document.paint_segment(QPointF(x, 10), QPointF(x + 20, 40), 6, False, QColor(250, 250, 0))
    document.end_stroke("Sketch")


def _live_requests(fake):
    return [r for r in fake.requests if isinstance(r, GenerationRequest) and r.batch_size == 1]


def _live_on(qtbot, window, fake):
    window.live_action.setChecked(True)
    qtbot.waitUntil(lambda: window.live.latest is not None, timeout=5000)
    fake.requests.clear()


def test_ten_quick_strokes_give_at_most_two_generations(qtbot, window, fake):
    fake.default = Script(steps=3, step_seconds=0.02)
    _picture(window)
    window.settings.set("prompt", "a yellow flower")
    _live_on(qtbot, window, fake)
    updates = []
    window.live.updated.connect(lambda job, seconds: updates.append(job))
    for i in range(10):
        _stroke(window.document, 2 + i * 3)
        qtbot.wait(30)  # quicker than the 150 ms pause that starts an update
    qtbot.waitUntil(lambda: bool(updates) and not window.live.queue.pending, timeout=5000)
    qtbot.wait(300)
    assert 1 <= len(fake.requests) <= 2
    request = fake.requests[-1]
    assert request.mode is Mode.IMG2IMG and request.prompt == "a yellow flower"
    assert (request.width, request.height, request.steps) == (64, 64, NATIVE_LIVE_STEPS)
    assert request.runtime.cpu_threads == 1 and request.seed == fake.requests[0].seed
    assert request.runtime.fast_decode  # the tiny preview decoder makes live pictures
    assert window.gallery_panel.list.count() == 0  # live pictures are not kept by themselves
    assert not window.job.busy and not window.progress.isVisible()  # no progress bar either
    assert window.live.pane.isVisible() and window.live.pane.keep.isEnabled()


def test_live_painting_paints_the_sketch_into_its_init_image(qtbot, window, fake):
    from PIL import Image

    _picture(window, colour=(0, 0, 0))
    kept_init = []
    fake.default = Script(steps=1)
    original = fake.submit

    def submit(request):  # the work file is removed when the job ends: read it now
        kept_init.append(Image.open(request.init_image).convert("RGB").getpixel((12, 25)))
        return original(request)

    fake.submit = submit
    _live_on(qtbot, window, fake)
    kept_init.clear()
    _stroke(window.document, 2)
    qtbot.waitUntil(lambda: bool(kept_init), timeout=3000)
    assert kept_init[0][0] > 200 and kept_init[0][2] < 50  # the yellow sketch stroke
    assert not window.document.image.pixelColor(12, 25).red()  # the picture is untouched


def test_a_stale_running_job_is_cancelled_and_the_engine_goes_on(qtbot, window, fake):
    _picture(window)
    _live_on(qtbot, window, fake)
    fake.queue_script(steps=4, pause_at=2)  # the next live job stops half way
    fake.default = Script(steps=2, colour=(20, 200, 60))
    cancelled = []
    window.bridge.live_event.connect(
        lambda job, kind, _: kind == "cancelled" and cancelled.append(job)
    )
    updates = []
    window.live.updated.connect(lambda job, seconds: updates.append(job))
    _stroke(window.document, 5)
    qtbot.waitUntil(fake.paused.is_set, timeout=3000)
    stale = window.live.queue.running
    _stroke(window.document, 20)  # the running job is stale now
    qtbot.waitUntil(lambda: cancelled == [stale], timeout=3000)
    qtbot.waitUntil(lambda: bool(updates) and window.live.queue.running is None, timeout=3000)
    assert stale not in updates and len(updates) == 1
    assert window.live.pane.image.pixelColor(32, 32).green() > 100  # the newer job's picture


def test_a_generate_job_is_never_dropped_by_live_mode(qtbot, window, fake):
    _picture(window)
    _live_on(qtbot, window, fake)
    fake.default = Script(steps=3, step_seconds=0.03)
    window.settings.set("mode", Mode.IMG2IMG.value)
    job = window.generation.generate()
    assert job is not None
    for i in range(5):  # painting on while the Generate job waits or runs
        _stroke(window.document, 2 + i * 5)
        qtbot.wait(40)
    qtbot.waitUntil(lambda: window.gallery_panel.list.count() == 1, timeout=5000)
    qtbot.waitUntil(lambda: not window.live.queue.pending and window.live.queue.running is None,
                    timeout=5000)  # fmt: skip
    assert window.gallery_panel.list.count() == 1  # the Generate result only
    assert window.job.last_outcome == "result"


def test_keep_puts_the_live_picture_on_the_canvas_and_in_the_gallery(qtbot, window, fake):
    fake.default = Script(steps=2, colour=(30, 200, 90))
    _picture(window, size=(96, 64))
    window.settings.set("prompt", "a green hill")
    _stroke(window.document, 4)
    assert window.document.has_sketch()
    _live_on(qtbot, window, fake)
    shown = window.live.latest.image
    steps_before = window.document.undo_stack.count()
    qtbot.mouseClick(window.live.pane.keep, Qt.MouseButton.LeftButton)
    assert window.gallery_panel.list.count() == 1
    entry = window.gallery.entries[0]
    found = read_image_settings(entry.image_path)  # the PNG carries its settings
    assert found.source == "Easel" and found.request.prompt == "a green hill"
    assert found.request.steps == NATIVE_LIVE_STEPS
    assert entry.metadata["mode"] == Mode.IMG2IMG.value
    # the canvas keeps its size (the live picture is scaled to it) and the sketch is baked in
    assert window.document.size() == (96, 64) and not window.document.has_sketch()
    assert window.document.image.pixelColor(48, 32) == shown.pixelColor(32, 32)
    assert window.document.undo_stack.count() == steps_before + 1  # one undo step
    assert not window.live.pane.keep.isEnabled()  # kept once
    assert window.live.keep() == [] and window.gallery_panel.list.count() == 1
    window.document.undo_stack.undo()
    assert window.document.has_sketch()
    fake.requests.clear()
    qtbot.wait(250)
    assert len(fake.requests) == 1  # the undo is an edit like any other: one live update


def test_live_off_stops_scheduling(qtbot, window, fake):
    _picture(window)
    _live_on(qtbot, window, fake)
    window.live_action.setChecked(False)
    assert not window.live.pane.isVisible()
    for i in range(3):
        _stroke(window.document, i * 10)
    window.settings.set("prompt", "anything")
    qtbot.wait(400)
    assert fake.requests == []


def test_prompt_edits_on_an_empty_canvas_make_text_to_image(qtbot, window, fake):
    _live_on(qtbot, window, fake)
    for text in ("a", "a c", "a cat"):
        window.settings.set("prompt", text)
        qtbot.wait(20)
    qtbot.waitUntil(lambda: len(fake.requests) == 1, timeout=3000)
    qtbot.wait(300)
    assert [r.prompt for r in fake.requests] == ["a cat"]
    assert fake.requests[0].mode is Mode.TXT2IMG


def test_bad_settings_give_one_message_and_live_goes_on(qtbot, window, fake):
    window.settings.set("model", "builtin:emoji-ldm")
    window.settings.set("guidance_scale", 80.0)  # out of range: one message, nothing sent
    window.live_action.setChecked(True)
    qtbot.waitUntil(lambda: "Guidance scale must" in window.live.pane.status.text(), timeout=3000)
    assert fake.requests == []
    window.settings.set("guidance_scale", 3.0)
    qtbot.waitUntil(lambda: window.live.latest is not None, timeout=3000)


def test_a_model_without_a_fast_decoder_offers_to_build_one(qtbot, window, fake):
    """The live result says the full VAE decoded it: the pane offers "Build fast preview", which
    submits the model's PreviewDecoderRequest; when it is built the offer goes and a new live
    update runs; a failed build offers it again."""
    from engine.api import PreviewDecoderRequest

    missing = {"preview_decoder": "missing", "notices": ["... `easel models distil-preview` ..."]}
    fake.default = Script(steps=1, extra_info=missing)
    _picture(window)
    pane = window.live.pane
    _live_on(qtbot, window, fake)
    assert not pane.build.isHidden()
    assert "no fast preview decoder" in pane.status.text()
    assert "distil-preview" not in pane.status.text()  # the button, not a command line
    fake.queue_script(steps=3, extra_info={"psnr_db": 24.5})  # the build job
    fake.default = Script(steps=1)  # from now on the model has a decoder
    messages = []
    window.live.message.connect(lambda text, kind: messages.append(text))
    qtbot.mouseClick(pane.build, Qt.MouseButton.LeftButton)
    built = [r for r in fake.requests if isinstance(r, PreviewDecoderRequest)]
    assert len(built) == 1 and built[0].model == window.settings.get("model")
    assert pane.build.isHidden()
    qtbot.waitUntil(lambda: window.live.building is None, timeout=5000)
    assert messages == ["Fast preview decoder built (24.5 dB against the full decode)."]
    qtbot.waitUntil(lambda: len(_live_requests(fake)) == 1, timeout=5000)  # the difference, at once
    qtbot.waitUntil(lambda: "after the change" in pane.status.text(), timeout=5000)
    assert pane.build.isHidden()
    fake.default = Script(steps=1, extra_info=missing)
    _stroke(window.document, 5)
    qtbot.waitUntil(lambda: not pane.build.isHidden(), timeout=5000)
    fake.queue_script(steps=2, outcome="failed", message="Not enough memory to build it.")
    qtbot.mouseClick(pane.build, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.live.building is None, timeout=5000)
    assert "Not enough memory" in pane.status.text() and not pane.build.isHidden()

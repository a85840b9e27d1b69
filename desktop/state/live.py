"""Live painting's two pure parts: what a live update runs (`live_plan`) and when it runs
(`LiveQueue`).

`live_plan` turns what the model can do (engine.capabilities, no torch) and what the user set
into the settings of one live update: the fewest steps that still look right, at a size that
comes back quickly. Few-step models (LCM, Turbo, Lightning, Hyper) are only recognised once the
engine has loaded them (engine/sd/fewstep.py reads their config, tensors and metadata, and the
LoRAs'), so the plan asks the engine to take steps, guidance and sampler from the model
(`extras["model_defaults"]`, engine/sd/model_defaults.py) and gives the values for an ordinary
model as the fallback.

`LiveQueue` coalesces changes: one live job at most in the engine, one more waiting at most,
the newest change wins. It only calls `submit` and `cancel`, so it is tested alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QObject, QTimer, Signal

from engine.api import Mode, round_to_multiple
from engine.capabilities import Capabilities
from engine.errors import InputError

#: steps for a model with no few-step distillation: 6 is where DPM++ 2M Karras stops smearing
#: on SD 1.5 (4 is visibly unfinished); a live picture is a sketch of the result, not the result
LIVE_STEPS = 6
#: a deterministic multistep sampler that converges in few steps (an ancestral one adds noise
#: each step, so the picture would change more than the stroke did)
LIVE_SAMPLER = "DPM++ 2M Karras"
#: Easel's own diffusion models: at most this many DDIM steps (emoji-ldm is trained for 20;
#: 12 DDIM steps look the same at 64 x 64 and keep an update within 0.5 s of the stroke)
NATIVE_LIVE_STEPS = 12
#: torch threads for Easel's own (small) models when the user leaves threads to "all cores": a
#: 64 x 64 emoji-ldm step is too little work to split, and with two threads on a busy 2-core
#: CPU every op waits for the descheduled thread (measured: 4-18 s per live update with 2
#: threads, 0.35-0.5 s with 1, same minutes, load average 6; docs/benchmarks.md)
NATIVE_LIVE_THREADS = 1
#: longest side of a live picture per base (about half the native side: a quarter of the work)
LIVE_SIDE = {"sd1": 256, "sd2": 384, "sdxl": 512, "sd3": 512, "flux": 512}
DEFAULT_LIVE_SIDE = 256
#: a modern family whose own steps are at most this is distilled: run it as it is made
FEW_STEP_LIMIT = 8
MODEL_DEFAULT_FIELDS = ("steps", "guidance_scale", "sampler")


@dataclass(frozen=True)
class LivePlan:
    """The settings of one live update (the rest comes from the user's settings)."""

    mode: Mode
    width: int
    height: int
    steps: int
    guidance_scale: float
    sampler: str
    #: fields the engine takes from the model when it is a few-step one (LCM, Turbo...)
    model_defaults: tuple[str, ...] = ()
    #: what the pane says about the plan ("6 steps at 256 × 256")
    summary: str = ""
    #: torch CPU threads for this update when the user leaves them to the engine (0: theirs)
    cpu_threads: int = 0


def live_plan(
    caps: Capabilities,
    *,
    base: str = "",
    variant: str = "",
    mode: Mode = Mode.IMG2IMG,
    has_image: bool = False,
    has_mask: bool = False,
    canvas_size: tuple[int, int] = (0, 0),
    size: tuple[int, int] = (512, 512),
    steps: int = 20,
    guidance_scale: float = 7.0,
    sampler: str = "Euler a",
) -> LivePlan:
    """The live update for a model (`caps`, its probed `base`/`variant`) and the user's
    settings. Raises InputError when the model cannot follow the canvas at all."""
    live_mode = _live_mode(caps, mode, has_image, has_mask)
    width, height = _live_size(caps, base, canvas_size if has_image else size)
    if caps.family != "sd":
        run_steps = min(steps, NATIVE_LIVE_STEPS) if caps.steps else steps
        run_sampler = sampler if sampler in caps.samplers else caps.default_sampler or sampler
        plan = (run_steps, guidance_scale, run_sampler, ())
    elif _modern(base):
        plan = _modern_plan(base, variant, caps, guidance_scale)
    elif steps <= LIVE_STEPS:
        # the user already runs a few-step setup (an LCM merge without metadata, say): keep it
        plan = (steps, guidance_scale, sampler, MODEL_DEFAULT_FIELDS)
    else:
        run_sampler = LIVE_SAMPLER if LIVE_SAMPLER in caps.samplers else sampler
        plan = (LIVE_STEPS, guidance_scale, run_sampler, MODEL_DEFAULT_FIELDS)
    run_steps, run_guidance, run_sampler, defaults = plan
    summary = f"{run_steps} {run_sampler} steps at {width} × {height}"
    if defaults:
        summary += " (or the model's own few-step settings)"
    threads = NATIVE_LIVE_THREADS if caps.family != "sd" else 0
    return LivePlan(
        live_mode, width, height, run_steps, run_guidance, run_sampler, defaults, summary, threads
    )


def _live_mode(caps: Capabilities, mode: Mode, has_image: bool, has_mask: bool) -> Mode:
    """Inpaint where the user asked for it and painted a mask, txt2img on an empty canvas,
    else image-to-image of the canvas (what makes the picture follow the brush)."""
    if not has_image:
        if not caps.supports(Mode.TXT2IMG):
            raise InputError(
                f"{caps.name} needs a picture to start from: drop one on the canvas for live "
                "painting."
            )
        return Mode.TXT2IMG
    if mode is Mode.INPAINT and has_mask and caps.supports(Mode.INPAINT):
        return Mode.INPAINT
    if caps.supports(Mode.IMG2IMG):
        return Mode.IMG2IMG
    return Mode.TXT2IMG  # a GAN makes pictures from noise: live follows the prompt only


def _live_size(caps: Capabilities, base: str, reference: tuple[int, int]) -> tuple[int, int]:
    if caps.fixed_size:
        return caps.fixed_size, caps.fixed_size
    width, height = (max(8, side) for side in reference)
    longest = LIVE_SIDE.get(base, DEFAULT_LIVE_SIDE)
    scale = min(1.0, longest / max(width, height))
    step = max(8, caps.size_step)
    # the nearest multiple of the model's step: the engine resizes the canvas picture to this
    # size, so the aspect ratio stays within one multiple
    return round_to_multiple(int(width * scale), step), round_to_multiple(int(height * scale), step)


def _modern(base: str) -> bool:
    from engine.sd.modern_families import MODERN_BASES

    return base in MODERN_BASES


def _modern_plan(base: str, variant: str, caps: Capabilities, guidance_scale: float):
    """SD3 / FLUX: their family table knows the steps each variant is made for."""
    from engine.sd.modern_families import family_spec

    made_for = family_spec(base, variant).defaults
    if made_for.steps <= FEW_STEP_LIMIT:  # FLUX schnell, SD3.5 Large Turbo
        return made_for.steps, made_for.guidance_scale, made_for.sampler, ()
    guidance = guidance_scale if caps.guidance else made_for.guidance_scale
    return LIVE_STEPS, guidance, made_for.sampler, ()


class LiveQueue(QObject):
    """When live updates run: at most one live job in the engine and one waiting here.

    `changed()` says the canvas or the settings changed. The running live job is stale from
    then on and is cancelled at once (the engine stops it at its next step); after `delay_ms`
    of quiet the next update is submitted, or, while the cancelled job is still winding down,
    it waits here (one waiting update at most: a newer change only restarts the delay). Jobs
    that are not live (Generate) are never touched: `cancel` is only called with live job ids.
    """

    #: a live job was submitted (its id)
    submitted = Signal(int)

    def __init__(
        self,
        submit: Callable[[], int | None],
        cancel: Callable[[int], None],
        *,
        delay_ms: int = 150,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self._submit = submit
        self._cancel = cancel
        self.delay_ms = delay_ms
        self.enabled = False
        self.running: int | None = None  # the live job in the engine (queued or running)
        self.waiting = False  # an update is due as soon as `running` ends
        self._stale = False  # `running` was made before the latest change
        self.count = 0  # live jobs submitted (benchmarks and tests read it)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._due)

    def set_enabled(self, enabled: bool) -> None:
        """Off: nothing more is scheduled and the live job is cancelled. On: one update."""
        if enabled == self.enabled:
            return
        self.enabled = enabled
        if enabled:
            self.changed(0)
            return
        self._timer.stop()
        self.waiting = False
        self._cancel_running()

    def changed(self, delay_ms: int | None = None) -> None:
        """Something the live picture depends on changed: schedule an update."""
        if not self.enabled:
            return
        self._cancel_running()
        self._timer.start(self.delay_ms if delay_ms is None else delay_ms)

    def finished(self, job_id: int) -> None:
        """A job ended (result, failure or cancel): start the waiting update if it was ours."""
        if job_id != self.running:
            return
        self.running = None
        self._stale = False
        if self.waiting and self.enabled:
            self._start()

    @property
    def pending(self) -> bool:
        """An update is scheduled or waiting (the live picture is not up to date)."""
        return self._timer.isActive() or self.waiting

    def _cancel_running(self) -> None:
        if self.running is not None and not self._stale:
            self._stale = True
            self._cancel(self.running)

    def _due(self) -> None:
        if self.running is not None:
            self.waiting = True  # the stale job is winding down: start when it has
            return
        self._start()

    def _start(self) -> None:
        self.waiting = False
        job_id = self._submit()
        if job_id is None:
            return  # the settings cannot run (the caller said why)
        self.running = job_id
        self.count += 1
        self.submitted.emit(job_id)

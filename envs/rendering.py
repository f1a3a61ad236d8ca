"""Headless, CPU-friendly rendering of any MuJoCo model.

Both suites render through one :class:`FastRenderer` built on ``mujoco.Renderer`` rather than
through each simulator's own viewer: it makes its GL context current before every render (so
several envs can render in one process, which robosuite's own renderer gets wrong), returns
upright images, and lets us switch off the effects that dominate the cost of a frame on a
software (llvmpipe) renderer. Measured here: a 64x64 Meta-World frame ~60 ms with default
visuals, ~6 ms with shadows, multisampling and reflections off (SIM_NOTES.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from vw_robot.errors import UserError

MIN_IMAGE_SIZE = 16
MAX_IMAGE_SIZE = 1024


def validate_image_size(image_size: object) -> int:
    """Return ``image_size`` as an int, or raise a ValueError naming the value and the range."""
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise UserError(
            f"image_size={image_size!r} is not an integer; expected an int in "
            f"[{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}] (square images, e.g. 64)."
        )
    if not MIN_IMAGE_SIZE <= int(image_size) <= MAX_IMAGE_SIZE:
        raise UserError(
            f"image_size={image_size} is out of range; expected an int in "
            f"[{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}] (square images, e.g. 64)."
        )
    return int(image_size)


def apply_fast_visuals(model: mujoco.MjModel) -> None:
    """Turn off the model-side effects that are expensive on a CPU renderer.

    Must run before the renderer is built: MuJoCo reads the multisample count when it makes
    the GL context.
    """
    model.vis.quality.offsamples = 0
    model.light_castshadow[:] = 0
    model.mat_reflectance[:] = 0


@dataclass(frozen=True)
class FreeCamera:
    """A camera that is not in the model's XML: it looks at ``lookat`` (m, world frame) from
    ``distance`` m away, ``azimuth`` degrees around the vertical axis and ``elevation`` degrees
    above the horizontal (negative: looking down), as MuJoCo's free camera does."""

    lookat: tuple[float, float, float]
    distance: float
    azimuth: float
    elevation: float

    def mjv_camera(self) -> mujoco.MjvCamera:
        camera = mujoco.MjvCamera()
        camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        camera.lookat[:] = self.lookat
        camera.distance = self.distance
        camera.azimuth = self.azimuth
        camera.elevation = self.elevation
        return camera


class FastRenderer:
    """Offscreen RGB renderer for one camera of one MuJoCo model.

    Args:
        model: the simulator's ``MjModel``.
        image_size: side of the square image in pixels.
        camera: name of a camera defined in the model, or a :class:`FreeCamera`.
        flip: flip rows (for cameras that are mounted upside down, e.g. Meta-World's corners).
        fast: use CPU-friendly visuals (no shadows, reflections, skybox, multisampling).
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        image_size: int,
        camera: str | FreeCamera,
        *,
        flip: bool = False,
        fast: bool = True,
    ) -> None:
        self.image_size = validate_image_size(image_size)
        self.camera = camera
        # update_scene takes a camera name or an MjvCamera (built once: it holds no state).
        self._camera = camera.mjv_camera() if isinstance(camera, FreeCamera) else camera
        self.flip = flip
        if fast:
            apply_fast_visuals(model)
        # The offscreen framebuffer must hold the image; models default to 640x480.
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.image_size)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.image_size)
        self._renderer = mujoco.Renderer(model, self.image_size, self.image_size)
        if fast:
            flags = self._renderer.scene.flags
            flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
            flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = 0

    def render(self, data: mujoco.MjData) -> np.ndarray:
        """Render the current state.

        Returns:
            (H, W, 3) uint8 image, upright, a fresh array the caller owns.
        """
        self._renderer.update_scene(data, camera=self._camera)
        image = self._renderer.render()  # (H, W, 3) uint8
        if self.flip:
            image = image[::-1]
        return np.ascontiguousarray(image)

    def close(self) -> None:
        """Release the GL context (avoids EGL tracebacks at interpreter exit)."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

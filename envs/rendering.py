"""Headless, CPU-friendly rendering of any MuJoCo model.

Both suites render through one :class:`FastRenderer` built on ``mujoco.Renderer`` rather than
through each simulator's own viewer: it makes its GL context current before every render (so
several envs can render in one process, which robosuite's own renderer gets wrong), returns
upright images, and lets us switch off the effects that dominate the cost of a frame on a
software (llvmpipe) renderer. Measured here: a 64x64 Meta-World frame ~60 ms with default
visuals, ~6 ms with shadows, multisampling and reflections off (docs/simulators.md).

What is left of a frame's cost is mostly the robots' mesh triangles, which llvmpipe transforms
whether or not they land in the image. So each frame leaves out the geoms whose bounding
sphere lies wholly outside the camera's view frustum (:func:`outside_frustum`): an exact
saving — with shadows and reflections off, a geom outside the frustum cannot change a pixel
(tests/envs/test_rendering.py compares frames with and without it).
"""

from __future__ import annotations

import atexit
import contextlib
import math
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import mujoco
import numpy as np

from vw_robot.errors import UserError

MIN_IMAGE_SIZE = 16
MAX_IMAGE_SIZE = 1024
# camera="a+b": views a and b stacked in one square image (see ViewsRenderer).
VIEW_SEPARATOR = "+"
MAX_VIEWS = 4

# Renderers whose GL context is open. At interpreter exit they are closed before the modules
# are torn down: mujoco's own Renderer.__del__ would run after EGL is gone and print
# "Exception ignored ... EGLError" tracebacks for a script that never called env.close().
_OPEN_RENDERERS: weakref.WeakSet[FastRenderer] = weakref.WeakSet()
_exit_hook_registered = False


def _close_open_renderers() -> None:
    for renderer in list(_OPEN_RENDERERS):
        renderer.close()


def _close_at_exit() -> None:
    """Register :func:`_close_open_renderers` once, after mujoco's GL backend registered its
    own exit hook (it terminates the EGL display): atexit runs the last registered first."""
    global _exit_hook_registered
    if not _exit_hook_registered:
        atexit.register(_close_open_renderers)
        _exit_hook_registered = True


def split_views(camera: str) -> tuple[str, ...]:
    """``"front+top"`` -> ``("front", "top")``; a plain camera name is one view."""
    return tuple(camera.split(VIEW_SEPARATOR))


def camera_problem(camera: str, cameras: Sequence[str], image_size: int) -> str | None:
    """Why ``camera`` (one name, or views joined by ``+``) cannot be rendered at ``image_size``
    from a scene with ``cameras``; ``None`` when it can."""
    views = split_views(camera)
    unknown = [v for v in views if v not in cameras]
    if unknown:
        return (
            f"{', '.join(repr(v) for v in unknown)} is not a camera of the scene; allowed: "
            f"{', '.join(cameras)}, or up to {MAX_VIEWS} of them joined by "
            f"{VIEW_SEPARATOR!r} (views stacked in one image)"
        )
    if len(views) > MAX_VIEWS:
        return f"{len(views)} views; at most {MAX_VIEWS} fit one image"
    if len(set(views)) != len(views):
        return f"a view appears twice in {camera!r}"
    if image_size % len(views):
        return (
            f"{len(views)} views need an image_size divisible by {len(views)} (each view is "
            f"image_size // {len(views)} rows tall), got {image_size}"
        )
    return None


@dataclass(frozen=True)
class ViewLayout:
    """What an observation's image shows: which cameras, at what size, laid out how.

    Frames of two layouts can have the same shape (a ``corner2`` frame and a ``front+top`` frame
    are both (64, 64, 3)), so an env states its layout beside its frames (``info["view"]``,
    ``str(layout)``) and a trained policy compares it with the layout it was trained on.

    Attributes:
        cameras: the views, top to bottom; one camera fills the whole image.
        image_size: side S of the square image.
    """

    cameras: tuple[str, ...]
    image_size: int

    @classmethod
    def of(cls, camera: str, image_size: int) -> ViewLayout:
        """The layout of ``camera`` (one name, or views joined by ``+``) at ``image_size``."""
        return cls(split_views(camera), int(image_size))

    @classmethod
    def parse(cls, text: str) -> ViewLayout:
        """The inverse of ``str(layout)``: ``"front+top@64px"``."""
        camera, sep, size = str(text).rpartition("@")
        if not sep or not camera or not size.endswith("px") or not size[:-2].isdigit():
            raise UserError(f"view {text!r} is not of the form '<camera>[+<camera>...]@<size>px'.")
        return cls.of(camera, int(size[:-2]))

    @property
    def camera(self) -> str:
        """The ``camera=`` value that makes this layout (``"front+top"``)."""
        return VIEW_SEPARATOR.join(self.cameras)

    @property
    def band_rows(self) -> int:
        """Rows of the image each view fills (the middle rows of its camera's own image)."""
        return self.image_size // len(self.cameras)

    def describe(self) -> str:
        """``front+top at 64x64 px: rows 0-31 front, rows 32-63 top`` (one camera: the whole
        image)."""
        size = f"{self.image_size}x{self.image_size} px"
        if len(self.cameras) == 1:
            return f"{self.camera} at {size}"
        bands = ", ".join(
            f"rows {i * self.band_rows}-{(i + 1) * self.band_rows - 1} {name}"
            for i, name in enumerate(self.cameras)
        )
        return f"{self.camera} at {size}: {bands}"

    def __str__(self) -> str:
        return f"{self.camera}@{self.image_size}px"


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
        band: render only the middle ``1 / band`` of the camera's image height, at full
            resolution: an image ``image_size`` wide and ``image_size // band`` tall (the
            vertical field of view narrowed to match; the horizontal one unchanged).
        cull: leave out the geoms wholly outside the view frustum (the same pixels, fewer
            triangles; needs ``fast``: a geom outside the view can still cast a shadow or
            show in a reflection).
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        image_size: int,
        camera: str | FreeCamera,
        *,
        flip: bool = False,
        fast: bool = True,
        band: int = 1,
        cull: bool = True,
    ) -> None:
        self.image_size = validate_image_size(image_size)
        if band < 1 or self.image_size % band:
            raise UserError(f"band={band}: image_size={image_size} must be a multiple of it.")
        self.camera = camera
        self.flip = flip
        self.band = band
        self.cull = cull and fast
        self._model = model
        self._camera_index: int | None = None
        if isinstance(camera, FreeCamera):
            self._camera = camera.mjv_camera()  # built once: it holds no state
        else:
            self._camera_index = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
            if self._camera_index < 0:
                raise UserError(f"camera {camera!r} is not in the model.")
            self._camera = mujoco.MjvCamera()
            self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
            self._camera.fixedcamid = self._camera_index
        # Geoms that can be culled: those with a bounding sphere (a plane's radius is 0).
        self._cullable = np.flatnonzero(model.geom_rbound > 0)
        if fast:
            apply_fast_visuals(model)
        # The offscreen framebuffer must hold the image; models default to 640x480.
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, self.image_size)
        model.vis.global_.offheight = max(model.vis.global_.offheight, self.image_size)
        self._renderer = mujoco.Renderer(model, self.image_size // band, self.image_size)
        _OPEN_RENDERERS.add(self)
        _close_at_exit()
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
        with self._narrowed_fovy(), self._culled(data):
            self._renderer.update_scene(data, camera=self._camera)
        image = self._renderer.render()  # (H, W, 3) uint8
        if self.flip:
            image = image[::-1]
        return np.ascontiguousarray(image)

    def close(self) -> None:
        """Release the GL context (idempotent; also done at garbage collection and exit)."""
        renderer, self._renderer = getattr(self, "_renderer", None), None
        _OPEN_RENDERERS.discard(self)
        if renderer is not None:
            renderer.close()

    def __del__(self) -> None:
        # An env dropped without close(): release its context now, while EGL is alive.
        with contextlib.suppress(Exception):
            self.close()

    def _outside(self, data: mujoco.MjData) -> np.ndarray:
        """Ids of the geoms wholly outside this camera's view frustum in ``data``'s state."""
        scene = self._renderer.scene
        mujoco.mjv_updateCamera(self._model, data, self._camera, scene)
        glcam = mujoco.mjv_averageCamera(scene.camera[0], scene.camera[1])  # as mjr_render does
        if glcam.orthographic:
            return np.empty(0, dtype=np.int64)
        ids = self._cullable
        sphere_radius = self._model.geom_rbound[ids]
        return ids[
            outside_frustum(
                data.geom_xpos[ids],
                sphere_radius,
                glcam,
                aspect=self._renderer.width / self._renderer.height,
            )
        ]

    @contextlib.contextmanager
    def _culled(self, data: mujoco.MjData) -> Iterator[None]:
        """With culling on, the geoms wholly outside the view frustum hidden while the scene is
        built: mjv_updateScene skips a geom whose alpha is 0 (the model's own alphas restored
        after)."""
        hidden = self._outside(data) if self.cull else None
        if hidden is None or not hidden.size:
            yield
            return
        rgba = self._model.geom_rgba
        alpha = rgba[hidden, 3].copy()
        rgba[hidden, 3] = 0.0
        try:
            yield
        finally:
            rgba[hidden, 3] = alpha

    @contextlib.contextmanager
    def _narrowed_fovy(self) -> Iterator[None]:
        """For a band, the camera's vertical field of view narrowed to the band's rows while the
        scene is built (the model's own value restored after): MuJoCo keeps the vertical field
        of view and square pixels, so a wide, short viewport then shows the middle rows of the
        square image at the same pixel scale."""
        if self.band == 1:
            yield
            return
        fovy = self._fovy()
        self._set_fovy(math.degrees(2 * math.atan(math.tan(math.radians(fovy) / 2) / self.band)))
        try:
            yield
        finally:
            self._set_fovy(fovy)

    def _fovy(self) -> float:
        if self._camera_index is None:
            return float(self._model.vis.global_.fovy)  # free cameras use the global one
        return float(self._model.cam_fovy[self._camera_index])

    def _set_fovy(self, value: float) -> None:
        if self._camera_index is None:
            self._model.vis.global_.fovy = value
        else:
            self._model.cam_fovy[self._camera_index] = value


def geom_pixels(
    render: Callable[[], np.ndarray],
    model: mujoco.MjModel,
    groups: Mapping[str, Sequence[int]],
) -> dict[str, np.ndarray]:
    """Where each group of geoms shows in the image ``render()`` returns: the pixels that
    change when the group is hidden (its geoms' alphas set to 0, which ``mjv_updateScene``
    skips; restored after). Works through any renderer, bands of stacked views included, and
    counts only what is in sight: a geom behind another changes no pixel.

    Args:
        render: returns the current (H, W, 3) image of the scene of ``model``.
        model: the rendered ``MjModel``.
        groups: name -> geom ids hidden together (e.g. a block's geoms).

    Returns:
        name -> (H, W) bool mask.

    Raises:
        UserError: a geom id that is not in ``model`` (naming the group and the id).
    """
    for name, ids in groups.items():
        bad = [int(i) for i in ids if not 0 <= int(i) < model.ngeom]
        if bad:
            raise UserError(
                f"geom_pixels: group {name!r} has geom ids {bad} outside 0..{model.ngeom - 1}."
            )
    full = render()
    masks = {}
    for name, ids in groups.items():
        ids = np.asarray(ids, dtype=np.int64)
        alpha = model.geom_rgba[ids, 3].copy()
        model.geom_rgba[ids, 3] = 0.0
        try:
            hidden = render()
        finally:
            model.geom_rgba[ids, 3] = alpha
        masks[name] = np.any(full != hidden, axis=-1)
    return masks


# Frustum test slack, relative to a geom's bounding radius and absolute in metres: float
# rounding must never cull a geom that touches the view.
CULL_SLACK = 1.01
CULL_SLACK_M = 1e-3


def outside_frustum(
    centers: np.ndarray, radii: np.ndarray, camera: mujoco.MjvGLCamera, aspect: float
) -> np.ndarray:
    """Which spheres (world ``centers`` (N, 3), ``radii`` (N,)) lie wholly outside the
    perspective frustum ``mjr_render`` draws ``camera`` with in a viewport of width / height
    ``aspect``: vertically ``frustum_bottom..frustum_top`` at ``frustum_near``, horizontally
    ``frustum_center`` +- ``frustum_width / 2`` (or, when that is 0, the half-width the aspect
    gives). Spheres beyond the far plane are kept (conservative).

    Returns:
        (N,) bool.
    """
    forward = np.asarray(camera.forward, dtype=np.float64)
    up = np.asarray(camera.up, dtype=np.float64)
    right = np.cross(forward, up)
    near = float(camera.frustum_near)
    bottom, top = float(camera.frustum_bottom), float(camera.frustum_top)
    half_width = camera.frustum_width / 2 if camera.frustum_width else aspect * (top - bottom) / 2
    left, right_edge = camera.frustum_center - half_width, camera.frustum_center + half_width
    offset = np.asarray(centers, dtype=np.float64) - np.asarray(camera.pos, dtype=np.float64)
    x, y, z = offset @ right, offset @ up, offset @ forward
    reach = np.asarray(radii, dtype=np.float64) * CULL_SLACK + CULL_SLACK_M
    outside = z < near - reach
    # Each side plane passes through the eye and an edge of the near rectangle; a sphere is
    # outside when its centre lies more than its radius beyond the plane.
    for coord, edge, sign in ((x, left, -1), (x, right_edge, 1), (y, bottom, -1), (y, top, 1)):
        slope = edge / near
        outside |= sign * (coord - slope * z) / math.hypot(1.0, slope) > reach
    return outside


class ViewsRenderer:
    """Several cameras of one model in one square image: view i fills rows
    ``[i * S / N, (i + 1) * S / N)``, showing the middle ``1 / N`` of that camera's image height
    at full resolution and its whole width (``camera="front+top"``: N = 2). One view is a plain
    :class:`FastRenderer` image.

    Args:
        model: the simulator's ``MjModel``.
        image_size: side S of the square image.
        views: per view, the camera (a name in the model or a :class:`FreeCamera`) and whether
            its rows are flipped.
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        image_size: int,
        views: Sequence[tuple[str | FreeCamera, bool]],
    ) -> None:
        self._renderers = [
            FastRenderer(model, image_size, camera, flip=flip, band=len(views))
            for camera, flip in views
        ]

    def render(self, data: mujoco.MjData) -> np.ndarray:
        """(S, S, 3) uint8, upright, a fresh array the caller owns."""
        images = [renderer.render(data) for renderer in self._renderers]
        return images[0] if len(images) == 1 else np.concatenate(images, axis=0)

    def close(self) -> None:
        for renderer in self._renderers:
            renderer.close()

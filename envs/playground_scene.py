"""The playground's MuJoCo scene: a CALVIN-like table, a cartesian arm and its controller.

A table top at z = 0 carries a drawer in a chest (front right), a cabinet with a sliding door
(back left) whose top is a shelf, a push button that toggles a lightbulb on the cabinet, a slide
switch that toggles an LED, and three free blocks (red, blue, pink). The arm is a gantry: x/y/z
slide joints under stiff position servos (gravity compensated) and a two-finger parallel gripper
closing along y. Its grip point is the joint vector itself, so experts and detectors work in
plain world coordinates.

Actions are Meta-World-like: ``(dx, dy, dz, gripper)`` in [-1, 1]. The xyz part moves a servo
set-point by up to :data:`MAX_STEP` metres per control step (kept within :data:`SETPOINT_LEAD`
of the hand, so pushing against something never winds up an unbounded force); the gripper
part is absolute, -1 fully open, +1 closed (force-limited, so it squeezes what it holds).

The light and the LED are discrete states the simulator does not have; :class:`PlaygroundSim`
keeps them: the lightbulb toggles on each press edge of the button, the LED follows the switch
with hysteresis. Their colours are written into the model's materials before each render.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import mujoco
import numpy as np

BLOCK_COLORS = ("red", "blue", "pink")
BLOCK_HALF = 0.0225  # blocks are 4.5 cm cubes
TIMESTEP = 0.0025  # physics step (s)
SUBSTEPS = 20  # physics steps per control step: 20 Hz control
CONTROL_DT = TIMESTEP * SUBSTEPS
MAX_STEP = 0.02  # metres the set-point moves per control step at |action| = 1
SETPOINT_LEAD = 0.03  # the set-point stays this close to the hand (bounded push force)
FINGER_OPEN = 0.035  # finger joint travel; gap between the fingers = 2 * (0.001 + q)
WORKSPACE_LOW = np.array([-0.6, -0.42, 0.0])
WORKSPACE_HIGH = np.array([0.6, 0.4, 0.35])
HOME = np.array([-0.05, -0.12, 0.25])

# Geometry the tasks and experts need (metres, world frame, table top at z = 0).
TABLE_REST_Z = BLOCK_HALF  # centre of a block resting on the table
FLOOR_Z = -0.75  # the floor under the table
DRAWER_RANGE = (0.0, 0.2)  # drawer joint: 0 closed, 0.2 fully pulled out (towards -y)
DRAWER_X = (0.27, 0.51)  # drawer interior, x
DRAWER_Y0 = (-0.105, 0.125)  # drawer interior, y, when closed (moves by -q)
DRAWER_FLOOR_Z = 0.015
DRAWER_REST_Z = DRAWER_FLOOR_Z + BLOCK_HALF
DRAWER_HANDLE = np.array([0.39, -0.18, 0.06])  # handle bar centre when closed (moves by -q in y)
SLIDER_RANGE = (0.0, 0.28)  # door joint: door centre x = SLIDER_X0 + q
SLIDER_X0 = -0.40
SLIDER_KNOB_YZ = (0.1625, 0.125)
SLIDER_KNOB_HALF_X = 0.015
SHELF_X = (-0.55, 0.05)  # cabinet top (the shelf)
SHELF_Y = (0.2, 0.38)
SHELF_Z = 0.16
SHELF_REST_Z = SHELF_Z + BLOCK_HALF
BUTTON_XY = np.array([0.18, 0.3])
BUTTON_TOP_Z = 0.047  # cap top at rest
BUTTON_RANGE = (-0.018, 0.0)
SWITCH_RANGE = (0.0, 0.08)  # knob x = SWITCH_X0 + q
SWITCH_X0 = 0.30
SWITCH_YZ = (0.3, 0.044)
SWITCH_KNOB_HALF_X = 0.012
# Hysteresis of the discrete states (joint values).
BUTTON_PRESSED, BUTTON_RELEASED = -0.012, -0.004
LED_ON_AT, LED_OFF_AT = 0.06, 0.02

# Collision groups: static world, hand, blocks, articulated parts. Articulated parts (drawer,
# door, button cap, switch knob) touch the hand and blocks only: their joints keep them in place.
_STATIC = 'contype="1" conaffinity="6"'
_HAND = 'contype="2" conaffinity="13"'
_BLOCK = 'contype="4" conaffinity="15"'
_PART = 'contype="8" conaffinity="6"'
_VISUAL = 'contype="0" conaffinity="0"'

_BLOCK_RGBA = {"red": "0.85 0.15 0.12 1", "blue": "0.15 0.3 0.85 1", "pink": "0.95 0.45 0.75 1"}
_LIGHT_RGBA = {True: (1.0, 0.92, 0.3, 1.0), False: (0.35, 0.33, 0.3, 1.0)}
_LED_RGBA = {True: (0.2, 1.0, 0.25, 1.0), False: (0.12, 0.22, 0.12, 1.0)}


def _block_xml(color: str) -> str:
    return f"""
    <body name="{color}_block" pos="0 0 {BLOCK_HALF}">
      <freejoint name="{color}_block"/>
      <geom name="{color}_block" type="box" size="{BLOCK_HALF} {BLOCK_HALF} {BLOCK_HALF}"
            mass="0.08" rgba="{_BLOCK_RGBA[color]}" condim="4" friction="1 0.01 0.0002" {_BLOCK}/>
    </body>"""


SCENE_XML = f"""
<mujoco model="vw_robot_playground">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{TIMESTEP}" integrator="implicitfast" cone="elliptic" impratio="5"/>
  <visual>
    <global offwidth="640" offheight="640"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.5 0.5 0.5" specular="0.1 0.1 0.1"/>
  </visual>
  <default>
    <geom solref="0.005 1" solimp="0.95 0.99 0.001" friction="0.8 0.01 0.0002"/>
    <joint solreflimit="0.004 1" solimplimit="0.95 0.99 0.001"/>
  </default>
  <asset>
    <material name="wood" rgba="0.62 0.47 0.32 1"/>
    <material name="cabinet" rgba="0.82 0.8 0.74 1"/>
    <material name="dark" rgba="0.25 0.22 0.2 1"/>
    <material name="metal" rgba="0.55 0.57 0.6 1"/>
    <material name="bulb" rgba="0.35 0.33 0.3 1"/>
    <material name="led" rgba="0.12 0.22 0.12 1"/>
    <material name="floor" rgba="0.3 0.32 0.35 1"/>
  </asset>
  <worldbody>
    <light name="sun" pos="0 -0.4 1.6" dir="0 0.3 -1" diffuse="0.55 0.55 0.55" castshadow="false"/>
    <camera name="front" pos="0 -1.0 1.02" xyaxes="1 0 0 0 0.7 0.714" fovy="47"/>
    <camera name="top" pos="0 -0.02 1.45" xyaxes="1 0 0 0 1 0" fovy="50"/>
    <camera name="side" pos="1.25 -0.55 0.8" xyaxes="0.6 0.8 0 -0.4 0.3 0.87" fovy="45"/>
    <!-- table: the block zone (where blocks are sampled and pushed, x -0.53..0.19, y -0.33..0.11)
         fills the width and the middle half-height band of its image, seen from the front at 45
         degrees down, so that it keeps its scale stacked with another view (table+wrist): about
         twice the pixels per block of front, which frames the whole scene. The drawer's inside,
         the switch and the LED lie beyond its right edge, the lightbulb above its top -->
    <camera name="table" pos="-0.17 -1.217 1.117" xyaxes="1 0 0 0 0.707 0.707" fovy="30"/>
    <!-- the floor catches what falls off the table (a block pushed over the edge would
         otherwise fall for ever, and the simulation count as diverged) -->
    <geom name="floor" type="plane" size="2 2 0.1" pos="0 0 {FLOOR_Z}" material="floor"
          {_STATIC}/>

    <!-- table -->
    <geom name="table" type="box" size="0.62 0.42 0.025" pos="0 0 -0.025" material="wood"
          {_STATIC}/>
    <geom type="box" size="0.03 0.03 0.36" pos="-0.57 -0.37 -0.41" material="wood" {_VISUAL}/>
    <geom type="box" size="0.03 0.03 0.36" pos="0.57 -0.37 -0.41" material="wood" {_VISUAL}/>
    <geom type="box" size="0.03 0.03 0.36" pos="-0.57 0.37 -0.41" material="wood" {_VISUAL}/>
    <geom type="box" size="0.03 0.03 0.36" pos="0.57 0.37 -0.41" material="wood" {_VISUAL}/>

    <!-- cabinet with a sliding door; its top is the shelf; the lightbulb stands on it -->
    <geom name="cabinet" type="box" size="0.3 0.09 0.08" pos="-0.25 0.29 0.08"
          material="cabinet" {_STATIC}/>
    <geom name="cabinet_opening" type="box" size="0.27 0.002 0.065" pos="-0.25 0.199 0.08"
          material="dark" {_VISUAL}/>
    <body name="slider_door" pos="{SLIDER_X0} 0.19 0.08">
      <joint name="slider" type="slide" axis="1 0 0" range="{SLIDER_RANGE[0]} {SLIDER_RANGE[1]}"
             damping="15" frictionloss="1.5" armature="0.5"/>
      <geom name="slider_door" type="box" size="0.13 0.0075 0.07" mass="0.5"
            rgba="0.45 0.6 0.55 1" {_PART}/>
      <geom name="slider_knob" type="box" size="{SLIDER_KNOB_HALF_X} 0.02 0.015"
            pos="0 -0.0275 0.045" mass="0.02" material="metal" {_PART}/>
    </body>
    <geom name="bulb_stand" type="cylinder" size="0.012 0.03" pos="-0.5 0.34 0.19"
          material="metal" {_STATIC}/>
    <geom name="bulb" type="sphere" size="0.035" pos="-0.5 0.34 0.25" material="bulb"
          {_STATIC}/>

    <!-- chest with a drawer (pulls out towards -y) -->
    <geom name="chest_top" type="box" size="0.15 0.14 0.0075" pos="0.39 0.02 0.1125"
          material="cabinet" {_STATIC}/>
    <geom name="chest_left" type="box" size="0.0075 0.14 0.0525" pos="0.2475 0.02 0.0525"
          material="cabinet" {_STATIC}/>
    <geom name="chest_right" type="box" size="0.0075 0.14 0.0525" pos="0.5325 0.02 0.0525"
          material="cabinet" {_STATIC}/>
    <geom name="chest_back" type="box" size="0.15 0.0075 0.0525" pos="0.39 0.1525 0.0525"
          material="cabinet" {_STATIC}/>
    <body name="drawer" pos="0 0 0">
      <joint name="drawer" type="slide" axis="0 -1 0" range="{DRAWER_RANGE[0]} {DRAWER_RANGE[1]}"
             damping="15" frictionloss="1.5" armature="0.5"/>
      <geom name="drawer_floor" type="box" size="0.13 0.12 0.005" pos="0.39 0.015 0.01"
            mass="0.4" material="wood" {_PART}/>
      <geom name="drawer_left" type="box" size="0.005 0.12 0.035" pos="0.265 0.015 0.05"
            mass="0.05" material="wood" {_PART}/>
      <geom name="drawer_right" type="box" size="0.005 0.12 0.035" pos="0.515 0.015 0.05"
            mass="0.05" material="wood" {_PART}/>
      <geom name="drawer_back" type="box" size="0.13 0.005 0.035" pos="0.39 0.13 0.05"
            mass="0.05" material="wood" {_PART}/>
      <geom name="drawer_front" type="box" size="0.135 0.0075 0.0475" pos="0.39 -0.1125 0.0525"
            mass="0.1" rgba="0.45 0.6 0.55 1" {_PART}/>
      <geom name="drawer_post_l" type="box" size="0.006 0.026 0.006" pos="0.345 -0.146 0.06"
            mass="0.01" material="metal" {_PART}/>
      <geom name="drawer_post_r" type="box" size="0.006 0.026 0.006" pos="0.435 -0.146 0.06"
            mass="0.01" material="metal" {_PART}/>
      <geom name="drawer_handle" type="capsule" size="0.008 0.055"
            pos="{DRAWER_HANDLE[0]} {DRAWER_HANDLE[1]} {DRAWER_HANDLE[2]}" zaxis="1 0 0"
            mass="0.02" material="metal" {_PART}/>
    </body>

    <!-- push button (toggles the lightbulb) -->
    <geom name="button_base" type="cylinder" size="0.045 0.01"
          pos="{BUTTON_XY[0]} {BUTTON_XY[1]} 0.01" material="dark" {_STATIC}/>
    <body name="button" pos="{BUTTON_XY[0]} {BUTTON_XY[1]} {BUTTON_TOP_Z - 0.012}">
      <joint name="button" type="slide" axis="0 0 1" range="{BUTTON_RANGE[0]} {BUTTON_RANGE[1]}"
             stiffness="150" springref="0.015" damping="2" armature="0.05"/>
      <geom name="button" type="cylinder" size="0.03 0.012" mass="0.02" rgba="0.8 0.2 0.2 1"
            {_PART}/>
    </body>

    <!-- slide switch (toggles the LED) -->
    <geom name="switch_base" type="box" size="0.08 0.03 0.012" pos="0.36 {SWITCH_YZ[0]} 0.012"
          material="dark" {_STATIC}/>
    <body name="switch" pos="{SWITCH_X0} {SWITCH_YZ[0]} {SWITCH_YZ[1]}">
      <joint name="switch" type="slide" axis="1 0 0" range="{SWITCH_RANGE[0]} {SWITCH_RANGE[1]}"
             damping="5" frictionloss="1" armature="0.1"/>
      <geom name="switch" type="box" size="{SWITCH_KNOB_HALF_X} 0.018 0.02" mass="0.02"
            material="metal" {_PART}/>
    </body>
    <geom name="led_post" type="cylinder" size="0.008 0.025" pos="0.48 {SWITCH_YZ[0]} 0.025"
          material="dark" {_STATIC}/>
    <geom name="led" type="sphere" size="0.02" pos="0.48 {SWITCH_YZ[0]} 0.065" material="led"
          {_STATIC}/>

    <!-- cartesian arm: the x/y/z joints are the grip point -->
    <body name="gantry_x" gravcomp="1">
      <joint name="arm_x" type="slide" axis="1 0 0" range="{WORKSPACE_LOW[0]} {WORKSPACE_HIGH[0]}"
             damping="5" armature="0.1"/>
      <inertial pos="0 0 0" mass="0.5" diaginertia="0.001 0.001 0.001"/>
      <body name="gantry_y" gravcomp="1">
        <joint name="arm_y" type="slide" axis="0 1 0"
               range="{WORKSPACE_LOW[1]} {WORKSPACE_HIGH[1]}" damping="5" armature="0.1"/>
        <inertial pos="0 0 0" mass="0.5" diaginertia="0.001 0.001 0.001"/>
        <body name="hand" pos="0 0 0.06" gravcomp="1">
          <joint name="arm_z" type="slide" axis="0 0 1"
                 range="{WORKSPACE_LOW[2]} {WORKSPACE_HIGH[2]}" damping="5" armature="0.1"/>
          <geom name="palm" type="box" size="0.025 0.05 0.012" mass="0.4" material="metal"
                {_HAND}/>
          <geom name="column" type="cylinder" size="0.014 0.5" pos="0 0 0.512" mass="0.01"
                rgba="0.3 0.3 0.32 1" {_VISUAL}/>
          <site name="grip" pos="0 0 -0.06" size="0.005" rgba="1 1 0 0"/>
          <!-- gripper camera (CALVIN's second view): rides with the hand behind the fingers,
               looking down and ahead at the fingertips and what lies below them. Kept as it
               was (datasets and checkpoints name it); its image's vertical axis is x, so the
               middle band a stacked view keeps (front+gripper) misses a block beside the
               fingers along x, e.g. at the start of a push to the right -->
          <camera name="gripper" pos="-0.035 0 -0.016" xyaxes="0 -1 0 0.94 0 0.342" fovy="75"/>
          <!-- wrist camera (as CALVIN's gripper camera): under the palm, between the fingers,
               looking straight down; image right is +x (the push axis) and image up +y, so
               the fingers (they close along y) sit at the top and bottom edges and a stacked
               view's middle band (front+wrist) keeps the block under them and its neighbours
               along x. At the experts' 6 cm hover over a block it covers about a tenth of it -->
          <camera name="wrist" pos="0 0 -0.013" xyaxes="1 0 0 0 1 0" fovy="75"/>
          <body name="finger_left" pos="0 0.007 -0.042" gravcomp="1">
            <joint name="finger_left" type="slide" axis="0 1 0" range="0 {FINGER_OPEN}"
                   damping="1" armature="0.01"/>
            <geom name="finger_left" type="box" size="0.012 0.006 0.03" mass="0.05"
                  rgba="0.2 0.2 0.22 1" condim="4" friction="1.2 0.01 0.0002" {_HAND}/>
          </body>
          <body name="finger_right" pos="0 -0.007 -0.042" gravcomp="1">
            <joint name="finger_right" type="slide" axis="0 -1 0" range="0 {FINGER_OPEN}"
                   damping="1" armature="0.01"/>
            <geom name="finger_right" type="box" size="0.012 0.006 0.03" mass="0.05"
                  rgba="0.2 0.2 0.22 1" condim="4" friction="1.2 0.01 0.0002" {_HAND}/>
          </body>
        </body>
      </body>
    </body>
{"".join(_block_xml(c) for c in BLOCK_COLORS)}
  </worldbody>
  <actuator>
    <position name="arm_x" joint="arm_x" kp="3000" dampratio="1" forcerange="-40 40"
              ctrlrange="{WORKSPACE_LOW[0]} {WORKSPACE_HIGH[0]}"/>
    <position name="arm_y" joint="arm_y" kp="3000" dampratio="1" forcerange="-40 40"
              ctrlrange="{WORKSPACE_LOW[1]} {WORKSPACE_HIGH[1]}"/>
    <position name="arm_z" joint="arm_z" kp="3000" dampratio="1" forcerange="-40 40"
              ctrlrange="{WORKSPACE_LOW[2]} {WORKSPACE_HIGH[2]}"/>
    <position name="finger_left" joint="finger_left" kp="400" dampratio="1" forcerange="-12 12"
              ctrlrange="0 {FINGER_OPEN}"/>
    <position name="finger_right" joint="finger_right" kp="400" dampratio="1" forcerange="-12 12"
              ctrlrange="0 {FINGER_OPEN}"/>
  </actuator>
</mujoco>
"""


@dataclass
class SceneState:
    """The task-relevant state of the playground (what detectors and experts read).

    Attributes:
        grip: (3,) grip point (between the fingertips), world frame.
        gap: distance between the fingers' inner faces.
        setpoint: (3,) the arm servo's set-point (experts steer it; see module docstring).
        drawer: drawer joint, 0 closed .. 0.2 open.
        slider: door joint, 0 left .. 0.28 right.
        button: button joint, 0 up .. -0.018 pressed.
        switch: switch joint, 0 (LED side off) .. 0.08.
        light: lightbulb on.
        led: LED on.
        blocks: colour -> (3,) block centre.
        block_yaw: colour -> yaw angle (rad); only resets set it, detectors ignore it.
    """

    grip: np.ndarray
    gap: float
    setpoint: np.ndarray
    drawer: float
    slider: float
    button: float
    switch: float
    light: bool
    led: bool
    blocks: dict[str, np.ndarray]
    block_yaw: dict[str, float] = field(default_factory=dict)

    def copy(self, **changes: object) -> SceneState:
        """A deep copy with some fields replaced."""
        fresh = replace(
            self,
            grip=self.grip.copy(),
            setpoint=self.setpoint.copy(),
            blocks={c: p.copy() for c, p in self.blocks.items()},
            block_yaw=dict(self.block_yaw),
        )
        return replace(fresh, **changes)

    def to_privileged(self) -> dict[str, np.ndarray]:
        """Flat arrays for ``info["privileged"]``."""
        out = {
            "grip": self.grip.copy(),
            "gap": np.array([self.gap]),
            "setpoint": self.setpoint.copy(),
            "drawer": np.array([self.drawer]),
            "slider": np.array([self.slider]),
            "button": np.array([self.button]),
            "switch": np.array([self.switch]),
            "light": np.array([float(self.light)]),
            "led": np.array([float(self.led)]),
        }
        for color, pos in self.blocks.items():
            out[f"{color}_block"] = pos.copy()
        return out

    @classmethod
    def from_privileged(cls, priv: dict[str, np.ndarray]) -> SceneState:
        """Inverse of :meth:`to_privileged` (what experts call on ``info["privileged"]``)."""
        return cls(
            grip=np.asarray(priv["grip"], dtype=np.float64),
            gap=float(priv["gap"][0]),
            setpoint=np.asarray(priv["setpoint"], dtype=np.float64),
            drawer=float(priv["drawer"][0]),
            slider=float(priv["slider"][0]),
            button=float(priv["button"][0]),
            switch=float(priv["switch"][0]),
            light=bool(priv["light"][0] > 0.5),
            led=bool(priv["led"][0] > 0.5),
            blocks={c: np.asarray(priv[f"{c}_block"], dtype=np.float64) for c in BLOCK_COLORS},
        )


def yaw_quaternion(yaw: float) -> np.ndarray:
    """(w, x, y, z) quaternion of a rotation by ``yaw`` about z."""
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


class PlaygroundSim:
    """Model, data, controller and discrete states (light, LED) of one playground."""

    def __init__(self) -> None:
        self.model = mujoco.MjModel.from_xml_string(SCENE_XML)
        self.data = mujoco.MjData(self.model)
        m = self.model
        self._qadr = {
            name: int(m.jnt_qposadr[m.joint(name).id])
            for name in ("arm_x", "drawer", "slider", "button", "switch", "finger_left")
        }
        self._qadr["finger_right"] = int(m.jnt_qposadr[m.joint("finger_right").id])
        self._block_qadr = {c: int(m.jnt_qposadr[m.joint(f"{c}_block").id]) for c in BLOCK_COLORS}
        self._block_body = {c: m.body(f"{c}_block").id for c in BLOCK_COLORS}
        self._grip_site = m.site("grip").id
        self._bulb_mat = m.material("bulb").id
        self._led_mat = m.material("led").id
        self.setpoint = HOME.copy()
        self.light = False
        self.led = False
        self._pressed = False

    # ----------------------------------------------------------------- state in / out
    def set_state(self, state: SceneState, settle_steps: int = 40) -> None:
        """Put the scene in ``state`` (blocks at rest, arm still), then let contacts settle.

        The arm starts at ``state.grip`` with its fingers ``state.gap`` apart (closed on a block
        placed between them, it holds it); the light and LED states are taken as given (the
        switch position should agree with ``state.led``).
        """
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        finger = float(np.clip((state.gap - 0.002) / 2, 0.0, FINGER_OPEN))
        d.qpos[self._qadr["arm_x"] : self._qadr["arm_x"] + 3] = state.grip
        d.qpos[self._qadr["finger_left"]] = finger
        d.qpos[self._qadr["finger_right"]] = finger
        d.qpos[self._qadr["drawer"]] = state.drawer
        d.qpos[self._qadr["slider"]] = state.slider
        d.qpos[self._qadr["switch"]] = state.switch
        for color in BLOCK_COLORS:
            adr = self._block_qadr[color]
            d.qpos[adr : adr + 3] = state.blocks[color]
            d.qpos[adr + 3 : adr + 7] = yaw_quaternion(state.block_yaw.get(color, 0.0))
        self.setpoint = np.clip(state.grip, WORKSPACE_LOW, WORKSPACE_HIGH).astype(np.float64)
        d.ctrl[:3] = self.setpoint
        # A holding grip squeezes (target closed); otherwise the fingers stay where they are.
        d.ctrl[3:5] = 0.0 if finger < FINGER_OPEN - 0.005 else FINGER_OPEN
        self.light, self.led, self._pressed = bool(state.light), bool(state.led), False
        mujoco.mj_forward(m, d)
        for _ in range(settle_steps):
            mujoco.mj_step(m, d)
        # Whatever the settling did to the button, the light keeps the state we were given.
        self._pressed = self._button() < BUTTON_PRESSED
        self._update_discrete()
        self.light = bool(state.light)

    def state(self) -> SceneState:
        """The current :class:`SceneState`."""
        d = self.data
        left = d.qpos[self._qadr["finger_left"]]
        right = d.qpos[self._qadr["finger_right"]]
        return SceneState(
            grip=d.site_xpos[self._grip_site].copy(),
            gap=float(left + right + 0.002),
            setpoint=self.setpoint.copy(),
            drawer=float(d.qpos[self._qadr["drawer"]]),
            slider=float(d.qpos[self._qadr["slider"]]),
            button=self._button(),
            switch=float(d.qpos[self._qadr["switch"]]),
            light=self.light,
            led=self.led,
            blocks={c: d.xpos[self._block_body[c]].copy() for c in BLOCK_COLORS},
        )

    def proprio(self) -> np.ndarray:
        """(4,) grip point xyz and finger gap, what a learned policy may read."""
        d = self.data
        left = d.qpos[self._qadr["finger_left"]]
        right = d.qpos[self._qadr["finger_right"]]
        return np.array([*d.site_xpos[self._grip_site], left + right + 0.002])

    # ----------------------------------------------------------------- control
    def step(self, action: np.ndarray) -> None:
        """One control step: move the set-point, set the gripper, simulate SUBSTEPS."""
        d = self.data
        grip = d.site_xpos[self._grip_site]
        setpoint = self.setpoint + MAX_STEP * action[:3]
        setpoint = np.clip(setpoint, grip - SETPOINT_LEAD, grip + SETPOINT_LEAD)
        self.setpoint = np.clip(setpoint, WORKSPACE_LOW, WORKSPACE_HIGH)
        d.ctrl[:3] = self.setpoint
        d.ctrl[3:5] = FINGER_OPEN * (1.0 - float(action[3])) / 2.0
        for _ in range(SUBSTEPS):
            mujoco.mj_step(self.model, d)
            self._update_discrete()

    def _button(self) -> float:
        return float(self.data.qpos[self._qadr["button"]])

    def _update_discrete(self) -> None:
        button = self._button()
        if not self._pressed and button < BUTTON_PRESSED:
            self._pressed = True
            self.light = not self.light
        elif self._pressed and button > BUTTON_RELEASED:
            self._pressed = False
        switch = float(self.data.qpos[self._qadr["switch"]])
        if switch >= LED_ON_AT:
            self.led = True
        elif switch <= LED_OFF_AT:
            self.led = False

    def update_visuals(self) -> None:
        """Show the light and LED states (material colours) before rendering."""
        m = self.model
        m.mat_rgba[self._bulb_mat] = _LIGHT_RGBA[self.light]
        m.mat_emission[self._bulb_mat] = 0.9 if self.light else 0.0
        m.mat_rgba[self._led_mat] = _LED_RGBA[self.led]
        m.mat_emission[self._led_mat] = 0.9 if self.led else 0.0

    def is_stable(self) -> bool:
        """False when the simulation diverged (NaN or absurd speeds)."""
        d = self.data
        return bool(np.all(np.isfinite(d.qpos)) and np.max(np.abs(d.qvel)) < 50.0)

"""Runs in a virtual environment without torch and without vw_robot, next to a copy of
``vw_robot/serving/client.py`` (as ``client.py``): drives a plain Meta-World episode through
the policy server and saves what it sent and got back, for the test to replay in-process.

Usage: ``python separate_env_client.py ws://127.0.0.1:PORT out.npz``
"""

from __future__ import annotations

import importlib.util
import sys

import gymnasium as gym
import metaworld  # noqa: F401  (registers the Meta-World/* envs)
import numpy as np
from client import PolicyClient

TASK = "reach-v3"
MAX_STEPS = 100


def main(url: str, out: str) -> None:
    for forbidden in ("torch", "vw_robot"):
        if importlib.util.find_spec(forbidden) is not None:
            raise SystemExit(f"{forbidden} is importable here; this env must not have it")
    # The benchmark's own env, not vw_robot's: the client adapts its observations.
    env = gym.make(
        "Meta-World/MT1",
        env_name=TASK,
        seed=0,
        render_mode="rgb_array",
        camera_name="corner2",
        width=64,
        height=64,
        max_episode_steps=MAX_STEPS,
    )
    # Fast visuals (docs/simulators.md): no shadows, multisampling or reflections; before any
    # render.
    model = env.unwrapped.model
    model.vis.quality.offsamples = 0
    model.light_castshadow[:] = 0
    model.mat_reflectance[:] = 0
    pixels, states, raw, actions = [], [], [], []
    success = False
    with PolicyClient(url, timeout=60) as policy:
        if policy.metadata["policy"] != "expert":
            raise SystemExit(f"unexpected hello {policy.metadata}")
        raw_obs, _ = env.reset(seed=0)
        policy.reset(f"metaworld/{TASK}", action_space=env.action_space, seed=0)
        for _ in range(MAX_STEPS):
            obs = {
                "pixels": np.ascontiguousarray(env.render()[::-1]),  # corner2 is upside down
                "state": raw_obs[:4].astype(np.float32),
            }
            # The scripted expert reads the simulator state, as vw_robot's envs provide it.
            info = {"privileged": {"obs": raw_obs}}
            action = policy.select_action(obs, info)
            pixels.append(obs["pixels"])
            states.append(obs["state"])
            raw.append(raw_obs)
            actions.append(action)
            raw_obs, _, terminated, truncated, step_info = env.step(action)
            if step_info["success"]:
                success = True
                break
            if terminated or truncated:
                break
    env.close()
    np.savez(
        out,
        pixels=np.stack(pixels),
        states=np.stack(states),
        raw=np.stack(raw),
        actions=np.stack(actions),
        success=success,
        numpy_version=np.__version__,
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

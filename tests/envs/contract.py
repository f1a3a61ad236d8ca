"""The env contract, as a reusable check (used by the per-suite tests)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


def assert_contract(env: gym.Env, image_size: int, steps: int = 3) -> None:
    """Reset, step and render ``env`` and check every clause of the contract."""
    assert isinstance(env.action_space, gym.spaces.Box)
    assert np.all(env.action_space.low == -1.0) and np.all(env.action_space.high == 1.0)
    obs, info = env.reset(seed=1)
    _check_obs(env, obs, image_size)
    assert type(info["is_success"]) is bool
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        _check_obs(env, obs, image_size)
        assert type(info["is_success"]) is bool
        assert isinstance(reward, float)
        assert not terminated and not truncated
    assert env.spec is None or env.spec.max_episode_steps  # TimeLimit on the outside
    assert isinstance(env, gym.wrappers.TimeLimit)


def _check_obs(env: gym.Env, obs: dict, image_size: int) -> None:
    assert set(obs) == {"pixels", "state"}
    pixels, state = obs["pixels"], obs["state"]
    assert pixels.dtype == np.uint8 and pixels.shape == (image_size, image_size, 3)
    assert pixels.std() > 1.0, "blank frame"
    assert state.dtype == np.float32 and state.ndim == 1 and np.all(np.isfinite(state))
    assert env.observation_space.contains(obs)


def assert_reset_determinism(env: gym.Env, seed: int = 7, other: int = 8) -> None:
    """Same seed -> identical first frame and state; another seed in between changes nothing."""
    first, _ = env.reset(seed=seed)
    env.step(env.action_space.sample())
    different, _ = env.reset(seed=other)
    again, _ = env.reset(seed=seed)
    np.testing.assert_array_equal(first["pixels"], again["pixels"])
    np.testing.assert_array_equal(first["state"], again["state"])
    assert not np.array_equal(first["pixels"], different["pixels"])


def run_expert(env: gym.Env, expert, seed: int) -> tuple[bool, int]:
    """Run the expert until success or the time limit; return (success, steps)."""
    obs, info = env.reset(seed=seed)
    expert.reset()
    for step in range(1, 10_000):
        obs, _, terminated, truncated, info = env.step(expert(obs, info))
        if info["is_success"]:
            return True, step
        if terminated or truncated:
            return False, step
    raise AssertionError("episode never ended")

"""The policy server and its client: a whole Meta-World episode over the wire gives exactly the
in-process policy's actions, bad requests get error frames on a connection that stays usable,
messages are size-bounded, each connection holds its own policy state, and a client in a venv
without torch (or vw_robot) drives an episode."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
from gymnasium.spaces import Box
from packaging.requirements import Requirement
from websockets.sync.client import connect

from vw_robot.envs import make_env
from vw_robot.errors import UserError
from vw_robot.policies import make_policy
from vw_robot.serving import client as client_module
from vw_robot.serving.client import (
    CONNECT_COMPAT,
    EncodingError,
    MessageTooLargeError,
    PolicyClient,
    PolicyServerError,
    describe_error,
    packb,
    unpackb,
)
from vw_robot.serving.server import ServeError, serve_in_background

TASK = "metaworld/reach-v3"
HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def expert_server():
    with serve_in_background("expert", port=0) as server:
        yield server
    assert not any(t.name == "vw-policy-server" for t in threading.enumerate())


@pytest.fixture(scope="module")
def env():
    env = make_env(TASK, image_size=64, max_episode_steps=60)
    yield env
    env.close()


def raw_connection(server):
    """A bare websocket with the hello already read."""
    ws = connect(server.url, compression=None, **CONNECT_COMPAT)
    hello = unpackb(ws.recv(timeout=10))
    assert hello["type"] == "hello"
    return ws


def ask(ws, frame):
    ws.send(frame)
    return unpackb(ws.recv(timeout=10))


# --- encoding ---------------------------------------------------------------------------------


def test_encoding_round_trips_arrays_scalars_and_nesting():
    values = {
        "f32": np.arange(12, dtype=np.float32).reshape(3, 4),
        "u8": np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8),
        "big_endian": np.arange(3, dtype=">f8"),
        "strided": np.arange(20, dtype=np.int64)[::3],  # not contiguous
        "zero_d": np.array(2.5),
        "empty": np.zeros((0, 4), dtype=np.float16),
        "bool": np.array([True, False]),
        "scalars": [np.float64(1.25), np.int32(-3), np.bool_(True)],
        "nested": {"privileged": {"obs": np.ones(39)}, "plain": [1, "a", None, 2.0]},
    }
    back = unpackb(packb(values))
    for key in ("f32", "u8", "big_endian", "strided", "zero_d", "empty", "bool"):
        np.testing.assert_array_equal(back[key], values[key])
        assert back[key].dtype == values[key].dtype and back[key].shape == values[key].shape
        assert back[key].flags.writeable
    # np.float64 is a Python float, and msgpack sends it as one.
    assert [type(v) for v in back["scalars"]] == [float, np.int32, np.bool_]
    assert back["scalars"] == values["scalars"]
    np.testing.assert_array_equal(back["nested"]["privileged"]["obs"], np.ones(39))
    assert back["nested"]["plain"] == [1, "a", None, 2.0]


@pytest.mark.parametrize(
    "value", [np.array(["a"]), np.array([object()]), np.array([1j]), {1, 2}], ids=str
)
def test_encoding_refuses_what_it_cannot_send(value):
    with pytest.raises(EncodingError):
        packb({"x": value})


@pytest.mark.parametrize(
    ("array", "match"),
    [
        ({"dtype": "<f4", "shape": [2], "data": b"\0" * 7}, "needs 8 bytes, got 7"),
        ({"dtype": "|O", "shape": [1], "data": b"\0" * 8}, "is not sent"),
        ({"dtype": "nonsense", "shape": [1], "data": b"\0"}, "unknown dtype"),
        ({"dtype": "<f4", "shape": [-1], "data": b""}, "bad array shape"),
        ({"dtype": "<f4", "shape": "2", "data": b""}, "bad array shape"),
        ({"dtype": "<f4", "shape": [2**40, 2**40], "data": b""}, "needs"),
    ],
)
def test_decoding_checks_every_array_field(array, match):
    frame = msgpack.packb({"x": {"__ndarray__": True, **array}}, use_bin_type=True)
    with pytest.raises(EncodingError, match=match):
        unpackb(frame)


def test_decoding_refuses_garbage():
    with pytest.raises(EncodingError, match="not a msgpack frame"):
        unpackb(b"\xc1")
    with pytest.raises(EncodingError, match="text frame"):
        unpackb("hello")


# --- a whole episode ----------------------------------------------------------------------------


def test_episode_gives_the_in_process_actions(expert_server, env):
    local = make_policy("expert")
    with PolicyClient(expert_server.url, timeout=30) as remote:
        hello = remote.metadata
        assert hello["policy"] == "expert" and hello["protocol"] == 1
        assert hello["task_ids"] is None and hello["image_size"] is None  # any task, any size
        obs, info = env.reset(seed=3)
        remote.reset(TASK, action_space=env.action_space, seed=3)
        local.reset(task_id=TASK, action_space=env.action_space, seed=3)
        steps, terminated, truncated = 0, False, False
        while not (terminated or truncated):
            action = remote.select_action(obs, info)
            expected = local.select_action(obs, info)
            np.testing.assert_array_equal(action, expected)
            assert action.dtype == expected.dtype and action.shape == (4,)
            obs, _, terminated, truncated, info = env.step(action)
            steps += 1
        assert steps == 60 and info["is_success"]


# --- bad requests -------------------------------------------------------------------------------


def test_bad_requests_get_error_frames_and_the_connection_stays_usable(expert_server, env):
    obs, info = env.reset(seed=0)
    good_obs = {"obs": obs, "info": info}
    ws = raw_connection(expert_server)
    try:
        cases = [
            (b"\xc1", "not a msgpack frame"),
            (packb([1, 2]), "a request is a map"),
            (packb({"task_id": TASK}), "a request is a map with a 'method'"),
            (packb({"method": "fly"}), "unknown method 'fly'; methods: reset, select_action"),
            (b"\x91" * 10_000 + b"\xc0", "not a msgpack frame"),  # nested 10,000 deep
            (packb({"method": "select_action", **good_obs}), "select_action before reset"),
            (packb({"method": "reset"}), "reset: missing field(s) task_id"),
            (packb({"method": "reset", "task_id": TASK, "sed": 1}), "unknown field(s) sed"),
            (packb({"method": "reset", "task_id": 7}), "task_id must be a non-empty string"),
            (packb({"method": "reset", "task_id": TASK, "seed": "x"}), "seed must be"),
            (
                packb({"method": "reset", "task_id": TASK, "action_space": {"low": -1}}),
                "action_space: missing field(s) high",
            ),
            (
                packb(
                    {
                        "method": "reset",
                        "task_id": TASK,
                        "action_space": {"low": np.zeros(3), "high": np.ones(4)},
                    }
                ),
                "action_space:",
            ),
            (packb({"method": "reset", "task_id": "metaworld/fly-v3"}), "Unknown task"),
        ]
        for frame, message in cases:
            reply = ask(ws, frame)
            assert reply["type"] == "error", (message, reply)
            assert message in reply["message"], reply["message"]
        ws.send("a text frame")
        assert "binary frame" in unpackb(ws.recv(timeout=10))["message"]

        # Still usable: an episode starts, then bad select_action requests are refused.
        assert ask(ws, packb({"method": "reset", "task_id": TASK})) == {
            "type": "result",
            "method": "reset",
        }
        bad_array = msgpack.packb(
            {
                "method": "select_action",
                "obs": {
                    "pixels": {
                        "__ndarray__": True,
                        "dtype": "|u1",
                        "shape": [64, 64, 3],
                        "data": b"\0" * 10,
                    }
                },
            },
            use_bin_type=True,
        )
        for frame, message in [
            (bad_array, "needs 12288 bytes, got 10"),
            (packb({"method": "select_action"}), "missing field(s) obs"),
            (packb({"method": "select_action", "obs": {"pixels": [1, 2]}}), "must be an array"),
            (packb({"method": "select_action", "obs": obs, "info": 3}), "info must be a map"),
        ]:
            reply = ask(ws, frame)
            assert reply["type"] == "error" and message in reply["message"], reply
        reply = ask(ws, packb({"method": "select_action", **good_obs}))
        assert reply["type"] == "result" and reply["action"].shape == (4,)

        # An error inside the policy (the expert needs info["privileged"]) ends the episode.
        reply = ask(ws, packb({"method": "select_action", "obs": obs}))
        assert reply["type"] == "error" and "KeyError" in reply["message"]
        assert "call reset" in reply["message"]
        reply = ask(ws, packb({"method": "select_action", **good_obs}))
        assert "select_action before reset" in reply["message"]
    finally:
        ws.close()


def test_client_raises_the_servers_message(expert_server, env):
    obs, info = env.reset(seed=0)
    with PolicyClient(expert_server.url, timeout=30) as remote:
        with pytest.raises(PolicyServerError, match="select_action before reset") as caught:
            remote.select_action(obs, info)
        assert caught.value.method == "select_action"
        with pytest.raises(PolicyServerError, match="Unknown task"):
            remote.reset("metaworld/fly-v3")
        remote.reset(TASK, action_space=env.action_space)
        assert remote.select_action(obs, info).shape == (4,)


def test_error_messages_carry_a_reason_after_the_colon(expert_server):
    ws = raw_connection(expert_server)
    try:
        for frame, message in [
            (b"\xc1", "not a msgpack frame: FormatError: Invalid msgpack format"),
            (b"\x91" * 10_000 + b"\xc0", "not a msgpack frame: StackError: Too nested"),
        ]:
            assert ask(ws, frame)["message"] == message
    finally:
        ws.close()

    class Silent(Exception):
        pass

    assert describe_error(ValueError("bad")) == "ValueError: bad"
    assert describe_error(Silent()) == "Silent: Silent()"  # no docstring either: its repr
    assert not describe_error(ConnectionError()).endswith(": ")


def test_observation_dtypes_are_checked_naming_the_key(expert_server, env):
    obs, info = env.reset(seed=0)
    with PolicyClient(expert_server.url, timeout=30) as remote:
        remote.reset(TASK, action_space=env.action_space)
        for changed, message in [
            (
                {"pixels": obs["pixels"].astype(np.float32) / 255},
                "obs['pixels']: dtype float32, expected uint8 (H, W, 3) RGB pixels in [0, 255]",
            ),
            (
                {"pixels": obs["pixels"][..., 0]},
                "obs['pixels']: shape (64, 64), expected (H, W, 3) RGB pixels",
            ),
            (
                {"state": obs["state"].astype(np.int64)},
                "obs['state']: dtype int64, expected a float dtype",
            ),
        ]:
            with pytest.raises(PolicyServerError) as caught:
                remote.select_action({**obs, **changed}, info)
            assert caught.value.message == message
        assert remote.select_action(obs, info).shape == (4,)  # refused, the episode goes on


def test_client_resets_with_a_plain_map_in_a_process_without_gymnasium():
    """``reset(action_space={...})`` as the client's docstring shows, where gymnasium cannot be
    imported (a benchmark's own environment)."""
    code = """
import sys
sys.modules["gymnasium"] = None  # any import of gymnasium fails
import numpy as np
from vw_robot.serving.client import PolicyClient

with PolicyClient(sys.argv[1], timeout=30) as policy:
    policy.reset("metaworld/reach-v3", seed=0, action_space={
        "low": [-1.0] * 4, "high": [1.0] * 4, "shape": [4], "dtype": "float32"})
    obs = {"pixels": np.zeros((64, 64, 3), np.uint8), "state": np.zeros(4, np.float32)}
    action = policy.select_action(obs)
assert action.shape == (4,) and action.dtype == np.float32, action
assert np.all(np.abs(action) <= 1), action
assert "gymnasium" not in {name.split(".")[0] for name in sys.modules if sys.modules[name]}
print("ok")
"""
    with serve_in_background("random") as server:
        done = subprocess.run(
            [sys.executable, "-c", code, server.url], capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr
    with pytest.raises(EncodingError, match="missing high; unknown hi"):
        client_module.describe_box({"low": [-1.0], "hi": [1.0]})


# --- size bound ---------------------------------------------------------------------------------


def test_messages_over_the_limit_are_refused():
    limit = 32 * 1024  # a 64 px frame (12 KB) fits, a 128 px one (49 KB) does not
    big = {"pixels": np.zeros((128, 128, 3), np.uint8)}
    with serve_in_background("random", max_message_bytes=limit) as server:
        with PolicyClient(server.url, timeout=30) as remote:
            assert remote.metadata["max_message_bytes"] == limit
            remote.reset(TASK, action_space={"low": -1.0, "high": 1.0, "shape": [4]}, seed=0)
            # The client refuses to send it, so its connection stays usable.
            with pytest.raises(MessageTooLargeError, match=f"at most {limit}"):
                remote.select_action(big)
            assert remote.select_action({"pixels": np.zeros((64, 64, 3), np.uint8)}).shape == (4,)
        # A client that sends it anyway loses its connection with code 1009.
        ws = raw_connection(server)
        ws.send(packb({"method": "select_action", "obs": big}))
        with pytest.raises(Exception) as caught:
            ws.recv(timeout=10)
        assert caught.value.rcvd.code == 1009
        ws.close()
        # The server itself goes on.
        with PolicyClient(server.url, timeout=30) as remote:
            remote.reset(TASK, action_space={"low": -1.0, "high": 1.0, "shape": [4]})


def test_client_reports_a_close_for_size_as_such():
    with (
        serve_in_background("random", max_message_bytes=8192) as server,
        PolicyClient(server.url, timeout=30) as remote,
    ):
        remote.max_request_bytes = 10**6  # pretend the hello said more
        remote.reset(TASK, action_space={"low": -1.0, "high": 1.0, "shape": [4]})
        with pytest.raises(PolicyServerError, match="1009.*size limit"):
            remote.select_action({"pixels": np.zeros((64, 64, 3), np.uint8)})


# --- one policy state per connection -------------------------------------------------------------


def test_each_connection_has_its_own_policy_state():
    box = {"low": -np.ones(4, np.float32), "high": np.ones(4, np.float32), "dtype": "float32"}
    obs = {"state": np.zeros(4, np.float32)}
    with (
        serve_in_background("random") as server,
        PolicyClient(server.url, timeout=30) as a,
        PolicyClient(server.url, timeout=30) as b,
    ):
        a.reset(TASK, action_space=box, seed=1)
        # b's policy has not been reset, whatever a did.
        with pytest.raises(PolicyServerError, match="before reset"):
            b.select_action(obs)
        b.reset(TASK, action_space=box, seed=2)
        got_a, got_b = [], []
        for _ in range(5):  # interleaved: a shared generator would mix the two streams
            got_a.append(a.select_action(obs))
            got_b.append(b.select_action(obs))
    for seed, got in ((1, got_a), (2, got_b)):
        local = make_policy("random")
        local.reset(task_id=TASK, action_space=Box(-1.0, 1.0, (4,), np.float32), seed=seed)
        expected = [local.select_action(obs, {}) for _ in range(5)]
        np.testing.assert_array_equal(np.stack(got), np.stack(expected))


class _SlowPolicy:
    """Sleeps in select_action when asked to: stands in for a slow model."""

    name = "slow"

    def reset(self, *, task_id, action_space=None, seed=None):
        pass

    def select_action(self, obs, info):
        if "slow" in obs:
            time.sleep(1.5)
        return np.zeros(4, np.float32)


def test_a_slow_policy_call_does_not_hold_up_other_clients():
    with serve_in_background("random") as server:
        server._service._factory = _SlowPolicy  # every later connection gets a slow policy
        with (
            PolicyClient(server.url, timeout=30) as slow,
            PolicyClient(server.url, timeout=30) as fast,
        ):
            slow.reset(TASK)
            fast.reset(TASK)
            waiting = threading.Thread(target=slow.select_action, args=({"slow": np.zeros(1)},))
            waiting.start()
            time.sleep(0.2)  # the slow call is now running in the server's pool
            for _ in range(10):  # a blocked event loop would hold these until the slow one ends
                fast.select_action({"state": np.zeros(4)})
            still_running = waiting.is_alive()
            waiting.join()
    assert still_running


def test_one_log_line_per_connection(caplog):
    caplog.set_level("INFO", logger="vw_robot.serving")
    with serve_in_background("random") as server:
        for _ in range(2):
            with PolicyClient(server.url, timeout=30) as remote:
                remote.reset(TASK, action_space={"low": -1.0, "high": 1.0, "shape": [4]})
                remote.select_action({"state": np.zeros(4)})
                with pytest.raises(PolicyServerError):
                    remote.select_action({})
        deadline = time.monotonic() + 10  # the server logs once it has seen the close
        while time.monotonic() < deadline:
            lines = [r.getMessage() for r in caplog.records if r.name == "vw_robot.serving"]
            if len(lines) >= 2:
                break
            time.sleep(0.05)
    assert len(lines) == 2, lines
    assert all(
        re.search(r"127\.0\.0\.1:\d+: 3 requests \(1 errors\), 1 episodes", x) for x in lines
    )


def test_connections_over_max_connections_are_refused():
    with serve_in_background("expert", max_connections=1) as server:
        with (
            PolicyClient(server.url, timeout=30),
            pytest.raises(PolicyServerError, match="server busy"),
        ):
            PolicyClient(server.url, timeout=30)
        with PolicyClient(server.url, timeout=30) as again:  # the slot is free once closed
            again.reset(TASK)


# --- start-up and shut-down ---------------------------------------------------------------------


def test_bad_options_are_user_errors(expert_server):
    for kwargs, match in [
        ({"policy_spec": "no-such-policy"}, "Unknown policy"),  # make_policy's own UserError
        ({"policy_spec": "expert", "execute": 2}, "does not act in action chunks"),
        ({"policy_spec": "expert", "max_message_bytes": 10}, "max_message_bytes"),
        ({"policy_spec": "expert", "port": 70000}, "port"),
        ({"policy_spec": "expert", "port": expert_server.port}, "cannot listen"),
    ]:
        with pytest.raises(UserError, match=match) as caught:
            serve_in_background(**kwargs).close()
        if "execute" not in kwargs and kwargs["policy_spec"] == "expert":
            assert isinstance(caught.value, ServeError)


def test_client_without_a_server_says_so():
    with serve_in_background("expert") as server:
        url = server.url
    with pytest.raises(PolicyServerError, match=f"cannot connect to {url}"):
        PolicyClient(url, open_timeout=5)


def test_closing_the_server_closes_its_connections():
    server = serve_in_background("expert")
    remote = PolicyClient(server.url, timeout=30)
    server.close()
    with pytest.raises(PolicyServerError, match="connection closed"):
        remote.reset(TASK)
    remote.close()
    server.close()  # idempotent


def test_serve_runs_until_sigterm(tmp_path):
    """The blocking entry point, in its own process: logs the bound port, stops on SIGTERM."""
    code = (
        "import logging; logging.basicConfig(level=logging.INFO);"
        "from vw_robot.serving.server import serve; serve('expert', port=0)"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stderr=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        port = None
        for line in process.stderr:
            found = re.search(r"on ws://127\.0\.0\.1:(\d+)", line)
            if found:
                port = int(found.group(1))
                break
        assert port, "the server never said where it listens"
        with PolicyClient(f"ws://127.0.0.1:{port}", timeout=30) as remote:
            remote.reset(TASK)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        rest = process.stderr.read()
        assert "1 requests (0 errors), 1 episodes" in rest and "stopped" in rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()


# --- a client in a virtual environment without torch --------------------------------------------

# gymnasium's MuJoCo envs import packaging without declaring it.
CLIENT_PACKAGES = [
    "numpy",
    "msgpack",
    "websockets",
    "gymnasium",
    "metaworld",
    "packaging",
    "mujoco",
]


def _distribution_closure(names):
    """This environment's distributions ``names`` need, dependencies included (no extras)."""
    found, todo = {}, list(names)
    while todo:
        dist = importlib.metadata.distribution(todo.pop())
        key = dist.metadata["Name"].lower().replace("_", "-")
        if key in found:
            continue
        found[key] = dist
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return found.values()


def _make_venv(root: Path, install: str) -> Path:
    """A fresh venv holding only the client's packages: linked from this environment
    (``install="link"``: nothing downloaded) or installed by pip (``"pip"``)."""
    venv = root / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", *(["--without-pip"] if install == "link" else []), venv],
        check=True,
    )
    python = venv / "bin" / "python"
    if install == "pip":
        subprocess.run(
            [python, "-m", "pip", "install", "-q", *CLIENT_PACKAGES[:-1], "mujoco==3.3.0"],
            check=True,
        )
        return python
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    for dist in _distribution_closure(CLIENT_PACKAGES):
        for top in {
            f.parts[0] for f in dist.files or [] if f.parts[0] not in ("..", "__pycache__")
        }:
            source = Path(dist.locate_file(top))
            if source.exists() and not (site / top).exists():
                (site / top).symlink_to(source)
    return python


def _drive_from_separate_env(tmp_path, expert_server, install):
    start = time.perf_counter()
    python = _make_venv(tmp_path, install)
    made = time.perf_counter() - start
    scripts = tmp_path / "client"
    scripts.mkdir()
    shutil.copy(client_module.__file__, scripts / "client.py")  # the module alone
    shutil.copy(HERE / "separate_env_client.py", scripts)
    environment = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    # gymnasium's passive checker warns on every Meta-World env (pyproject's filterwarnings).
    environment.update(
        MUJOCO_GL="egl", PYOPENGL_PLATFORM="egl", PYTHONWARNINGS="ignore::UserWarning"
    )
    if install == "link":
        # Imported from vw_robot itself (as with `pip install --no-deps vw_robot`), the client
        # pulls in nothing heavy either.
        check = (
            "import sys; import vw_robot.serving.client; "
            "assert not {'torch', 'gymnasium', 'mujoco'} & set(sys.modules), sorted(sys.modules)"
        )
        repository = Path(client_module.__file__).parents[2]
        subprocess.run(
            [python, "-c", check], check=True, env={**environment, "PYTHONPATH": str(repository)}
        )
    out = tmp_path / "episode.npz"
    subprocess.run(
        [python, scripts / "separate_env_client.py", expert_server.url, out],
        check=True,
        env=environment,
        cwd=tmp_path,
        timeout=300,
    )
    ran = time.perf_counter() - start - made
    episode = np.load(out)
    print(
        f"venv ({install}, numpy {episode['numpy_version']}) made in {made:.1f} s, "
        f"episode of {len(episode['actions'])} steps in {ran:.1f} s"
    )
    assert bool(episode["success"]) and len(episode["actions"]) > 5
    local = make_policy("expert")
    local.reset(task_id=TASK, action_space=None, seed=0)
    for pixels, state, raw, action in zip(
        episode["pixels"], episode["states"], episode["raw"], episode["actions"], strict=True
    ):
        expected = local.select_action(
            {"pixels": pixels, "state": state}, {"privileged": {"obs": raw}}
        )
        np.testing.assert_array_equal(action, expected)
    return episode


def test_client_in_a_venv_without_torch_drives_metaworld(tmp_path, expert_server):
    _drive_from_separate_env(tmp_path, expert_server, "link")


@pytest.mark.slow
def test_client_in_a_pip_installed_venv_drives_metaworld(tmp_path, expert_server):
    """Same, with the client's packages installed by pip (the registry's newest: numpy 2)."""
    _drive_from_separate_env(tmp_path, expert_server, "pip")

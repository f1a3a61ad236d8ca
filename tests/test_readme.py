"""The README's Python blocks run as written, in order, in one namespace (as a user pastes them
into one session), so that a changed default or name can never leave a silently wrong example.

What a block needs from outside is made here with the tests' tiny settings: a randomly
initialised 64 px VideoWorld policy where the default run puts its head,
``runs/demo/videoworld-100pct_seed0`` (with its parents, on the default run's view), a
one-episode dataset at ``runs/demo/data``, the policy server's ``client.py`` copied beside the
script, and a server. The only changes to the text are the
few listed in ``SUBSTITUTIONS`` (fewer episodes, the server's port), each of which must match.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.policies.test_batched import build_tiny_policies
from vw_robot.config import RunConfig
from vw_robot.eval.collect import collect
from vw_robot.serving.server import serve_in_background

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TASKS = RunConfig().tasks  # the default run's, which the examples use
SERVER_URL = "ws://127.0.0.1:8765"
# README text -> what the test runs instead; each must appear in the README exactly once.
SUBSTITUTIONS = {
    "    episodes_per_task=10,\n": (
        '    episodes_per_task=1,\n    env_kwargs={"max_episode_steps": 5},\n'
    ),
}


def python_blocks(text: str) -> list[str]:
    """The ```python fenced blocks of a Markdown text, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_python_blocks_are_found():
    blocks = python_blocks("a\n```python\nx = 1\n```\nb\n```bash\nls\n```\n```python\ny\n```\n")
    assert blocks == ["x = 1\n", "y\n"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_readmes_python_blocks_run_as_written(tmp_path, monkeypatch):
    text = (REPO / "README.md").read_text()
    for old in [*SUBSTITUTIONS, SERVER_URL]:
        assert text.count(old) == 1, f"README.md: {old!r} should appear once"
    blocks = python_blocks(text)
    assert len(blocks) >= 5, "README.md lost its Python examples"

    monkeypatch.chdir(tmp_path)
    build_tiny_policies(
        tmp_path / "runs" / "demo", DEFAULT_TASKS, size=64, camera="front+top", chunk=4
    )
    collect(tmp_path / "runs" / "demo" / "data", DEFAULT_TASKS[:1], episodes_per_task=1)
    shutil.copy(REPO / "vw_robot" / "serving" / "client.py", tmp_path / "client.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "client", raising=False)

    namespace: dict = {"__name__": "__main__"}
    try:
        with serve_in_background("runs/demo/videoworld-100pct_seed0", port=0) as server:
            for number, block in enumerate(blocks, 1):
                for old, new in {**SUBSTITUTIONS, SERVER_URL: server.url}.items():
                    block = block.replace(old, new)
                try:
                    exec(compile(block, f"README.md python block {number}", "exec"), namespace)
                except Exception as exc:
                    pytest.fail(f"README.md python block {number} failed: {exc!r}\n{block}")
    finally:
        if hasattr(namespace.get("env"), "close"):
            namespace["env"].close()  # the last env the blocks made; the README leaves it open

"""Serve a vw_robot policy over a websocket, so a benchmark that cannot share an interpreter
with vw_robot (LIBERO pins robosuite 1.4; docs/simulators.md) drives it from its own environment.

Usage::

    vw-robot serve policy=runs/x/videoworld-100pct_seed0 host=127.0.0.1 port=8765
    python -c "from vw_robot.serving.server import serve; serve('expert', port=8765)"

    # in-process, on a free port (tests, notebooks)
    from vw_robot.serving.server import serve_in_background
    from vw_robot.serving.client import PolicyClient

    with serve_in_background("expert", port=0) as server, PolicyClient(server.url) as policy:
        policy.reset("metaworld/reach-v3", action_space=env.action_space)  # or, without
        # gymnasium: {"low": [-1.0] * 4, "high": [1.0] * 4, "shape": [4], "dtype": "float32"}
        action = policy.select_action(obs, info)  # pixels uint8 (H, W, 3), state float

The client (``vw_robot/serving/client.py``) needs only numpy, msgpack and websockets; its
docstring describes the protocol. Each connection gets its own policy object, built when the
client connects, so two clients never share an action queue or context. Policy calls run in a
thread pool (one thread per allowed connection), so a slow policy or a slow client does not hold
up the others; learned policies' torch intra-op threads are split between those threads.

There is no authentication: listen on the loopback address (the default) or a trusted network.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium.spaces import Box
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as websocket_serve
from websockets.exceptions import ConnectionClosed, ConnectionClosedError
from websockets.frames import CloseCode

import vw_robot
from vw_robot.errors import UserError
from vw_robot.policies import make_policy
from vw_robot.serving.client import (
    DEFAULT_MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    EncodingError,
    describe_error,
    packb,
    unpackb,
)

log = logging.getLogger("vw_robot.serving")
# websockets logs every connection's opening and closing at INFO; ours is the one line that
# counts, so its own messages show from WARNING up (lower this logger's level to see them).
_websockets_log = log.getChild("websockets")
_websockets_log.setLevel(logging.WARNING)

DEFAULT_PORT = 8765
DEFAULT_MAX_CONNECTIONS = 4
# Frames websockets may buffer per connection beyond the one being answered; with max_size this
# bounds a connection's memory (the protocol has one request in flight).
_MAX_QUEUED_FRAMES = 4
_MIN_MESSAGE_BYTES = 4096  # below this even a 64 px frame does not fit
_METHODS = ("reset", "select_action")
_RESET_FIELDS = {"method", "task_id", "seed", "action_space"}
_SELECT_FIELDS = {"method", "obs", "info"}
_BOX_FIELDS = {"low", "high", "shape", "dtype"}


class ServeError(UserError):
    """A serving option that does not fit (policy, port, limits); the message names it."""


class _BadRequest(Exception):
    """A request answered with an error frame; ``end_episode`` when the policy's state may have
    changed half-way."""

    def __init__(self, message: str, end_episode: bool = False) -> None:
        super().__init__(message)
        self.end_episode = end_episode


def build_policy(spec: str, *, device: str = "cpu", execute: int | None = None) -> Any:
    """A fresh policy: ``"expert"``, ``"random"`` or a checkpoint folder, with ``execute``
    actions run per plan for learned policies (:func:`vw_robot.policies.make_policy`).

    Raises:
        UserError: unknown policy, or ``execute`` that does not fit it.
    """
    try:
        return make_policy(spec, device=device, execute=execute)
    except UserError:
        raise
    except ValueError as error:
        raise ServeError(f"policy={spec}: {error}") from error


@dataclass
class _Session:
    """One connection's policy and counters."""

    policy: Any
    in_episode: bool = False
    requests: int = 0
    errors: int = 0
    episodes: int = 0


class PolicyService:
    """The protocol, apart from listening: builds a policy per connection and answers frames.

    Args:
        policy_spec: ``"expert"``, ``"random"`` or a policy checkpoint / run folder.
        device: where a learned policy's networks run (``cpu``, ``cuda``, ``auto``).
        execute: actions run per plan (learned policies; ``None``: the whole chunk).
        max_message_bytes: the largest request accepted (websockets' ``max_size``).
        max_connections: clients served at once; more are refused with an error frame.
        threads: torch intra-op threads per policy call (``None``: the CPU count split between
            ``max_connections``). Applied to the whole process, and only when the policy
            loaded torch.

    Raises:
        UserError: a bad option (:class:`ServeError`) or policy (checked by building one now).
    """

    def __init__(
        self,
        policy_spec: str,
        *,
        device: str = "cpu",
        execute: int | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        threads: int | None = None,
    ) -> None:
        if max_message_bytes < _MIN_MESSAGE_BYTES:
            raise ServeError(f"max_message_bytes: {max_message_bytes} < {_MIN_MESSAGE_BYTES}.")
        if max_connections < 1:
            raise ServeError(f"max_connections: {max_connections} < 1.")
        if threads is not None and threads < 1:
            raise ServeError(f"threads: {threads} < 1.")
        self.max_message_bytes = max_message_bytes
        self.max_connections = max_connections
        self._factory = functools.partial(build_policy, policy_spec, device=device, execute=execute)
        probe = self._factory()
        self.hello: dict[str, Any] = {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "server": f"vw_robot {vw_robot.__version__}",
            "policy": getattr(probe, "name", type(probe).__name__),
            "task_ids": getattr(probe, "task_ids", None),  # None: any registered task
            "image_size": getattr(probe, "image_size", None),
            "pixels_key": getattr(probe, "pixels_key", None),
            "execute": getattr(probe, "execute", None),
            "methods": list(_METHODS),
            "max_message_bytes": max_message_bytes,
        }
        del probe
        self.threads = threads or max(1, (os.cpu_count() or 1) // max_connections)
        # Whoever imported torch (learned policies do) gets its threads split; this module does
        # not import it for the expert's sake.
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(self.threads)
        self._pool = ThreadPoolExecutor(max_connections, thread_name_prefix="vw-policy")
        self._active = 0

    def close(self) -> None:
        """Wait for running policy calls and stop the thread pool."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def handle(self, ws: ServerConnection) -> None:
        """Serve one connection until it closes; logs one line about it at the end."""
        peer = _address(ws.remote_address)
        if self._active >= self.max_connections:
            log.info("refused %s: %d connections open (max_connections)", peer, self._active)
            with contextlib.suppress(ConnectionClosed):
                await ws.send(
                    _error(
                        None,
                        f"server busy: {self._active} clients connected "
                        f"(max_connections={self.max_connections})",
                    )
                )
                await ws.close(CloseCode.TRY_AGAIN_LATER, "too many connections")
            return
        self._active += 1
        start = time.monotonic()
        session: _Session | None = None
        ending = "closed"
        try:
            loop = asyncio.get_running_loop()
            try:
                session = _Session(await loop.run_in_executor(self._pool, self._factory))
            except Exception as error:
                log.exception("building the policy for %s failed", peer)
                ending = f"policy not built ({type(error).__name__})"
                await ws.send(_error(None, f"could not build the policy: {describe_error(error)}"))
                await ws.close(CloseCode.INTERNAL_ERROR, "policy not built")
                return
            await ws.send(packb(self.hello))
            async for frame in ws:
                await ws.send(await self._answer(session, frame))
        except ConnectionClosedError as error:
            ending = f"connection lost ({_close_text(error)})"
        except ConnectionClosed:
            pass
        finally:
            self._active -= 1
            if session is None:
                log.info("%s: %s after %.1f s", peer, ending, time.monotonic() - start)
            else:
                log.info(
                    "%s: %d requests (%d errors), %d episodes, %.1f s, %s",
                    peer,
                    session.requests,
                    session.errors,
                    session.episodes,
                    time.monotonic() - start,
                    ending,
                )

    async def _answer(self, session: _Session, frame: bytes | str) -> bytes:
        """The reply frame to one request frame (an error frame for a bad request)."""
        session.requests += 1
        method: str | None = None
        try:
            request = unpackb(frame)
            if not isinstance(request, dict) or "method" not in request:
                raise _BadRequest("a request is a map with a 'method' field")
            method = request["method"]
            if method == "reset":
                return packb(await self._reset(session, request))
            if method == "select_action":
                return packb(await self._select_action(session, request))
            method = None if not isinstance(method, str) else method
            raise _BadRequest(
                f"unknown method {request['method']!r}; methods: {', '.join(_METHODS)}"
            )
        except (_BadRequest, EncodingError) as error:
            session.errors += 1
            message = str(error) or describe_error(error)
            if isinstance(error, _BadRequest) and error.end_episode and session.in_episode:
                session.in_episode = False
                message += " (episode ended: call reset to start another)"
            return _error(method, message)

    async def _reset(self, session: _Session, request: dict[str, Any]) -> dict[str, Any]:
        _check_fields("reset", request, _RESET_FIELDS, required={"task_id"})
        task_id, seed = request["task_id"], request.get("seed")
        if not isinstance(task_id, str) or not task_id:
            raise _BadRequest(f"task_id must be a non-empty string, got {task_id!r}")
        if seed is not None and (type(seed) is not int or seed < 0):
            raise _BadRequest(f"seed must be a non-negative integer or None, got {seed!r}")
        space = request.get("action_space")
        action_space = None if space is None else _box(space)
        session.in_episode = False
        await self._call(
            session.policy.reset, task_id=task_id, action_space=action_space, seed=seed
        )
        session.in_episode = True
        session.episodes += 1
        return {"type": "result", "method": "reset"}

    async def _select_action(self, session: _Session, request: dict[str, Any]) -> dict[str, Any]:
        _check_fields("select_action", request, _SELECT_FIELDS, required={"obs"})
        if not session.in_episode:
            raise _BadRequest("select_action before reset: call reset(task_id=...) first")
        obs, info = request["obs"], request.get("info")
        if not isinstance(obs, dict) or not obs:
            raise _BadRequest("obs must be a non-empty map of name -> array")
        for key, value in obs.items():
            if not isinstance(value, np.ndarray):
                raise _BadRequest(f"obs[{key!r}] must be an array, got {type(value).__name__}")
            self._check_observation(key, value)
        if info is not None and not isinstance(info, dict):
            raise _BadRequest(f"info must be a map or None, got {type(info).__name__}")
        action = await self._call(session.policy.select_action, obs, {} if info is None else info)
        try:
            action = np.asarray(action)
            if action.dtype.kind not in "biuf":
                raise TypeError(f"dtype {action.dtype}")
        except (TypeError, ValueError) as error:
            log.error("policy returned a non-numeric action: %s", describe_error(error))
            raise _BadRequest(
                f"the policy returned a non-numeric action ({describe_error(error)})", True
            ) from None
        return {"type": "result", "method": "select_action", "action": action}

    def _check_observation(self, key: str, value: np.ndarray) -> None:
        """Refuse pixels other than uint8 (H, W, 3) and a state that is not float: a policy
        given float pixels in [0, 1] or [0, 255] would act on them without a word."""
        if key == (self.hello["pixels_key"] or "pixels"):
            if value.dtype != np.uint8:
                raise _BadRequest(
                    f"obs[{key!r}]: dtype {value.dtype}, expected uint8 (H, W, 3) RGB pixels "
                    "in [0, 255]"
                )
            if value.ndim != 3 or value.shape[-1] != 3:
                raise _BadRequest(
                    f"obs[{key!r}]: shape {value.shape}, expected (H, W, 3) RGB pixels"
                )
        elif key == "state" and value.dtype.kind != "f":
            raise _BadRequest(f"obs[{key!r}]: dtype {value.dtype}, expected a float dtype")

    async def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a policy call in the pool; its exceptions become error frames."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._pool, functools.partial(function, *args, **kwargs)
            )
        except ValueError as error:  # the policy refuses the request (PolicyMismatchError, ...)
            raise _BadRequest(str(error) or describe_error(error), end_episode=True) from error
        except Exception as error:
            log.exception("policy %s raised", getattr(function, "__name__", function))
            raise _BadRequest(
                f"the policy raised {describe_error(error)}", end_episode=True
            ) from error


def _check_fields(
    where: str, fields: dict[str, Any], allowed: set[str], required: set[str]
) -> None:
    """Name every missing and unknown field (a typo such as ``sed`` is not silently ignored)."""
    missing = sorted(required - fields.keys())
    if missing:
        raise _BadRequest(f"{where}: missing field(s) {', '.join(missing)}")
    unknown = sorted(str(k) for k in fields.keys() - allowed)
    if unknown:
        raise _BadRequest(
            f"{where}: unknown field(s) {', '.join(unknown)}; fields: {', '.join(sorted(allowed))}"
        )


def _box(description: Any) -> Box:
    """A gymnasium ``Box`` from the client's ``{"low", "high", "shape"?, "dtype"?}``."""
    if not isinstance(description, dict):
        raise _BadRequest("action_space must be a map with low, high (and shape, dtype) or None")
    _check_fields("action_space", description, _BOX_FIELDS, required={"low", "high"})
    shape = description.get("shape")
    dtype = description.get("dtype", "float32")
    try:
        if np.dtype(dtype).kind not in "iuf":
            raise ValueError(f"dtype {dtype!r} is not numeric")
        return Box(
            low=_bound(description["low"], dtype),
            high=_bound(description["high"], dtype),
            shape=None if shape is None else tuple(shape),
            dtype=np.dtype(dtype),
        )
    except (TypeError, ValueError, AssertionError) as error:
        raise _BadRequest(f"action_space: {describe_error(error)}") from error


def _bound(value: Any, dtype: Any) -> Any:
    # Lists (a client without NumPy types) in the space's dtype: gymnasium warns when it
    # casts float64 bounds down.
    return np.asarray(value, dtype=np.dtype(dtype)) if isinstance(value, list) else value


def _error(method: str | None, message: str) -> bytes:
    return packb({"type": "error", "method": method, "message": message})


def _address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


def _close_text(error: ConnectionClosed) -> str:
    frame = error.rcvd or error.sent
    if frame is None:
        return "no close frame"
    text = f"code {frame.code}" + (f", {frame.reason}" if frame.reason else "")
    if frame.code == CloseCode.MESSAGE_TOO_BIG:
        text += ": a request over max_message_bytes"
    return text


async def _listen(
    service: PolicyService,
    host: str,
    port: int,
    stop: asyncio.Event,
    started: Callable[[int], None],
) -> None:
    """Accept connections on ``host:port`` until ``stop`` is set; then close every
    connection (code 1001) and wait for their handlers."""
    try:
        server = await websocket_serve(
            service.handle,
            host,
            port,
            max_size=service.max_message_bytes,
            max_queue=_MAX_QUEUED_FRAMES,
            # Frames are mostly raw pixels: deflate costs more than it saves on a local link.
            compression=None,
            logger=_websockets_log,
        )
    except OSError as error:
        why = error.strerror or describe_error(error)
        raise ServeError(f"cannot listen on {host}:{port}: {why}") from error
    async with server:
        started(server.sockets[0].getsockname()[1])
        await stop.wait()


def _check_address(host: str, port: int) -> None:
    if not 0 <= port <= 65535:
        raise ServeError(f"port: {port} is not in [0, 65535] (0 picks a free port).")
    with contextlib.suppress(ValueError):
        if not ipaddress.ip_address(host).is_loopback:
            log.warning("listening on %s: the policy server has no authentication", host)


def serve(
    policy_spec: str,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    device: str = "cpu",
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    execute: int | None = None,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    threads: int | None = None,
) -> None:
    """Serve ``policy_spec`` on ``ws://host:port`` until interrupted (Ctrl-C or SIGTERM).

    Args:
        policy_spec: ``"expert"``, ``"random"`` or a policy checkpoint / run folder.
        host: address to listen on; the default accepts local clients only.
        port: TCP port; 0 picks a free one (logged).
        device: where a learned policy's networks run (``cpu``, ``cuda``, ``auto``).
        max_message_bytes: the largest request accepted; a larger one closes its connection
            with code 1009.
        execute: actions run per plan (learned policies; ``None``: the whole chunk).
        max_connections: clients served at once (each holds its own policy).
        threads: torch intra-op threads per policy call (``None``: CPUs / max_connections).

    Raises:
        UserError: a bad option or an address that cannot be listened on (:class:`ServeError`),
            or an unknown policy (``make_policy``'s own error).
    """
    _check_address(host, port)
    service = PolicyService(
        policy_spec,
        device=device,
        execute=execute,
        max_message_bytes=max_message_bytes,
        max_connections=max_connections,
        threads=threads,
    )

    def started(bound: int) -> None:
        log.info(
            "serving policy %s (%s) on ws://%s:%d, up to %d clients, %d torch thread(s) each",
            service.hello["policy"],
            policy_spec,
            host,
            bound,
            max_connections,
            service.threads,
        )

    async def main() -> None:
        stop = asyncio.Event()
        # Not in the main thread (or not on Unix) there are no signal handlers: Ctrl-C only.
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await _listen(service, host, port, stop, started)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    finally:
        service.close()
        log.info("policy server on %s:%d stopped", host, port)


class BackgroundServer:
    """A policy server running on its own event loop in a daemon thread (see
    :func:`serve_in_background`). ``port`` is the bound port; ``close()`` stops it and joins."""

    def __init__(self, service: PolicyService, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._service = service
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="vw-policy-server", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            self._thread.join()
            service.close()
            raise self._failure

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()

            def started(bound: int) -> None:
                self.port = bound
                self._ready.set()

            await _listen(self._service, self.host, self.port, self._stop, started)

        try:
            asyncio.run(main())
        except BaseException as error:  # handed to the thread that started the server
            self._failure = error
        finally:
            self._ready.set()

    def close(self, timeout: float = 30.0) -> None:
        """Close every connection, stop listening, join the thread (idempotent)."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop already finished
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"policy server thread did not stop within {timeout} s")
        self._service.close()
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_in_background(
    policy_spec: str,
    host: str = "127.0.0.1",
    port: int = 0,
    **options: Any,
) -> BackgroundServer:
    """Start serving ``policy_spec`` in a background thread and return once it listens.

    Takes :func:`serve`'s options; ``port=0`` (the default here) picks a free port, read back
    from ``.port`` / ``.url``. Use as a context manager, or call ``close()``.
    """
    _check_address(host, port)
    return BackgroundServer(PolicyService(policy_spec, **options), host, port)

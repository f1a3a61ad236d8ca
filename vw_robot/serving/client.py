"""A client for the vw_robot policy server, and the wire encoding both sides share.

This module needs only ``numpy``, ``msgpack`` and ``websockets`` (>= 12; the server needs 13):
no torch, no simulator, no other vw_robot module. Copy this one file into a benchmark's own
environment (LIBERO, say, which pins a robosuite vw_robot cannot share an interpreter with) and
drive a policy served from the vw_robot environment::

    # in the vw_robot environment
    vw-robot serve policy=runs/x/videoworld-100pct_seed0 port=8765

    # in the benchmark's environment
    from client import PolicyClient          # or: from vw_robot.serving.client import ...

    with PolicyClient("ws://127.0.0.1:8765") as policy:
        print(policy.metadata)               # {"policy": "videoworld", "task_ids": [...], ...}
        obs, info = env.reset(seed=0)
        policy.reset("metaworld/reach-v3", action_space=env.action_space, seed=0)
        while True:
            # obs: {"pixels": (H, W, 3) uint8, "state": (D,) float}; other dtypes are refused
            action = policy.select_action(obs, info)
            obs, reward, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break

    # without gymnasium, describe the action space as a plain map
    policy.reset("metaworld/reach-v3", seed=0, action_space={
        "low": [-1.0] * 4, "high": [1.0] * 4, "shape": [4], "dtype": "float32"})

Protocol (one websocket connection = one policy with its own episode state):

* Every frame is a binary websocket frame holding one msgpack map. NumPy values travel as maps
  (see :func:`pack_value`): an array is ``{"__ndarray__": True, "dtype": "<f4", "shape": [4],
  "data": <raw bytes, C order>}``, a NumPy scalar ``{"__npscalar__": True, "dtype": "<f8",
  "data": <raw bytes>}``. Only bool, integer and float dtypes travel; ``dtype`` is NumPy's
  ``dtype.str`` (byte order included). Tuples arrive as lists, ``np.float64`` scalars as Python
  floats (msgpack sends float subclasses as floats).
* On connect the server sends ``{"type": "hello", "protocol": 1, "policy": name, "task_ids":
  [...] or None, "image_size": int or None, "max_message_bytes": int}``.
* Requests are ``{"method": "reset", "task_id": str, "seed": int or None, "action_space":
  {"low": array, "high": array, "shape": [...], "dtype": "float32"} or None}`` and
  ``{"method": "select_action", "obs": {str: array}, "info": map or None}``; ``obs["pixels"]``
  (the hello's ``pixels_key``) must be uint8 (H, W, 3) and ``obs["state"]`` a float array,
  or the request is refused naming the key, its dtype and the one expected.
* Replies are ``{"type": "result", "method": "reset"}``, ``{"type": "result", "method":
  "select_action", "action": array}``, or ``{"type": "error", "method": ... or None,
  "message": str}``; after an error the connection stays usable (an error raised inside the
  policy ends the episode: ``reset`` again).
* A frame over the server's ``max_message_bytes`` closes the connection with websocket close
  code 1009; this client refuses to send one (:class:`MessageTooLargeError`) instead.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import msgpack
import numpy as np
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.sync.client import connect

PROTOCOL_VERSION = 1
DEFAULT_MAX_MESSAGE_BYTES = 16 * 2**20  # a 224 px frame is 150 KB; room for stacked frames
# Numeric dtypes only: object arrays would need pickling, strings and structs have no use here.
_DTYPE_KINDS = ("b", "i", "u", "f")
_MAX_NDIM = 32  # NumPy 1's limit (2 allows 64); a longer shape is garbage, not a big array


class EncodingError(ValueError):
    """A value cannot be put on the wire, or a frame does not decode (the message says why)."""


class MessageTooLargeError(EncodingError):
    """A request is larger than the server accepts (``max_message_bytes`` in its hello)."""


class PolicyServerError(RuntimeError):
    """The server answered a request with an error frame, or closed the connection.

    Attributes:
        message: the server's own words.
        method: the request it answered (``None`` when it could not tell).
    """

    def __init__(self, message: str, method: str | None = None) -> None:
        where = "policy server" if method is None else f"policy server ({method})"
        super().__init__(f"{where}: {message}")
        self.message = message
        self.method = method


def _checked_dtype(text: Any) -> np.dtype:
    try:
        dtype = np.dtype(text)
    except TypeError as error:
        raise EncodingError(f"unknown dtype {text!r}") from error
    if dtype.kind not in _DTYPE_KINDS:
        raise EncodingError(f"dtype {dtype} is not sent (bool, integer and float only)")
    return dtype


def pack_value(value: Any) -> Any:
    """msgpack's ``default`` hook: a NumPy array or scalar as a plain map (see module doc).

    Raises:
        EncodingError: an object, string, structured or complex dtype; TypeError for any
            other type msgpack cannot pack.
    """
    if isinstance(value, np.ndarray):
        dtype = _checked_dtype(value.dtype)
        return {
            "__ndarray__": True,
            "dtype": dtype.str,
            "shape": list(value.shape),
            "data": np.ascontiguousarray(value).tobytes(),
        }
    if isinstance(value, np.generic):
        dtype = _checked_dtype(value.dtype)
        return {"__npscalar__": True, "dtype": dtype.str, "data": value.tobytes()}
    raise TypeError(
        f"cannot send a {type(value).__name__} (numbers, str, bytes, lists, maps, "
        "NumPy arrays only)"
    )


def unpack_value(value: dict[str, Any]) -> Any:
    """msgpack's ``object_hook``: the inverse of :func:`pack_value`, checking every field.

    Arrays come back writable and C-contiguous (a copy of the frame's bytes).

    Raises:
        EncodingError: a map marked as an array whose dtype, shape or byte count do not fit.
    """
    if value.get("__ndarray__") is True:
        dtype = _checked_dtype(value.get("dtype"))
        shape = value.get("shape")
        data = value.get("data")
        if (
            not isinstance(shape, list)
            or len(shape) > _MAX_NDIM
            or not all(type(n) is int and n >= 0 for n in shape)
        ):
            raise EncodingError(f"bad array shape {shape!r}")
        if not isinstance(data, bytes):
            raise EncodingError("array data must be bytes")
        expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if len(data) != expected:
            raise EncodingError(
                f"array of shape {tuple(shape)} and dtype {dtype} needs {expected} bytes, "
                f"got {len(data)}"
            )
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
    if value.get("__npscalar__") is True:
        dtype = _checked_dtype(value.get("dtype"))
        data = value.get("data")
        if not isinstance(data, bytes) or len(data) != dtype.itemsize:
            raise EncodingError(f"a {dtype} scalar needs {dtype.itemsize} bytes of data")
        return np.frombuffer(data, dtype=dtype)[0]
    return value


def packb(message: Mapping[str, Any]) -> bytes:
    """One frame: ``message`` (maps, lists, numbers, str, bytes, NumPy values) as msgpack."""
    try:
        return msgpack.packb(message, default=pack_value, use_bin_type=True)
    except (TypeError, OverflowError) as error:
        raise EncodingError(f"cannot encode message: {error}") from error


def unpackb(frame: bytes) -> Any:
    """The inverse of :func:`packb`.

    Raises:
        EncodingError: not msgpack, or a NumPy value that does not decode.
    """
    if not isinstance(frame, bytes):
        raise EncodingError("expected a binary frame holding msgpack, got a text frame")
    try:
        return msgpack.unpackb(frame, object_hook=unpack_value, raw=False)
    except EncodingError:
        raise
    except Exception as error:  # msgpack raises several unrelated types for bad bytes
        raise EncodingError(f"not a msgpack frame: {describe_error(error)}") from error


def describe_error(error: BaseException) -> str:
    """``"<type>: <message>"`` for an error message, never empty after the colon.

    Several exceptions carry no message (msgpack's ``FormatError()``, ``StackError()``): their
    class's description stands in (the docstring's first line, ``Invalid msgpack format``), or
    else their ``repr``.
    """
    text = str(error).strip()
    if not text:
        doc = (type(error).__doc__ or "").strip().splitlines()
        text = doc[0].strip() if doc else repr(error)
    return f"{type(error).__name__}: {text}"


def describe_box(space: Any) -> dict[str, Any]:
    """The map the server rebuilds an action space from: ``{"low", "high", "shape", "dtype"}``.

    Takes a gymnasium ``Box`` (or anything with ``low``, ``high``, ``shape`` and ``dtype``), or
    that map itself, which needs no gymnasium: ``{"low": [-1.0] * 4, "high": [1.0] * 4,
    "shape": [4], "dtype": "float32"}`` (``low`` and ``high`` numbers, lists or arrays;
    ``shape`` and ``dtype`` may be left out: the bounds' shape, float32).

    Raises:
        EncodingError: a map without ``low`` or ``high``, with another key, or whose dtype is
            not numeric; anything else without those attributes.
    """
    if isinstance(space, Mapping):
        missing = sorted({"low", "high"} - space.keys())
        unknown = sorted(str(k) for k in space.keys() - {"low", "high", "shape", "dtype"})
        if missing or unknown:
            raise EncodingError(
                "action_space map needs low and high (and may have shape, dtype)"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unknown {', '.join(unknown)}" if unknown else "")
            )
        box = dict(space)
        if box.get("shape") is not None:
            box["shape"] = [int(n) for n in box["shape"]]
        if box.get("dtype") is not None:
            box["dtype"] = _checked_dtype(box["dtype"]).name
        return box
    try:
        return {
            "low": np.asarray(space.low),
            "high": np.asarray(space.high),
            "shape": [int(n) for n in space.shape],
            "dtype": np.dtype(space.dtype).name,
        }
    except AttributeError as error:
        raise EncodingError(
            f"action_space must be a Box (low, high, shape, dtype); got {type(space).__name__}"
        ) from error


class PolicyClient:
    """One connection to a policy server, that is one policy with its own episode state.

    Synchronous: each call sends one request and waits for its reply.

    Args:
        url: ``ws://host:port``.
        timeout: seconds to wait for each reply (``None``: no limit; a learned policy's first
            action can be slow).
        open_timeout: seconds to wait for the connection and the server's hello.
        max_message_bytes: the largest reply accepted.

    Raises:
        PolicyServerError: no server at ``url``, or it refused the connection (too many
            clients) or sent no hello.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float | None = None,
        open_timeout: float = 30.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.url = url
        self.timeout = timeout
        try:
            self._ws = connect(
                url,
                open_timeout=open_timeout,
                max_size=max_message_bytes,
                # Frames are mostly raw pixels: deflate costs more than it saves on a local link.
                compression=None,
                **CONNECT_COMPAT,
            )
        except (OSError, WebSocketException) as error:
            raise PolicyServerError(f"cannot connect to {url}: {describe_error(error)}") from error
        try:
            hello = self._receive(None, open_timeout)
            if not isinstance(hello, dict) or hello.get("type") != "hello":
                raise PolicyServerError(f"expected a hello on connect, got {hello!r:.200}")
        except BaseException:
            self._ws.close()
            raise
        self.metadata: dict[str, Any] = hello
        self.max_request_bytes = int(hello.get("max_message_bytes") or DEFAULT_MAX_MESSAGE_BYTES)

    def reset(self, task_id: str, action_space: Any = None, seed: int | None = None) -> None:
        """Start an episode of ``task_id`` on the server's policy.

        Args:
            task_id: e.g. ``"metaworld/reach-v3"``.
            action_space: the env's ``Box`` action space (some policies draw from it or check
                its size), or without gymnasium the map ``{"low": [-1.0] * 4, "high": [1.0] *
                4, "shape": [4], "dtype": "float32"}`` (:func:`describe_box`); ``None`` to send
                none.
            seed: per-episode seed for stochastic policies.
        """
        self._call(
            {
                "method": "reset",
                "task_id": task_id,
                "seed": None if seed is None else int(seed),
                "action_space": None if action_space is None else describe_box(action_space),
            }
        )

    def select_action(
        self, obs: Mapping[str, np.ndarray], info: Mapping[str, Any] | None = None
    ) -> np.ndarray:
        """The policy's action for ``obs`` (``{"pixels": (H, W, 3) uint8, "state": (D,)}``).

        ``info`` travels too (the scripted expert reads ``info["privileged"]``); NumPy values
        in it keep their dtype.

        Returns:
            The action, shape (A,), as the policy returned it (float32 for vw_robot's).
        """
        reply = self._call(
            {"method": "select_action", "obs": dict(obs), "info": None if info is None else info}
        )
        action = reply.get("action")
        if not isinstance(action, np.ndarray):
            raise PolicyServerError(f"reply has no action array: {reply!r:.200}", "select_action")
        return action

    def close(self) -> None:
        """Close the connection; the server drops this connection's policy."""
        self._ws.close()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        frame = packb(request)
        if len(frame) > self.max_request_bytes:
            raise MessageTooLargeError(
                f"{request['method']} request is {len(frame)} bytes; the server accepts at most "
                f"{self.max_request_bytes} (serve with a larger max_message_bytes)"
            )
        try:
            self._ws.send(frame)
        except ConnectionClosed as error:
            raise _closed_error(error, request["method"]) from error
        reply = self._receive(request["method"], self.timeout)
        if reply.get("type") == "error":
            raise PolicyServerError(str(reply.get("message")), reply.get("method"))
        if reply.get("type") != "result" or reply.get("method") != request["method"]:
            raise PolicyServerError(f"unexpected reply {reply!r:.200}", request["method"])
        return reply

    def _receive(self, method: str | None, timeout: float | None) -> dict[str, Any]:
        try:
            frame = self._ws.recv(timeout=timeout)
        except TimeoutError as error:
            raise PolicyServerError(f"no reply within {timeout} s", method) from error
        except ConnectionClosed as error:
            raise _closed_error(error, method) from error
        reply = unpackb(frame)
        if not isinstance(reply, dict):
            raise PolicyServerError(f"reply is not a map: {reply!r:.200}", method)
        if reply.get("type") == "error" and method is None:
            # Refused before the hello (server busy): the error frame says why.
            raise PolicyServerError(str(reply.get("message")))
        return reply


def _closed_error(error: ConnectionClosed, method: str | None) -> PolicyServerError:
    frame = error.rcvd or error.sent
    why = f"code {frame.code}" + (f", {frame.reason}" if frame.reason else "") if frame else ""
    if frame is not None and frame.code == 1009:
        why += " (a message was over the size limit)"
    return PolicyServerError(f"connection closed ({why or 'no close frame'})", method)


def _connect_compat() -> dict[str, Any]:
    """``connect`` options that only some websockets versions know."""
    known = inspect.signature(connect).parameters
    options: dict[str, Any] = {}
    if "proxy" in known:  # >= 15 reads proxy settings from the env; a policy server is direct
        options["proxy"] = None
    if "legacy" in known:  # >= 17 warns unless told that connect() returns the connection
        options["legacy"] = True
    return options


CONNECT_COMPAT = _connect_compat()

"""A policy server and its client: benchmarks in other environments call vw_robot policies.

``vw_robot.serving.server`` serves a policy over a websocket; ``vw_robot.serving.client`` is the
client, which imports only numpy, msgpack and websockets (nothing from this package is imported
here, so the client stays light).
"""

"""okxsim: a local OKX v5-compatible exchange (WebSocket + REST on one port) for tests and demos.

from okxsim import OkxSim, SimConfig
with OkxSim(SimConfig(port=0, checksum="crc")) as sim:
    ws_base = sim.ws_url      # ws://127.0.0.1:PORT  (+ /ws/v5/public | business | private)
    rest_base = sim.rest_url  # http://127.0.0.1:PORT (+ /api/v5/...)
"""

from .config import DEFAULT_INSTRUMENTS, SimConfig
from .server import Exchange, OkxSim

__all__ = ["OkxSim", "SimConfig", "Exchange", "DEFAULT_INSTRUMENTS"]

"""SimConfig: every knob of the simulated exchange, in one frozen dataclass (CLI and library)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_INSTRUMENTS = (
    "BTC-USDT",
    "ETH-USDT",
    "SOL-USDT",
    "DOGE-USDT",
    "TON-USDT",
    "ETH-USDC",
    "BTC-USDC",
    "UNI-USDT",
    "PEPE-USDT",
)

CHECKSUM_MODES = ("crc", "zero", "absent")


@dataclass(frozen=True)
class SimConfig:
    """Settings of one OkxSim instance.

    host/port      where to listen; port 0 picks a free port (read it back from ``OkxSim.port``)
    seed           market and bot randomness; same seed -> same sequence of events per instrument
    instruments    spot instIds to simulate
    rate           multiplies the market event rate (1.0 = a calm market, 100 = benchmark)
    checksum       "crc" (real OKX CRC32), "zero" (checksum 0, production since 2026-06-23), "absent"
    ws_snapshot    send the initial books snapshot on subscribe (False: clients bootstrap from REST)
    idle_timeout   seconds without subscriptions or pushes before close 4004
    tick_ms        market step and `books` push cadence (OKX: 100 ms)
    heartbeat_s    a quiet book sends an empty update (seqId == prevSeqId) after this many seconds
    seq_reset_prob chance per books update that the seqId restarts lower (as after maintenance)
    trade_history  trades kept per instrument for REST history and truth (ring, between N and 2N)
    strict_limits  enforce OKX REST rate limits (50011 + HTTP 429)
    api_key/...    the one API key the simulated account accepts
    bot_interval_s seconds of simulated time between the bot's actions (0 disables the bot)
    stagger        spread the instruments' ticks evenly over each tick_ms (instrument i steps and
                   pushes at offset i * tick_ms / n) instead of pushing every instrument at the same
                   instant. OKX's per-instrument pushes are not phase-aligned; latency benchmarks
                   use it so one 100 ms burst of every instrument does not dominate the figures
    clock_speed    simulated seconds per real second (1 = real time). At 20, ten minutes of
                   trading take thirty seconds: events per tick and the bot scale with it, while
                   faults (`seconds`), idle timeouts and rate-limit windows stay in real time
    """

    host: str = "127.0.0.1"
    port: int = 8765
    seed: int = 1
    instruments: tuple[str, ...] = DEFAULT_INSTRUMENTS
    rate: float = 1.0
    checksum: str = "zero"
    ws_snapshot: bool = True
    idle_timeout: float = 30.0
    tick_ms: int = 100
    heartbeat_s: float = 60.0
    seq_reset_prob: float = 0.0005
    trade_history: int = 200_000
    strict_limits: bool = True
    api_key: str = "okxsim-key"
    api_secret: str = "okxsim-secret"
    passphrase: str = "okxsim-pass"
    bot_interval_s: float = 0.5
    base_events_per_tick: float = 2.0
    clock_speed: float = 1.0
    stagger: bool = False

    def __post_init__(self) -> None:
        if self.checksum not in CHECKSUM_MODES:
            raise ValueError(f"checksum must be one of {CHECKSUM_MODES}, not {self.checksum!r}")
        if self.rate <= 0:
            raise ValueError("rate must be > 0")
        if self.clock_speed <= 0:
            raise ValueError("clock_speed must be > 0")
        if not self.instruments:
            raise ValueError("at least one instrument is needed")

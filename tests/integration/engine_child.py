"""Run an engine in a child process for the kill -9 tests (not a test module).

Usage: python engine_child.py DATA_DIR OUT_JSON MODE
MODE "settled": open two positions, arm three conditions, wait until idle, write the snapshot
and the order ids to OUT_JSON, print READY and block until killed.
MODE "inflight": arm a condition and push its trigger tick, print READY at once (the entry may
be anywhere between the Sniper and the venue when the kill lands) and block.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from adapters.console.logs import configure_logging  # noqa: E402
from run import build_engine  # noqa: E402
from state.models import TradeCondition  # noqa: E402
from state.store import jsonable  # noqa: E402

CONFIG = {
    "feed": {"source": "manual", "symbols": ["BTC", "ETH", "SOL"]},
    "paper": {"initial_balance": 10000, "slippage_bps": 0, "taker_fee": 0.0005},
}


def make(coin: str, direction: str, trigger: int, cid: str) -> TradeCondition:
    return TradeCondition(
        id=cid, coin=coin, direction=direction, trigger_price=trigger,
        trigger_type="ABOVE" if direction == "LONG" else "BELOW",
        stop_loss_pct="0.02", take_profit_pct="0.015", position_size_usd=200,
        valid_until=datetime.now() + timedelta(hours=1),
    )


def main() -> None:
    data_dir, out, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    configure_logging("WARNING", data_dir / "logs")
    engine = build_engine(CONFIG, data_dir=data_dir).start()
    now = time.time_ns() // 1_000_000
    if mode == "settled":
        engine.sniper.add_condition(make("BTC", "LONG", 42000, "btc-long"))
        engine.sniper.add_condition(make("ETH", "SHORT", 3000, "eth-short"))
        for coin, trigger, cid in (("SOL", 200, "sol-1"), ("BTC", 50000, "btc-2"), ("ETH", 5000, "eth-2")):
            engine.sniper.add_condition(make(coin, "LONG", trigger, cid))
        engine.push_tick("BTC", "42001", now + 1)
        engine.push_tick("ETH", "2999", now + 2)
        engine.push_tick("BTC", "42100", now + 3)
        if not engine.wait_idle(20):
            raise SystemExit("child engine did not settle")
        snapshot = engine.sniper.snapshot()
        orders = [r.client_order_id for r in engine.store.load_orders()]
        out.write_text(json.dumps({"snapshot": jsonable(snapshot), "orders": orders}))
    else:
        engine.sniper.add_condition(make("BTC", "LONG", 42000, "btc-long"))
        engine.push_tick("BTC", "42001", now + 1)
        out.write_text(json.dumps({"pushed_at_ms": now + 1}))
    print("READY", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()

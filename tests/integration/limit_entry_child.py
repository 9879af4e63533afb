"""Run an engine with a resting limit entry in a child process, for ``test_limit_kill9.py`` (not
a test module).

Usage: python limit_entry_child.py DATA_DIR OUT_JSON MODE

The engine (``CONFIG``: manual feed, paper venue with ``fill_model = "traded_volume"``) arms a
LONG BTC limit entry (``TRIGGER``, limit at the trigger, ``entry_timeout_s`` far beyond the
test), a tick triggers it, the order rests on the venue's book; then, by MODE:

- ``settled``: a trade of ``PARTIAL_QTY`` at the limit fills part of it; the engine applies the
  fill (waits until idle);
- ``unreported``: the venue fills part of it from the same trade, but its report never reaches
  the engine (the sink is replaced first): a fill the venue wrote to its book whose report the
  kill swallowed, made deterministic;
- ``racing``: the same trade is pushed and READY printed at once: the kill lands wherever the
  fill is between the venue and the engine's stores.

Then it writes ``{"position_id", "order_id", "last_ts_ms"}`` to OUT_JSON, prints READY and
blocks until killed.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from adapters.console.logs import configure_logging  # noqa: E402
from run import build_engine  # noqa: E402
from state.models import TradeCondition, entry_order_id  # noqa: E402

CONFIG = {
    "feed": {"source": "manual", "symbols": ["BTC"]},
    "paper": {"initial_balance": 10000, "slippage_bps": 0, "taker_fee": 0.0005, "maker_fee": 0.0002,
              "fill_model": "traded_volume"},
    "sniper": {"max_exposure_pct": 1},
    "risk": {"max_position_usd": 10000},
}
TRIGGER = Decimal("40000")
PARTIAL_QTY = Decimal("0.03")  # of the 0.09999 BTC the $4000 entry asks for


def limit_entry(cid: str = "limit-long") -> TradeCondition:
    return TradeCondition(
        id=cid, coin="BTC", direction="LONG", trigger_price=TRIGGER, trigger_type="ABOVE",
        stop_loss_pct="0.02", take_profit_pct="0.015", position_size_usd=4000,
        valid_until=datetime.now() + timedelta(hours=1),
        entry_type="limit", entry_offset_ticks=0, entry_timeout_s=24 * 3600,
    )


def main() -> None:
    data_dir, out, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    configure_logging("WARNING", data_dir / "logs")
    engine = build_engine(CONFIG, data_dir=data_dir).start()
    now = time.time_ns() // 1_000_000
    engine.sniper.add_condition(limit_entry())
    engine.push_tick("BTC", str(TRIGGER + 1), now + 1, qty="0.5")  # triggers: a buy limit at 40000 rests
    if not engine.wait_idle(20):
        raise SystemExit("child engine did not settle")
    (position,) = engine.sniper.snapshot().positions
    order_id = entry_order_id(position.id)
    if engine.venue.fetch_order(order_id) is None:
        raise SystemExit(f"the limit entry {order_id} is not on the venue's book")
    if mode == "unreported":
        engine.venue.bind(lambda event: None)  # what the venue reports from now on dies with the process
        engine.venue.observe_trade("BTC", TRIGGER, PARTIAL_QTY, now + 2)
    else:
        engine.push_tick("BTC", str(TRIGGER), now + 2, qty=str(PARTIAL_QTY))
        if mode == "settled" and not engine.wait_idle(20):
            raise SystemExit("child engine did not settle")
    out.write_text(json.dumps({"position_id": position.id, "order_id": order_id, "last_ts_ms": now + 2}))
    print("READY", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()

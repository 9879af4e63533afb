"""Run a live engine (against the test's local exchange) in a child process, for
``test_live_kill9.py`` (not a test module).

Usage: python live_kill9_child.py DATA_DIR CONFIG_JSON

Builds the engine from the JSON config (its ``[venue]`` and ``[feed]`` URLs point at the test's
``LocalBinance``; the keys come from the environment), starts it, arms the two conditions of
``conditions()`` and prints ``ARMED`` on a line of its own; then it blocks until killed. The
test feeds the trades that trigger them and kills it with SIGKILL while an order is in flight.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from adapters.console.logs import configure_logging  # noqa: E402
from run import build_engine  # noqa: E402
from state.models import TradeCondition  # noqa: E402

BTC_TRIGGER = Decimal("60000")  # a market entry: the one in flight when the child is killed
ETH_TRIGGER = Decimal("3000")  # a limit entry 50 ticks under its trigger: the resting order
ETH_OFFSET_TICKS = -50


def conditions() -> list[TradeCondition]:
    until = datetime.now() + timedelta(hours=1)
    return [
        TradeCondition(id="kill9-btc", coin="BTC", direction="LONG", trigger_price=BTC_TRIGGER,
                       trigger_type="ABOVE", stop_loss_pct="0.02", take_profit_pct="0.015",
                       position_size_usd=200, valid_until=until),
        TradeCondition(id="kill9-eth", coin="ETH", direction="LONG", trigger_price=ETH_TRIGGER,
                       trigger_type="ABOVE", stop_loss_pct="0.02", take_profit_pct="0.015",
                       position_size_usd=100, valid_until=until, entry_type="limit",
                       entry_offset_ticks=ETH_OFFSET_TICKS, entry_timeout_s=24 * 3600),
    ]


def main() -> None:
    data_dir, config_path = Path(sys.argv[1]), Path(sys.argv[2])
    configure_logging("INFO", data_dir / "logs")
    engine = build_engine(json.loads(config_path.read_text()), data_dir=data_dir).start()
    for condition in conditions():
        engine.sniper.add_condition(condition)
    if not engine.wait_idle(30):
        raise SystemExit("child engine did not settle")
    print("ARMED", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()

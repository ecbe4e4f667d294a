"""One `churnguard train` on a simulated business: the summary, headline figures and time.

Usage: python -m bench.quality.train_once [CLIENTS]   (36 months, seed 7; a temporary MLflow store)

The log shows each pipeline step's wall and CPU seconds; the last line is the figures as JSON.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from churnguard.modeling.registry import Registry
from churnguard.synth.business import simulate
from churnguard.training.dataset import TrainOptions
from churnguard.training.report import format_summary
from churnguard.training.train import train


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    clients = int(args[0]) if args else 1000
    logging.basicConfig(format="%(asctime)s %(message)s", level=logging.WARNING)
    logging.getLogger("churnguard.training").setLevel(logging.INFO)  # each step's wall and CPU
    home = Path(tempfile.mkdtemp(prefix="churnguard-train-once-"))
    business = simulate(clients=clients, months=36, seed=7)
    registry = Registry(f"sqlite:///{home / 'mlflow.db'}", home / "mlartifacts")
    wall, cpu = time.perf_counter(), time.process_time()
    result = train(business.data, registry, home / "models", TrainOptions(), business.truth)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(format_summary(result))
    m = result.test.metrics
    figures: dict[str, object] = {
        k: round(m[k], 4) for k in ("roc_auc", "pr_auc", "brier", "log_loss", "ece")
    }
    figures |= {
        "base_brier": round(m["base_rate"] * (1 - m["base_rate"]), 4),
        "ece_interval": [round(v, 4) for v in result.test.intervals["ece"]],
        "oracle_ratio": round(result.oracle.ratio, 4) if result.oracle else None,
        "chosen": result.chosen.name,
        "calibration": result.model.calibrator.method,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
    }
    print("JSON", json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Where a local Spark run's time goes, stage by stage: the JVM's CPU, the Python workers', idle.

``StageProfile`` samples, every 0.2 s, the CPU seconds of the driver JVM (its own threads: the
tasks' JVM side, shuffle, Parquet, GC) and of its Python workers (every descendant process:
``pyspark.daemon`` and the workers it forks), and reads Spark's event log for each stage's start,
end and tasks. Per stage: wall, tasks, JVM CPU, Python CPU, and idle core-seconds
(cores x wall - both CPUs). Used by ``bench.spark_bench --stages``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TICK = os.sysconf("SC_CLK_TCK")


def event_log_conf(folder: Path) -> list[str]:
    """Spark settings that write a plain (uncompressed, unrolled) event log into folder."""
    folder.mkdir(parents=True, exist_ok=True)
    return [
        "spark.eventLog.enabled=true",
        f"spark.eventLog.dir=file://{folder}",
        "spark.eventLog.compress=false",
        "spark.eventLog.rolling.enabled=false",
    ]


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) of one process (0 when it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def _descendants(root: int) -> list[int]:
    """Every process below root (its children, their children...)."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                ppid = int(Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


@dataclass
class StageProfile:
    """CPU samples of a local Spark's JVM (pid) and its Python workers, in a thread."""

    jvm: int
    samples: list[tuple[float, float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> StageProfile:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        python: dict[int, float] = {}  # last CPU seen per worker: a worker that exits keeps it
        while not self._stop.is_set():
            for pid in _descendants(self.jvm):
                python[pid] = max(python.get(pid, 0.0), _cpu(pid))
            self.samples.append((time.time(), _cpu(self.jvm), sum(python.values())))
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        time.sleep(0.3)

    def stages(self, event_log: Path, cores: int) -> list[dict[str, Any]]:
        """Each completed stage: name, tasks, wall, JVM CPU, Python CPU, idle core-seconds."""
        out = []
        for stage in _completed_stages(event_log):
            start, end = stage["Submission Time"] / 1000, stage["Completion Time"] / 1000
            jvm, python = self._between(start, end)
            wall = end - start
            out.append(
                {
                    "stage": stage["Stage ID"],
                    "name": stage["Stage Name"].split(" at ")[0],
                    "tasks": stage["Number of Tasks"],
                    "wall_s": round(wall, 2),
                    "jvm_cpu_s": round(jvm, 2),
                    "python_cpu_s": round(python, 2),
                    "idle_core_s": round(max(0.0, cores * wall - jvm - python), 2),
                }
            )
        return out

    def _between(self, start: float, end: float) -> tuple[float, float]:
        inside = [s for s in self.samples if start - 0.2 <= s[0] <= end + 0.2]
        if len(inside) < 2:
            return 0.0, 0.0
        return inside[-1][1] - inside[0][1], inside[-1][2] - inside[0][2]


def _completed_stages(folder: Path) -> list[dict[str, Any]]:
    """The 'Stage Info' of every SparkListenerStageCompleted event in the folder's logs."""
    found = []
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            if '"SparkListenerStageCompleted"' in line:
                found.append(json.loads(line)["Stage Info"])
    return sorted(found, key=lambda s: s["Submission Time"])


def stage_lines(stages: list[dict[str, Any]]) -> list[str]:
    """The stages as aligned text lines."""
    head = f"{'stage':>5} {'name':<22} {'tasks':>5} {'wall s':>7} {'JVM CPU':>8} "
    head += f"{'Python CPU':>10} {'idle core-s':>11}"
    rows = [
        f"{s['stage']:>5} {s['name'][:22]:<22} {s['tasks']:>5} {s['wall_s']:>7.1f} "
        f"{s['jvm_cpu_s']:>8.1f} {s['python_cpu_s']:>10.1f} {s['idle_core_s']:>11.1f}"
        for s in stages
    ]
    return [head, *rows]

"""What the metrics cost (issue 19): CPU per update of each writer, on a 2-VM lab (root).

- the notify reader's metrics thread, per VRRP transition: count it, rebuild and write the
  textfile (`metrics.record_transitions`, config cached), in this process on a lab VM's files;
- the notify reader's own loop per FIFO line, with and without the metrics hook (it only queues);
- notify reader, per periodic survey (`metrics.survey_now`: listen 1.5 x advert_int for adverts,
  ARP for each IPv4 VIP, write), in a thread inside the VM's namespace (CPU of that thread only);
- `vipdrain metrics` as a process (interpreter start-up included), CPU of the child;
- the import of vipdrain.metrics (prometheus_client) in a fresh interpreter: what a drain pays
  with metrics on (with them off it imports nothing).
Writes bench/results/metrics_cost.json.

    python bench/metrics_cost.py [--repeats 50] [--advert-int 1]
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vipdrain import metrics
from vipdrain.config import load_config
from vipdrain.lab.cluster import Lab
from vipdrain.layout import Layout
from vipdrain.notify import Transition, follow_fifo

OUT = Path(__file__).parent / "results" / "metrics_cost.json"


def thread_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stats_ms(values: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values)
    return {"median_ms": round(statistics.median(ms), 2), "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 2),
            "max_ms": round(ms[-1], 2), "n": len(ms)}


def measured(fn: Callable[[], object]) -> tuple[float, float]:
    """(CPU s of the calling thread, wall s) of one call."""
    cpu, wall = thread_cpu(), time.monotonic()
    fn()
    return thread_cpu() - cpu, time.monotonic() - wall


def reader_seconds_per_line(root: Path, name: str, hooked: bool, load: Callable[[], Any], lines: int = 200) -> float:
    """Wall seconds per FIFO line of the notify reader's own loop (state file, log, holder file),
    with the metrics writer's `put` as its hook or without a hook."""
    layout = Layout(root=root)
    writer = metrics.TransitionWriter(layout, load) if hooked else None
    text = [f'INSTANCE "{name}" {"MASTER" if i % 2 else "BACKUP"} 150\n' for i in range(lines)]
    started = time.perf_counter()
    follow_fifo(layout, text, on_transition=writer.put if writer else None)
    took = time.perf_counter() - started
    if writer:
        writer.close(timeout=30)
    return took / lines


def run(repeats: int, advert_int: float) -> dict[str, Any]:
    with Lab.up(nodes=2, advert_int=advert_int) as lab:
        vm = lab.vms[1]
        directory = vm.root / "textfile"
        directory.mkdir()
        vm.write_config({"vipdrain": {"metrics": {"textfile_dir": str(directory), "survey_interval": 0}}})
        load = metrics.ConfigCache(vm.layout.config_file,
                                   functools.partial(load_config, interface_of=lambda _ip: "eth0"))
        cfg = load()
        name = cfg.vips[0].name

        transition = [measured(lambda: metrics.record_transitions(
            vm.layout, [Transition(name, "BACKUP", 150, time.time())], load)) for _ in range(repeats)]
        reader = {hooked: reader_seconds_per_line(vm.root / "reader", name, hooked, load) for hooked in (False, True)}

        def survey_in_vm() -> tuple[float, float]:
            return measured(lambda: metrics.survey_now(cfg, vm.layout))

        survey = [vm.call(survey_in_vm, timeout=60) for _ in range(max(5, repeats // 5))]

        process = []
        for _ in range(max(5, repeats // 5)):
            cpu, wall = children_cpu(), time.monotonic()
            vm.vipdrain("metrics")
            process.append((children_cpu() - cpu, time.monotonic() - wall))

    def import_cost() -> float:
        """CPU of importing vipdrain.metrics into a process that has imported the drain already."""
        code = ("import time, vipdrain.cli, vipdrain.drain, vipdrain.observe; t = time.process_time(); "
                "import vipdrain.metrics; print(time.process_time() - t)")
        return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                    check=True).stdout)

    imports = [import_cost() for _ in range(10)]
    return {
        "machine": {"python": platform.python_version(), "cpus": _cpus(), "kernel": platform.release()},
        "advert_int": advert_int,
        "metrics_writer_per_transition": {"cpu": stats_ms([c for c, _ in transition]),
                                          "wall": stats_ms([w for _, w in transition])},
        "notify_reader_per_line_us": {"without_metrics": round(reader[False] * 1e6, 1),
                                      "with_metrics_queued": round(reader[True] * 1e6, 1)},
        "notify_reader_per_survey": {"cpu": stats_ms([c for c, _ in survey]), "wall": stats_ms([w for _, w in survey])},
        "vipdrain_metrics_process": {"cpu": stats_ms([c for c, _ in process]),
                                     "wall": stats_ms([w for _, w in process])},
        "import_vipdrain_metrics_over_drain": {"cpu": stats_ms(imports)},
    }


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--advert-int", type=float, default=1.0)
    args = parser.parse_args()
    result = run(args.repeats, args.advert_int)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

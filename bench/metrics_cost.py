"""What the metrics cost (issue 19): CPU per update of each writer, on a 2-VM lab (root).

- notify reader, per VRRP transition: load the config, count the transition, rebuild and write
  the textfile (`metrics.record_transition`), in this process on a lab VM's files;
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
from vipdrain.notify import Transition

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


def run(repeats: int, advert_int: float) -> dict[str, Any]:
    with Lab.up(nodes=2, advert_int=advert_int) as lab:
        vm = lab.vms[1]
        directory = vm.root / "textfile"
        directory.mkdir()
        vm.write_config({"vipdrain": {"metrics": {"textfile_dir": str(directory), "survey_interval": 0}}})
        load = functools.partial(load_config, vm.layout.config_file, interface_of=lambda _ip: "eth0")
        cfg = load()
        name = cfg.vips[0].name

        transition = [measured(lambda: metrics.record_transition(vm.layout, Transition(name, "BACKUP", 150,
                                                                                       time.time()), load))
                      for _ in range(repeats)]

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
        "notify_reader_per_transition": {"cpu": stats_ms([c for c, _ in transition]),
                                         "wall": stats_ms([w for _, w in transition])},
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

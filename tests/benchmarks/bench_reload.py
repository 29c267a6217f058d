"""Hot reload: from a change on disk to the new version active, with 200 and 1,000 playbooks loaded.

Not a test: run it with ``.venv/bin/python tests/benchmarks/bench_reload.py [--changes 50]``. For each
size it writes that many playbooks (the start-up benchmark's playbook) and runs, in this process, the
daemon's reload machinery (:class:`kurative.execution.reloading.LiveRules` with its
:class:`~kurative.execution.reloading.Reloader` watching the folder) on a SQLite journal. Two layouts:

1. plain files: one file is rewritten with its version raised;
2. a Kubernetes ConfigMap volume: the playbooks sit in a timestamped ``..2026_...`` folder reached
   through ``..data``, and a change is the kubelet's swap (a new folder with every file, one of them
   changed; ``..data`` renamed over; the old folder removed).

It reports the time from the write (or the rename) to the new ruleset being swapped in, p50/p99 over
``--changes`` changes. Baseline, in the same run: a cold load of the same folder (every file read and
checked, the ruleset compiled, the versions recorded), which is what a reload costs without the
per-file digests. The last line is one JSON object. Target: one changed file active in < 300 ms with
1,000 playbooks loaded.

Measured on the 2-core development machine (two runs, 50 changes each, load about 1):

| playbooks | layout | p50 | p99 | cold load |
|---|---|---|---|---|
| 200 | file | 40 ms | 51-52 ms | 217-225 ms |
| 200 | ConfigMap swap | 61-63 ms | 72-83 ms | 190-203 ms |
| 1,000 | file | 67-69 ms | 137-151 ms | 959-994 ms |
| 1,000 | ConfigMap swap | 136-137 ms | 210-213 ms | 979-989 ms |

Most of a ConfigMap swap's time is reading every file again: the kubelet has just written them all, so
none has settled (see ``SETTLED_NS`` in :mod:`kurative.execution.reloading`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_startup import PLAYBOOK

from kurative.execution.matcher import ActiveRuleset
from kurative.execution.reloading import LiveRules, Reloader
from kurative.execution.runner import PlaybookCache
from kurative.journal import open_journal
from kurative.logging import LoggingSettings, Redactor, configure_logging

TARGET_MS = 300.0
SIZES = (200, 1000)


def text(n: int, version: int) -> str:
    return PLAYBOOK.format(n=n, team=n % 20).replace("  version: 1\n", f"  version: {version}\n", 1)


def write_plain(folder: Path, count: int) -> Path:
    folder.mkdir()
    for n in range(count):
        (folder / f"bench-{n:04d}.yaml").write_text(text(n, 1))
    return folder


class ConfigMap:
    """A ConfigMap volume as the kubelet lays it out, updated as the kubelet updates it."""

    def __init__(self, folder: Path, count: int) -> None:
        self.folder, self.count, self.generation = folder, count, 0
        self.versions = dict.fromkeys(range(count), 1)
        folder.mkdir()
        self._swap()
        for n in range(count):
            (folder / f"bench-{n:04d}.yaml").symlink_to(f"..data/bench-{n:04d}.yaml")

    def _swap(self) -> float:
        """Lay out the next generation; returns the moment ``..data`` points at it."""
        self.generation += 1
        target = self.folder / f"..2026_12_01_10_00_00.{self.generation}"
        target.mkdir()
        for n, version in self.versions.items():
            (target / f"bench-{n:04d}.yaml").write_text(text(n, version))
        link = self.folder / "..data"
        old = link.resolve() if link.exists() else None
        (self.folder / "..data_tmp").symlink_to(target.name)
        swapped = time.perf_counter()
        os.replace(self.folder / "..data_tmp", link)  # the moment the new content is visible
        if old is not None:
            for leftover in old.iterdir():
                leftover.unlink()
            old.rmdir()
        return swapped

    def prepare(self, n: int) -> None:
        self.versions[n] += 1

    def swap(self) -> float:
        return self._swap()


async def measure(folder: Path, count: int, changes: int, layout: str) -> dict[str, float]:
    journal = await open_journal(f"sqlite:///{folder / f'{layout}-{count}.db'}", migrate=True)
    rules_dir = folder / f"{layout}-{count}"
    configmap = ConfigMap(rules_dir, count) if layout == "configmap" else None
    if configmap is None:
        write_plain(rules_dir, count)
    swapped: asyncio.Queue[float] = asyncio.Queue()

    def on_swap(active: ActiveRuleset) -> None:
        swapped.put_nowait(time.perf_counter())

    rules = LiveRules([str(rules_dir)], journal, PlaybookCache(journal), swapped=on_swap)
    cold_start = time.perf_counter()
    await rules.reload("start")
    cold = time.perf_counter() - cold_start
    await swapped.get()
    stop = asyncio.Event()
    reloader = Reloader(rules, watch=True)
    task = asyncio.create_task(reloader.run(stop))
    await asyncio.sleep(0.5)  # the watch is set up
    latencies = []
    versions = dict.fromkeys(range(count), 1)
    for change in range(changes):
        n = (change * 7919) % count
        versions[n] += 1
        if configmap is not None:
            configmap.prepare(n)
            written = await asyncio.to_thread(configmap.swap)
        else:
            payload = text(n, versions[n])
            written = time.perf_counter()
            await asyncio.to_thread((rules_dir / f"bench-{n:04d}.yaml").write_text, payload)
        active_at = await asyncio.wait_for(swapped.get(), 30)
        latencies.append((active_at - written) * 1000)
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 10)
    await journal.close()
    latencies.sort()
    return {
        "cold_load_ms": round(cold * 1000, 1),
        "p50_ms": round(statistics.median(latencies), 1),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1),
    }


async def run(changes: int, sizes: tuple[int, ...]) -> dict[str, object]:
    results: dict[str, object] = {"benchmark": "reload", "changes": changes}
    with tempfile.TemporaryDirectory(prefix="kurative-bench-reload-") as tmp:
        for count in sizes:
            for layout in ("file", "configmap"):
                figures = await measure(Path(tmp), count, changes, layout)
                ratio = figures["p50_ms"] / figures["cold_load_ms"]
                print(
                    f"{count} playbooks, {layout}: change to active p50 {figures['p50_ms']} ms, "
                    f"p99 {figures['p99_ms']} ms; cold load {figures['cold_load_ms']} ms "
                    f"(p50 is {ratio:.2f}x a cold load)"
                )
                for key, value in figures.items():
                    results[f"{layout}_{count}_{key}"] = value
    largest = max(sizes)
    results["target_ms"] = TARGET_MS
    results["target_met"] = all(
        float(str(results[f"{layout}_{largest}_p99_ms"])) < TARGET_MS for layout in ("file", "configmap")
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args()
    configure_logging(LoggingSettings(format="json", level="error"), Redactor())
    print(json.dumps(asyncio.run(run(args.changes, tuple(args.sizes)))))


if __name__ == "__main__":
    main()

"""Where variants run: a local process pool, or a Dask distributed cluster.

Both implement `map_unordered(function, tasks)`, yielding `(index, result, attempts)` as tasks
finish (see xmargin.analysis.variants). A task is `function(*task)`; its values are small (a config,
a folder path): every worker reads the dataset itself, by the path in the config.

Crashed workers: the local pool keeps at most one task per worker in flight, so when a worker
process dies (killed, out of memory, a segfault) the tasks in flight are the ones that were
running; a new pool runs each of them again alone, and one that kills its worker `attempts` times
while alone is reported as `WorkerLost`. Dask reschedules the tasks of a lost worker itself (its
`distributed.scheduler.allowed-failures`, 3 by default) and reports `KilledWorker` after that.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from xmargin.analysis.variants import WorkerLost
from xmargin.errors import ConfigError


# "forkserver": workers are forked from a clean server process that imported xmargin once (no
# threads, no parent memory), so starting a pool costs milliseconds; "spawn" where it is missing
_START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def machine_cores() -> int:
    """The cores this process may run on (the default number of local workers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class LocalPool:
    """A pool of `workers` processes (default: the machine's cores), forked from a clean forkserver
    (or spawned) so no worker inherits the parent's threads or memory.

    When a worker dies, every task in flight is a suspect: each is run again alone, so only a task
    that kills its worker while running alone counts a death against it; after `attempts` such
    deaths it is reported as `WorkerLost`, the others finish normally."""

    def __init__(self, workers: int | None = None, attempts: int = 3):
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers {workers}: give 1 or more.")
        self.workers = workers or machine_cores()
        self.attempts = attempts

    def map_unordered(self, function, tasks):
        tasks = list(tasks)
        pending, suspects = deque(range(len(tasks))), deque()
        starts, deaths = [0] * len(tasks), [0] * len(tasks)
        context = multiprocessing.get_context(_START_METHOD)
        if _START_METHOD == "forkserver":  # new workers (and a new pool after a crash) start in milliseconds
            context.set_forkserver_preload(["xmargin.analysis.variants", "xmargin.sim.runner"])
        while pending or suspects:
            pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
            running: dict = {}
            broken = False
            try:
                while (pending or suspects or running) and not broken:
                    while (suspects and not running) or (not suspects and pending and len(running) < self.workers):
                        index = (suspects or pending).popleft()
                        starts[index] += 1
                        running[pool.submit(function, *tasks[index])] = index
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        try:
                            result = future.result()
                        except BrokenProcessPool:
                            broken = True
                            continue
                        index = running.pop(future)
                        yield index, result, starts[index]
                if broken:  # the tasks still in flight were running in the pool that died
                    alone = len(running) == 1
                    for index in sorted(running.values()):
                        deaths[index] += alone
                        if deaths[index] >= self.attempts:
                            yield index, WorkerLost(f"the worker process died {deaths[index]} times while running "
                                                    "this variant alone (killed, out of memory or crashed)"), \
                                starts[index]
                        else:
                            suspects.append(index)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)


class DaskExecutor:
    """Tasks on a Dask distributed cluster: `scheduler` ("tcp://HOST:PORT"; default the
    DASK_SCHEDULER_ADDRESS environment variable), connected to at once (an unreachable scheduler
    refuses the sweep before anything is written), or an existing `client`. Needs `xmargin[dask]`,
    and xmargin, the dataset and the output folder reachable by the same paths on every worker.
    `close()` (or `with DaskExecutor(...)`) closes a connection it opened."""

    def __init__(self, scheduler: str | None = None, client=None, timeout: str = "10s"):
        self.scheduler = scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
        if client is None and not self.scheduler:
            raise ConfigError("--executor dask needs the scheduler: --scheduler tcp://HOST:PORT or the "
                              "DASK_SCHEDULER_ADDRESS environment variable.")
        try:
            from distributed import Client
        except ImportError as exc:
            raise ConfigError("--executor dask needs Dask distributed: pip install 'xmargin[dask]'.") from exc
        self.owned = client is None
        if client is None:
            try:
                client = Client(self.scheduler, timeout=timeout)
            except ValueError as exc:  # not an address at all (no port, unknown protocol)
                raise ConfigError(f"--scheduler {self.scheduler!r}: not a scheduler address ({exc}); give "
                                  "tcp://HOST:PORT, e.g. tcp://127.0.0.1:8786.") from exc
            except OSError as exc:
                raise ConfigError(f"cannot reach the Dask scheduler at {self.scheduler} ({exc}); start it (`dask "
                                  "scheduler`) and its workers, or check --scheduler / DASK_SCHEDULER_ADDRESS.") \
                    from exc
        self.client = client

    def close(self) -> None:
        if self.owned:
            self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def map_unordered(self, function, tasks):
        from distributed import KilledWorker, as_completed

        futures = {}
        try:
            for index, task in enumerate(tasks):
                futures[self.client.submit(function, *task, pure=False)] = index
            for future in as_completed(futures):
                index = futures[future]
                try:
                    result = future.result()
                except KilledWorker as exc:
                    result = WorkerLost(f"Dask lost the worker running this variant too often ({exc})")
                except Exception as exc:  # e.g. a worker without xmargin: the task never reached run_variant
                    result = WorkerLost(f"Dask could not run this variant: {type(exc).__name__}: {exc}")
                yield index, result, 1
        finally:
            for future in futures:
                future.cancel()

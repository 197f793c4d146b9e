"""Block tasks on dask.distributed: one task per block, submitted with ``Client.submit``.

The engine is dask.distributed itself: a ``LocalCluster`` of worker processes on one machine,
or any running scheduler (started with dask-jobqueue, dask-kubernetes or ``dask scheduler``)
whose workers see the same file system. Tasks are plain functions of picklable arguments;
each is wrapped in :func:`vemcell.blockwise.plan.ledgered`, so a finished task is never run
twice, and the scheduler retries a task whose worker died (``allowed_failures``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from vemcell.blockwise.plan import Work, ledgered
from vemcell.errors import VemcellError

#: Least memory a worker is given: a 256³ segmentation block with a 32-voxel halo holds about
#: 0.6 GB (six classes), and dask pauses a worker at 80 % of its limit.
MIN_WORKER_MEMORY = 1_000_000_000


@contextlib.contextmanager
def connect(
    workers: int | None = None,
    scheduler: str | None = None,
    memory_limit: str | int | None = None,
) -> Iterator[Any]:
    """A ``distributed.Client``: to ``scheduler`` when given, else on a new ``LocalCluster``.

    The local cluster has ``workers`` single-threaded worker processes (default 2), each
    allowed ``memory_limit`` (a size such as ``"3GB"``: the whole budget split between the
    workers) and its HTTP server (the dashboard when bokeh is installed) on a free port.
    """
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="30s")
        except OSError as exc:
            raise VemcellError(f"No dask scheduler answered at {scheduler} ({exc}).") from None
        try:
            yield client
        finally:
            client.close()
        return
    n = int(workers or 2)
    if n < 1:
        raise VemcellError(f"--workers must be 1 or more, not {n}.")
    per_worker: Any = "auto"
    if memory_limit:
        from dask.utils import parse_bytes

        try:
            total = parse_bytes(memory_limit) if isinstance(memory_limit, str) else memory_limit
        except ValueError:
            raise VemcellError(
                f"--memory-limit must be a size such as 6GB, not {memory_limit!r}."
            ) from None
        per_worker = int(total) // n
        if per_worker < MIN_WORKER_MEMORY:
            raise VemcellError(
                f"--memory-limit {memory_limit} leaves each of the {n} workers "
                f"{per_worker / 1e6:.0f} MB; a worker needs at least "
                f"{MIN_WORKER_MEMORY / 1e9:g} GB (fewer workers or smaller --block)."
            )
    cluster = LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=True,
        memory_limit=per_worker,
        dashboard_address="127.0.0.1:0",  # a free port, never 8787 taken
        silence_logs=40,
    )
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


class Runner:
    """Submit one ledgered task per item and report progress per finished block."""

    def __init__(self, client: Any, work: Work, progress: Any = None) -> None:
        self.client = client
        self.work = work
        self.progress = progress
        self.seconds: dict[str, float] = {}
        self._floor = 0.0  # fraction of the current progress stage already reported

    def begin(self) -> None:
        """A new progress stage starts: its fraction starts again from 0."""
        self._floor = 0.0

    def map(
        self,
        stage: str,
        fn: Callable[..., Any],
        items: Sequence[Any],
        *args: Any,
        key: Callable[[Any], str] = lambda it: str(getattr(it, "index", it)),
        label: str = "block",
    ) -> list[Any]:
        """``[fn(item, *args) for item in items]`` as tasks; results in the order of items."""
        from distributed import as_completed

        t0 = time.perf_counter()
        ledger = str(self.work.ledger(stage))
        futures = [
            self.client.submit(
                ledgered,
                ledger,
                key(it),
                fn,
                it,
                *args,
                key=f"{stage}-{key(it)}-{id(self)}",
                retries=2,
            )
            for it in items
        ]
        where = {f.key: k for k, f in enumerate(futures)}
        results: list[Any] = [None] * len(futures)
        total = len(futures)
        for done, fut in enumerate(as_completed(futures), start=1):
            try:
                results[where[fut.key]] = _result(fut)
            except VemcellError:
                self._cancel(futures)
                raise
            except Exception as exc:
                self._cancel(futures)
                raise VemcellError(
                    f"A {stage} task failed on a worker ({type(exc).__name__}: {exc})."
                ) from exc
            if self.progress is not None:
                # several passes share one stage: each takes half of what is left of it, so
                # the bar never goes back (the stage reports 1.0 when it ends)
                share = self._floor + (1.0 - self._floor) * 0.5 * done / max(1, total)
                self.progress.update(share, f"{stage}: {label} {done}/{total}", force=done == total)
        self._floor += (1.0 - self._floor) * 0.5
        self.seconds[stage] = round(self.seconds.get(stage, 0.0) + time.perf_counter() - t0, 3)
        return results

    def one(self, stage: str, fn: Callable[..., Any], *args: Any) -> Any:
        """One ledgered task (a step that needs a whole small array on one worker)."""
        return self.map(stage, lambda _k, *a: fn(*a), ["all"], *args, key=str, label="step")[0]

    def _cancel(self, futures: list[Any]) -> None:
        with contextlib.suppress(Exception):
            self.client.cancel(futures)


def _result(fut: Any, attempts: int = 5) -> Any:
    """A finished task's result. A task that raised re-raises at once; a result that could not
    be fetched (its worker died after finishing: the scheduler recomputes it elsewhere, or the
    client's connection hiccups) is asked for again instead of failing the run."""
    for attempt in range(attempts):
        try:
            return fut.result()
        except Exception:
            if fut.status == "error" or attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")

"""Batches through a pool of Ray actors, results in input order: how tokenization and curate's cleaning pass
spread per-document work over a machine's cores or a cluster's nodes.

Each actor is one instance of a body class (built once: a tokenizer parsed, a language model loaded) and a
batch goes to the actor with the fewest calls queued.  The driver waits only for the oldest call, so the
output order is the input order however the actors are scheduled, and everything downstream is a function of
the input alone, whatever the number of workers.  At most ``queued_per_actor`` calls wait per actor (one
running, one queued, so no actor idles while the driver catches up), which bounds what the object store holds
to a window of the corpus, never all of it.

A new Ray worker process imports Ray, pyarrow and the body's libraries (1.5-3 s).  Given ``local``, the
driver runs batches itself with the same body until the first actor is up instead of waiting; the results are
the same whoever made them.

Why not Ray Data: its streaming executor (read and footer tasks, stats and autoscaling actors, a scheduling
loop in the driver, a copy of every block through the object store) took 40% of the shard stage's time,
kept a second worker from helping, and added 1.3 GB of processes to the demo's peak
(``benchmarks/bench_shard.py``).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

Batch = TypeVar("Batch")


def actor_count(requested: int | None) -> int | None:
    """How many workers a stage runs: ``requested`` (the spec's ``parallel.workers``), else one per CPU of the
    Ray runtime it runs on: the open session's, or this machine's (what ``ray_session()`` would start); None for
    a cluster named by ``RAY_ADDRESS`` not joined yet (only the cluster knows its CPUs).  One worker is the
    driver itself, without Ray."""
    import ray

    if requested:
        return requested
    if ray.is_initialized():
        return max(1, int(ray.cluster_resources().get("CPU", 1)))
    if os.environ.get("RAY_ADDRESS"):
        return None
    return os.cpu_count() or 1


def ordered_actor_map(
    batches: Iterable[Batch],
    body: type,
    arguments: tuple[Any, ...],
    method: str,
    count: int | None,
    *,
    queued_per_actor: int = 2,
    local: Callable[[Batch], Any] | None = None,
    on_lost: Callable[[Batch], Any] | None = None,
) -> Iterator[Any]:
    """``body(*arguments).<method>(batch)`` for each batch, on ``count`` actors of one CPU each (None: one per
    CPU of the cluster), results in input order; call inside ``ray_session()``.  The actors are killed when
    the iteration ends, however it ends.

    An actor can die under a batch (a crash in native code, the kernel killing it for its memory).  Without
    ``on_lost`` that ends the map with Ray's error.  With it, the batch the actor died running gives
    ``on_lost(batch)`` instead, the actor is replaced, and the batches queued behind it, which never ran, run
    again on the replacement: one hostile input costs its own batch, not the run."""
    import ray

    workers = count or max(1, int(ray.cluster_resources().get("CPU", 1)))
    actor_class = ray.remote(num_cpus=1)(body)
    actors = [actor_class.remote(*arguments) for _ in range(workers)]
    starting = [actor.__ray_ready__.remote() for actor in actors]
    queued = [0] * workers
    calls: deque[_Call] = deque()  # oldest first
    dead: set[Any] = set()  # handles of the actors known to have died (a handle hashes by its actor's id)

    def submit(batch: Batch, actor: int) -> _Call:
        kept = batch if on_lost is not None else None  # the others do not hold their window of batches twice
        return _Call(getattr(actors[actor], method).remote(batch), kept, actor, actors[actor])

    def collect() -> Any:
        call = calls.popleft()
        if call.actor is None:  # made by the driver
            return call.result
        queued[call.actor] -= 1
        while True:
            try:
                return ray.get(call.result)
            except ray.exceptions.RayActorError as error:
                if on_lost is None or error.actor_init_failed:  # a body that cannot start is no batch's doing
                    raise
                if call.handle in dead:  # queued behind the batch its actor died on: it never ran
                    call = submit(call.batch, call.actor)
                    continue
                dead.add(call.handle)  # calls come back in input order, an actor's too: this one killed it
                actors[call.actor] = actor_class.remote(*arguments)
                return on_lost(call.batch)

    try:
        for batch in batches:
            if len(calls) == workers * queued_per_actor:
                yield collect()
            if local is not None and ray.wait(starting, num_returns=1, timeout=0)[0]:
                local = None  # an actor is up: the driver goes back to feeding and collecting
            if local is not None:
                calls.append(_Call(local(batch), None, None, None))
                continue
            actor = queued.index(min(queued))
            calls.append(submit(batch, actor))
            queued[actor] += 1
        while calls:
            yield collect()
    finally:
        for actor in actors:
            ray.kill(actor)


@dataclass
class _Call:
    result: Any  # an ObjectRef, or the result itself when the driver made it (``actor`` None)
    batch: Any  # with ``on_lost``, kept until collected: to run it again if its actor died before reaching it
    actor: int | None
    handle: Any  # the actor it was sent to (a replacement takes the dead one's index)

"""Reading a split for training: deterministic shuffle, disjoint rank/worker partitions, resumable position.

``SplitReader`` memory-maps the split's Arrow files (nothing is loaded until a row is read) and serves rows in
one order per ``(seed, epoch)``: a permutation of all row indices, the same on every machine.  Partition ``p``
of ``P = world_size * num_workers`` (``p = rank * num_workers + worker``) takes every P-th row of that order,
so the partitions are disjoint, together complete, and differ in length by at most one row.  The reader's
``state_dict`` is its epoch and how many rows of its partition it has handed out; a trainer restarted from a
checkpoint loads it and carries on with the next row, not the epoch's first.

``TorchSplitDataset`` wraps it as a PyTorch ``IterableDataset`` (torch is optional: imported only there).  It
takes the rank from ``torch.distributed`` and the worker from the ``DataLoader``; its ``state_dict`` /
``load_state_dict`` follow the protocol of torchdata's ``StatefulDataLoader``, which saves them per worker.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa


def split_files(split_dir: Path) -> list[Path]:
    """The split's Arrow files in their HF order (``state.json``)."""
    state = json.loads((split_dir / "state.json").read_text(encoding="utf-8"))
    return [split_dir / entry["filename"] for entry in state["_data_files"]]


def position_ids(cu_seqlens: np.ndarray) -> np.ndarray:
    """Positions that restart at every document boundary of a packed row (for RoPE / learned positions)."""
    lengths = np.diff(cu_seqlens)
    return np.arange(int(cu_seqlens[-1])) - np.repeat(cu_seqlens[:-1], lengths)


@dataclass(frozen=True)
class Partition:
    rank: int = 0
    world_size: int = 1
    worker: int = 0
    num_workers: int = 1

    @property
    def index(self) -> int:
        return self.rank * self.num_workers + self.worker

    @property
    def count(self) -> int:
        return self.world_size * self.num_workers

    def __post_init__(self) -> None:
        if not (0 <= self.rank < self.world_size and 0 <= self.worker < self.num_workers):
            raise ValueError(f"invalid partition {self}")


class SplitReader:
    """Rows of one shard split, for one partition, in a seeded order; token lists come out as numpy arrays."""

    def __init__(
        self,
        split_dir: str | Path,
        *,
        seed: int = 0,
        shuffle: bool = True,
        partition: Partition = Partition(),
        columns: list[str] | None = None,
    ) -> None:
        self.seed = seed
        self.shuffle = shuffle
        self.partition = partition
        self.epoch = 0
        self.position = 0
        self._batches: list[pa.RecordBatch] = []
        for path in split_files(Path(split_dir)):
            with pa.ipc.open_stream(pa.memory_map(str(path))) as stream:
                self._batches.extend(stream)
        self.columns = columns or (self._batches[0].schema.names if self._batches else [])
        self._starts = np.cumsum([0] + [b.num_rows for b in self._batches])
        self._numeric: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = {}

    @property
    def total_rows(self) -> int:
        return int(self._starts[-1])

    def order(self, epoch: int) -> np.ndarray:
        """Every row index of the split in the order of ``epoch`` (identity when not shuffling)."""
        if not self.shuffle:
            return np.arange(self.total_rows)
        return np.random.default_rng([self.seed, epoch]).permutation(self.total_rows)

    def indices(self) -> np.ndarray:
        """This partition's row indices for the current epoch."""
        return self.order(self.epoch)[self.partition.index :: self.partition.count]

    def __len__(self) -> int:
        return len(self.indices())

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.position = epoch, 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        indices = self.indices()
        while self.position < len(indices):
            row = self.row(int(indices[self.position]))
            self.position += 1
            yield row

    def row(self, index: int) -> dict[str, Any]:
        batch_index = int(np.searchsorted(self._starts, index, side="right")) - 1
        batch, offset = self._batches[batch_index], index - int(self._starts[batch_index])
        row: dict[str, Any] = {}
        for name in self.columns:
            column = batch.column(name)
            if pa.types.is_list(column.type) and pa.types.is_integer(column.type.value_type):
                offsets, values = self._numeric_list(batch_index, name, column)
                row[name] = values[offsets[offset] : offsets[offset + 1]]
            else:
                row[name] = column[offset].as_py()
        return row

    def _numeric_list(self, batch_index: int, name: str, column: pa.ListArray) -> tuple[np.ndarray, np.ndarray]:
        """Zero-copy numpy views of a list column's offsets and values (read-only: they map the file)."""
        key = (batch_index, name)
        if key not in self._numeric:
            self._numeric[key] = (column.offsets.to_numpy(), column.values.to_numpy())
        return self._numeric[key]

    def state_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "shuffle": self.shuffle,
            "epoch": self.epoch,
            "position": self.position,
            "partition": [self.partition.index, self.partition.count],
            "total_rows": self.total_rows,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue where a saved reader stopped; refuses a state saved for another split or partitioning."""
        expected = {k: v for k, v in self.state_dict().items() if k not in ("epoch", "position")}
        found = {k: (list(v) if k == "partition" else v) for k, v in state.items() if k in expected}
        if found != expected:
            raise ValueError(f"reader state does not match this reader: saved {found}, this reader {expected}")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def _torch_dataset_class() -> type:
    import torch
    from torch.utils.data import IterableDataset, get_worker_info

    class TorchSplitDataset(IterableDataset):
        """A split as a PyTorch ``IterableDataset``; integer lists become int64 tensors.

        The partition is decided in each ``DataLoader`` worker from ``get_worker_info()`` and the process's
        ``torch.distributed`` rank (or the ``rank``/``world_size`` given).  Call ``set_epoch`` before each
        epoch, as with ``DistributedSampler``.
        """

        def __init__(
            self,
            split_dir: str | Path,
            *,
            seed: int = 0,
            shuffle: bool = True,
            rank: int | None = None,
            world_size: int | None = None,
            columns: list[str] | None = None,
        ) -> None:
            super().__init__()
            distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
            self.split_dir = Path(split_dir)
            self.seed, self.shuffle, self.columns = seed, shuffle, columns
            self.rank = rank if rank is not None else (torch.distributed.get_rank() if distributed else 0)
            self.world_size = (
                world_size if world_size is not None else (torch.distributed.get_world_size() if distributed else 1)
            )
            self.epoch = 0
            self._reader: SplitReader | None = None
            self._pending_state: dict[str, Any] | None = None

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch
            if self._reader is not None:
                self._reader.set_epoch(epoch)

        def _partition_reader(self) -> SplitReader:
            worker = get_worker_info()
            partition = Partition(
                rank=self.rank,
                world_size=self.world_size,
                worker=worker.id if worker else 0,
                num_workers=worker.num_workers if worker else 1,
            )
            if self._reader is None or self._reader.partition != partition:
                self._reader = SplitReader(
                    self.split_dir, seed=self.seed, shuffle=self.shuffle, partition=partition, columns=self.columns
                )
                self._reader.set_epoch(self.epoch)
            if self._pending_state is not None:
                self._reader.load_state_dict(self._pending_state)
                self._pending_state = None
            return self._reader

        def __iter__(self) -> Iterator[dict[str, Any]]:
            for row in self._partition_reader():
                yield {
                    name: torch.from_numpy(value.astype(np.int64)) if isinstance(value, np.ndarray) else value
                    for name, value in row.items()
                }

        def state_dict(self) -> dict[str, Any]:
            return self._partition_reader().state_dict()

        def load_state_dict(self, state: dict[str, Any]) -> None:
            self._pending_state = state
            self.epoch = int(state["epoch"])

    return TorchSplitDataset


def __getattr__(name: str) -> Any:
    """``TorchSplitDataset`` is built on first use, so importing this module never needs torch."""
    if name == "TorchSplitDataset":
        cls = _torch_dataset_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)

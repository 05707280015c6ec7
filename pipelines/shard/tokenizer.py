"""The tokenizer of a shard build: the spec's ``tokenizer.json`` as is, or a byte-level BPE trained here.

A trained tokenizer is a function of the curated text and the vocabulary size only: the text is streamed in
sorted file order, and HF ``tokenizers`` training is deterministic for a given input, so a rebuild gives the
same ``tokenizer.json`` bytes and therefore the same token ids.  Byte-level BPE has no unknown token: every
document round-trips through ``decode``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from medcurate.context import StageFailed
from medcurate.spec import TokenizerSpec
from pipelines.shard.digest import sha256_file

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
SPECIAL_TOKENS = (BOS, EOS, PAD)
# Rows per Parquet read while streaming text into the trainer: bounds memory, not the result.
_TEXT_BATCH_ROWS = 1024


@dataclass(frozen=True)
class TokenizerInfo:
    path: Path
    sha256: str
    vocab_size: int
    bos_id: int | None
    eos_id: int | None

    def to_json(self) -> str:
        return self.path.read_text(encoding="utf-8")


def iter_texts(parquet_files: list[Path]) -> Iterator[str]:
    """Document texts in file order, one Parquet batch in memory at a time."""
    for path in parquet_files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=_TEXT_BATCH_ROWS, columns=["text"]):
            yield from batch.column("text").to_pylist()


def count_rows(parquet_files: list[Path]) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in parquet_files)


def train_bpe(texts: Iterator[str], vocab_size: int, length: int | None = None) -> Tokenizer:
    """A byte-level BPE with the special tokens at ids 0-2 (``<|bos|>``, ``<|eos|>``, ``<|pad|>``)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=length)
    return tokenizer


def prepare_tokenizer(spec: TokenizerSpec, source_path: Path | None, curated_files: list[Path], out: Path) -> TokenizerInfo:
    """Write the build's tokenizer to ``out``: a copy of ``source_path`` when given, else one trained here.

    A given tokenizer must know ``<|bos|>`` / ``<|eos|>`` when the spec asks for them: guessing another
    tokenizer's conventions would silently produce documents without boundaries.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    if source_path is not None:
        if not source_path.is_file():
            raise StageFailed(f"tokenizer file not found: {source_path}")
        shutil.copyfile(source_path, out)
        tokenizer = Tokenizer.from_file(str(out))
    else:
        tokenizer = train_bpe(iter_texts(curated_files), spec.vocab_size, length=count_rows(curated_files))
        tokenizer.save(str(out), pretty=True)
    bos_id, eos_id = tokenizer.token_to_id(BOS), tokenizer.token_to_id(EOS)
    for wanted, token, token_id in ((spec.add_bos, BOS, bos_id), (spec.add_eos, EOS, eos_id)):
        if wanted and token_id is None:
            raise StageFailed(f"tokenizer {out.name} has no {token} token but the spec asks to add it")
    return TokenizerInfo(
        path=out,
        sha256=sha256_file(out),
        vocab_size=tokenizer.get_vocab_size(with_added_tokens=True),
        bos_id=bos_id if spec.add_bos else None,
        eos_id=eos_id if spec.add_eos else None,
    )

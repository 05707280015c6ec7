"""The tokenizer of a shard build: the spec's ``tokenizer.json`` as is, or a byte-level BPE trained here.

A trained tokenizer is a function of the curated text and the vocabulary size only: the text is streamed in
sorted file order, and HF ``tokenizers`` training is deterministic for a given input, so a rebuild gives the
same ``tokenizer.json`` bytes and therefore the same token ids.  It learns from the ``train`` split only (all
text when the spec has no split of that name), so validation and test documents are not part of what the
vocabulary was fitted to.  Byte-level BPE has no unknown token: every document round-trips through
``decode``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from medcurate.core.context import StageFailed
from medcurate.core.hashing import sha256_file
from medcurate.core.spec import CorpusSpec
from pipelines.shard.splits import SPLIT_KEY_COLUMNS, batch_splits

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
SPECIAL_TOKENS = (BOS, EOS, PAD)
TRAINING_SPLIT = "train"
# Rows per Parquet read while streaming text into the trainer: bounds memory, not the result.
_TEXT_BATCH_ROWS = 1024


@dataclass(frozen=True)
class TokenizerInfo:
    path: Path
    sha256: str
    vocab_size: int
    bos_id: int | None
    eos_id: int | None
    # The padding id collators need; None when the tokenizer has no ``<|pad|>`` (shards are never padded).
    pad_id: int | None

    def to_json(self) -> str:
        return self.path.read_text(encoding="utf-8")


def iter_training_texts(parquet_files: list[Path], fractions: Mapping[str, float]) -> Iterator[str]:
    """Texts of the training split in file order, one Parquet batch in memory at a time."""
    for path in parquet_files:
        batches = pq.ParquetFile(path).iter_batches(batch_size=_TEXT_BATCH_ROWS, columns=["text", *SPLIT_KEY_COLUMNS])
        for batch in batches:
            texts = batch.column("text").to_pylist()
            if TRAINING_SPLIT not in fractions:
                yield from texts
                continue
            splits = batch_splits(batch, fractions)
            yield from (text for text, split in zip(texts, splits, strict=True) if split == TRAINING_SPLIT)


def train_bpe(texts: Iterator[str], vocab_size: int) -> Tokenizer:
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
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def prepare_tokenizer(spec: CorpusSpec, curated_files: list[Path], out: Path) -> TokenizerInfo:
    """Write the build's tokenizer to ``out``: a byte copy of ``spec.tokenizer.path`` when set, else trained."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if spec.tokenizer.path is not None:
        source = spec.resolve(spec.tokenizer.path)
        if not source.is_file():
            raise StageFailed(f"tokenizer file not found: {source}")
        shutil.copyfile(source, out)
    else:
        tokenizer = train_bpe(iter_training_texts(curated_files, spec.splits), spec.tokenizer.vocab_size)
        tokenizer.save(str(out), pretty=True)
    return describe_tokenizer(spec, out)


def describe_tokenizer(spec: CorpusSpec, path: Path) -> TokenizerInfo:
    """Digest, vocabulary size and boundary ids of the tokenizer at ``path`` (e.g. one a resumed build kept).

    A given tokenizer must know ``<|bos|>`` / ``<|eos|>`` when the spec asks for them: guessing another
    tokenizer's conventions would silently produce documents without boundaries.
    """
    tokenizer = Tokenizer.from_file(str(path))
    bos_id, eos_id = tokenizer.token_to_id(BOS), tokenizer.token_to_id(EOS)
    for wanted, token, token_id in ((spec.tokenizer.add_bos, BOS, bos_id), (spec.tokenizer.add_eos, EOS, eos_id)):
        if wanted and token_id is None:
            raise StageFailed(f"the tokenizer has no {token} token but the spec asks to add it")
    return TokenizerInfo(
        path=path,
        sha256=sha256_file(path),
        vocab_size=tokenizer.get_vocab_size(with_added_tokens=True),
        bos_id=bos_id if spec.tokenizer.add_bos else None,
        eos_id=eos_id if spec.tokenizer.add_eos else None,
        pad_id=tokenizer.token_to_id(PAD),
    )

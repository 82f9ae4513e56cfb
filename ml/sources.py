"""Where training and embedding batches come from: in-memory arrays or chunked image stores.

A source knows its length and band layout and yields raw (B, C, H, W) float32 batches
in store units. ``epoch_batches`` shuffles deterministically from an rng, so an epoch
can be replayed exactly after a crash; ``ordered_batches`` walks rows in order (embedding).

Image stores hold one image per HDF5 chunk; random single-row reads cost ~0.1 ms each,
but contiguous slices are ~10× cheaper per row, so ``StoreSource`` shuffles at block level
(random blocks, rows shuffled inside a window of blocks), the usual trade-off of
streaming shufflers such as WebDataset.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator, Sequence

import numpy as np

from ml.imagestore import open_store


class ArraySource:
    """An (N, C, H, W) array (or memmap) already in memory."""

    def __init__(self, images: np.ndarray):
        if images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {images.shape}")
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    @property
    def item_shape(self) -> tuple:
        return tuple(self.images.shape[1:])

    def epoch_batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
        order = rng.permutation(len(self))
        for start in range(0, len(order) - batch_size + 1, batch_size):  # full batches only
            idx = np.sort(order[start:start + batch_size])  # sorted reads; the batch is a set anyway
            yield np.asarray(self.images[idx], dtype=np.float32)

    def ordered_batches(self, batch_size: int) -> Iterator[np.ndarray]:
        for start in range(0, len(self), batch_size):
            yield np.asarray(self.images[start:start + batch_size], dtype=np.float32)


class StoreSource:
    """One or more image stores (same band count and size) read as one long row sequence."""

    def __init__(self, paths: Sequence, block_rows: int = 256, window_blocks: int = 8):
        self.readers = [open_store(p) for p in paths]
        shapes = {tuple(r.shape[1:]) for r in self.readers}
        if len(shapes) != 1:
            raise ValueError(f"image stores differ in shape (bands, H, W): {sorted(shapes)}")
        self.offsets = np.cumsum([0] + [len(r) for r in self.readers])
        self.block_rows, self.window_blocks = block_rows, window_blocks

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def item_shape(self) -> tuple:
        return tuple(self.readers[0].shape[1:])

    def _blocks(self) -> list[tuple[int, int, int]]:
        """(reader index, start, stop) for every block of every store."""
        return [(k, s, min(s + self.block_rows, len(r)))
                for k, r in enumerate(self.readers) for s in range(0, len(r), self.block_rows)]

    def _read(self, block) -> np.ndarray:
        k, start, stop = block
        return np.asarray(self.readers[k]._ds[start:stop], dtype=np.float32)

    def epoch_batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
        blocks = self._blocks()
        order = rng.permutation(len(blocks))
        carry = np.empty((0, *self.item_shape), np.float32)
        for w in range(0, len(order), self.window_blocks):
            window = np.concatenate([carry] + [self._read(blocks[b]) for b in order[w:w + self.window_blocks]])
            window = window[rng.permutation(len(window))]
            n_full = len(window) // batch_size * batch_size
            for start in range(0, n_full, batch_size):
                yield window[start:start + batch_size]
            carry = window[n_full:]

    def ordered_batches(self, batch_size: int) -> Iterator[np.ndarray]:
        for k, reader in enumerate(self.readers):
            for start in range(0, len(reader), batch_size):
                yield self._read((k, start, min(start + batch_size, len(reader))))

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """Up to n rows spread evenly over all stores (for fitting normalisation)."""
        rows = np.unique(np.linspace(0, len(self) - 1, min(n, len(self))).astype(np.int64))
        out = []
        for k, reader in enumerate(self.readers):
            local = rows[(rows >= self.offsets[k]) & (rows < self.offsets[k + 1])] - self.offsets[k]
            if len(local):
                out.append(reader.read_many(local))
        return np.concatenate(out).astype(np.float32)

    def close(self) -> None:
        for reader in self.readers:
            reader.close()


def sample_rows(source, n: int) -> np.ndarray:
    """Up to n evenly spaced raw images from any source."""
    if hasattr(source, "sample"):
        return source.sample(n)
    rows = np.unique(np.linspace(0, len(source) - 1, min(n, len(source))).astype(np.int64))
    return np.asarray(source.images[rows], dtype=np.float32)


def prefetch(iterator: Iterator, depth: int = 3) -> Iterator:
    """Run ``iterator`` in a background thread, ``depth`` items ahead (disk I/O overlaps compute).

    Order is preserved, so results stay deterministic; an exception in the producer is
    re-raised in the consumer. Closing the consumer early stops the producer.
    """
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    done, stop = object(), threading.Event()

    def produce():
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(done)
        except BaseException as exc:  # handed to the consumer
            buffer.put(exc)

    thread = threading.Thread(target=produce, daemon=True, name="prefetch")
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()

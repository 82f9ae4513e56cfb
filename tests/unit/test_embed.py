"""ml/embed.py and ml/sources.py: whole-survey embedding in batches, checksums, stores, prefetch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ml.augment import fit_preprocess
from ml.embed import embed_array, embed_source, vectors_checksum
from ml.encoders import encoder_from_config, preset_config
from ml.imagestore import ImageStoreWriter
from ml.sources import ArraySource, StoreSource, prefetch

pytestmark = pytest.mark.unit
TINY = {"width": 4, "stages": (1, 1), "proj_hidden": 16, "proj_dim": 8}


def images(n=37, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(1.0, 0.5, (n, 3, 24, 24)).astype(np.float32)


def setup(x):
    pre = fit_preprocess(x, "flux", ["g", "r", "i"], image_size=32)
    return encoder_from_config(preset_config("small", image_size=32, **TINY), seed=0), pre


def store(tmp_path, x, name="s.h5"):
    with ImageStoreWriter(tmp_path / name, ("g", "r", "i"), x.shape[-1]) as writer:
        writer.append(x)
    return tmp_path / name


def test_embedding_twice_gives_the_same_checksum_and_batching_does_not_matter(tmp_path):
    x = images()
    model, pre = setup(x)
    source = StoreSource([store(tmp_path, x)])
    first = embed_source(model, pre, source, batch_size=8, device=torch.device("cpu"))
    second = embed_source(model, pre, source, batch_size=8, device=torch.device("cpu"))
    assert vectors_checksum(first) == vectors_checksum(second)
    other_batching = embed_source(model, pre, ArraySource(x), batch_size=16, device=torch.device("cpu"))
    np.testing.assert_allclose(first, other_batching, atol=1e-5)
    assert first.shape == (37, 8) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)


def test_several_stores_form_one_sequence_in_order(tmp_path):
    a, b = images(10, 1), images(7, 2)
    model, pre = setup(a)
    both = StoreSource([store(tmp_path, a, "a.h5"), store(tmp_path, b, "b.h5")])
    assert len(both) == 17
    vectors = embed_source(model, pre, both, batch_size=4, device=torch.device("cpu"))
    np.testing.assert_allclose(vectors[10:], embed_array(model, pre, b), atol=1e-5)


def test_store_epoch_batches_cover_every_row_once_and_replay_from_seed(tmp_path):
    x = np.arange(50, dtype=np.float32)[:, None, None, None] * np.ones((1, 3, 4, 4), np.float32)
    source = StoreSource([store(tmp_path, x)], block_rows=8, window_blocks=2)
    batches = list(source.epoch_batches(5, np.random.default_rng(3)))
    seen = np.concatenate([b[:, 0, 0, 0] for b in batches]).astype(int)
    assert len(batches) == 10 and sorted(seen.tolist()) == list(range(50))
    assert not np.array_equal(seen, np.arange(50))            # shuffled
    again = np.concatenate([b[:, 0, 0, 0] for b in source.epoch_batches(5, np.random.default_rng(3))])
    assert np.array_equal(seen, again.astype(int))            # and replayable
    assert len(list(ArraySource(x).epoch_batches(16, np.random.default_rng(0)))) == 3   # full batches only


def test_wrong_band_count_is_refused():
    model, pre = setup(images())
    with pytest.raises(ValueError, match="2 bands but the encoder was trained on 3"):
        embed_array(model, pre, np.zeros((2, 2, 24, 24), np.float32))


def test_prefetch_keeps_order_and_reraises():
    assert list(prefetch(iter(range(20)), depth=2)) == list(range(20))

    def broken():
        yield 1
        raise OSError("disk gone")
    got = []
    with pytest.raises(OSError, match="disk gone"):
        for item in prefetch(broken()):
            got.append(item)
    assert got == [1]


def test_streamed_blocks_equal_the_whole_array():
    from ml.embed import iter_embed_source

    x = images()
    model, pre = setup(x)
    whole = embed_source(model, pre, ArraySource(x), batch_size=8, device=torch.device("cpu"))
    blocks = list(iter_embed_source(model, pre, ArraySource(x), batch_size=8, device=torch.device("cpu")))
    assert [len(b) for b in blocks] == [8, 8, 8, 8, 5]
    np.testing.assert_array_equal(np.concatenate(blocks), whole)

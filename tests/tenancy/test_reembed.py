"""A migration's crops go to the Embedder in messages Ray inlines (tenancy/reembed.py): every run of crops is
under the inline limit, together they are every crop in order, and a crop that cannot fit one is refused."""

import numpy as np
import pytest

from tenancy.reembed import INLINE_LIMIT_BYTES, CropTooLarge, inline_chunks


def test_chunks_stay_under_rays_inline_limit_and_keep_every_crop():
    crops = np.random.default_rng(3).integers(0, 256, (67, 112, 112, 3), dtype=np.uint8)
    chunks = list(inline_chunks(crops))
    assert all(chunk.nbytes < INLINE_LIMIT_BYTES - 4096 for chunk in chunks)
    assert len(chunks) == 34  # two 112 x 112 crops (73.5 KiB) a message
    assert np.array_equal(np.concatenate(chunks), crops)


def test_a_crop_over_one_message_is_refused():
    with pytest.raises(CropTooLarge):
        list(inline_chunks(np.zeros((1, 256, 256, 3), np.uint8)))

"""Made-up speech frames for the endpointing tests: each sample holds its own index, so a
test can tell exactly which audio an utterance holds, and thresholds count whole frames."""

from __future__ import annotations

import numpy as np

from pipeline.audio import EndpointConfig

FRAME = 512  # 32 ms at 16 kHz
MS = 32

# 1 frame = 32 ms: thresholds in whole frames keep the arithmetic readable.
CONFIG = EndpointConfig(
    min_speech_ms=3 * MS, min_silence_ms=5 * MS, pre_padding_ms=2 * MS, post_padding_ms=1 * MS
)


def frame_at(index: int) -> bytes:
    """Frame ``index`` of a stream whose sample ``i`` holds ``i % 32768``."""
    return (np.arange(index * FRAME, (index + 1) * FRAME) % 32768).astype("<i2").tobytes()


def stream_slice(first_sample: int, n_samples: int) -> bytes:
    return (np.arange(first_sample, first_sample + n_samples) % 32768).astype("<i2").tobytes()

"""Voice activity detection (stage ``vad``): the
:class:`~pipeline.engines.base.VoiceActivityDetector` engines.

``silero`` (:mod:`~pipeline.engines.vad.silero`, Silero VAD on onnxruntime, the frames of
many sessions in one model call; the model, one stream's state and the silence gate in
:mod:`~pipeline.engines.vad._silero_stream`). The registry imports an engine when it is
created, so importing this package loads no model runtime.
"""

__all__: list[str] = []

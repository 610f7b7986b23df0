"""Speech to text (stage ``stt``): the :class:`~pipeline.engines.base.Transcriber` engines.

``faster-whisper`` (:mod:`~pipeline.engines.stt.faster_whisper`, the CPU default; its
options, batched turns and long-audio windows in the private modules beside it),
``whisperx`` (:mod:`~pipeline.engines.stt.whisperx`, GPU) and ``language-router``
(:mod:`~pipeline.engines.stt.routing`, one engine per language). Both Whisper engines find
their model through :mod:`~pipeline.engines.stt._whisper`. The registry imports an engine
when it is created, so importing this package loads no model runtime.
"""

__all__: list[str] = []

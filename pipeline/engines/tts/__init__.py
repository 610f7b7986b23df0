"""Text to speech (stage ``tts``): the :class:`~pipeline.engines.base.Synthesizer` engines.

``piper`` (:mod:`~pipeline.engines.tts.piper`, the CPU default's neural voice), ``espeak``
(:mod:`~pipeline.engines.tts.espeak`, every other language, and the text rules Piper
shares), ``coqui`` (:mod:`~pipeline.engines.tts.coqui`, GPU) and ``language-router``
(:mod:`~pipeline.engines.tts.routing`, one engine per language); OpenAI's voice names
mapped onto them in :mod:`~pipeline.engines.tts.openai_voices`. The registry imports an
engine when it is created, so importing this package loads no model runtime.
"""

__all__: list[str] = []

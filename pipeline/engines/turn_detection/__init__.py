"""End-of-turn detection: has the speaker finished? Two stages, one question.

Stage ``turn`` (:class:`~pipeline.engines.base.TurnDetector`, from the audio):
``smart-turn`` (:mod:`~pipeline.engines.turn_detection.smart_turn`, Smart Turn v3 on onnxruntime).
Stage ``turn_text`` (:class:`~pipeline.engines.base.TextTurnDetector`, from the words so
far): ``llama-cpp`` (:mod:`~pipeline.engines.turn_detection.llama_turn`, the packaged Gemma's
end-of-line probability; it opens the model as the LLM does, through
:mod:`pipeline.engines._llama_cpp_open`). The registry imports an engine when it is
created, so importing this package loads no model runtime.
"""

__all__: list[str] = []

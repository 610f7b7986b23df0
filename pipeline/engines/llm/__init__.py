"""Language models (stage ``llm``): the :class:`~pipeline.engines.base.LanguageModel` engines.

``llama-cpp`` (:mod:`~pipeline.engines.llm.llama_cpp`, the CPU default; its scheduler,
serial decoder, grammar and detokenizer in the private ``_llama_cpp_*``,
``_llama_grammar`` and ``_detokenizer`` modules; the model is opened by
:mod:`pipeline.engines._llama_cpp_open`, which the text turn detector shares), ``vllm``
(:mod:`~pipeline.engines.llm.vllm`, GPU; its options, prompt and tool-call parsers in
``_vllm_options``, ``vllm_prompt`` and ``_vllm_tools``) and ``openai`` (a remote
OpenAI-compatible server, :mod:`~pipeline.engines.llm.openai_remote`). What they share:
the dialogue prompt (:mod:`~pipeline.engines.llm.prompting`) and tool calls written as
JSON (:mod:`~pipeline.engines.llm.tool_calls`). The registry imports an engine when it is
created, so importing this package loads no model runtime.
"""

__all__: list[str] = []

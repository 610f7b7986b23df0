"""Token ids to text for llama.cpp, one token at a time."""

from __future__ import annotations

import codecs
import ctypes
from typing import Any


class Detokenizer:
    """Token ids to text, one token at a time, never splitting a UTF-8 character.

    Gemma's vocabulary falls back to single bytes for rare characters, so one character
    can span up to four tokens; the incremental decoder keeps the first bytes until the
    character is complete. Invalid bytes become U+FFFD rather than an exception.
    """

    def __init__(self, llama_cpp: Any, llm: Any) -> None:
        self._lib = llama_cpp
        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def is_end(self, token: int) -> bool:
        """End of generation: EOS or an end-of-turn token."""
        return bool(self._lib.llama_vocab_is_eog(self._vocab, token))

    def feed(self, token: int) -> str:
        return self._utf8.decode(self.piece(token))

    def piece(self, token: int) -> bytes:
        """The bytes of one token; special tokens render as nothing.

        llama-cpp-python's own ``detokenize`` uses a 32-byte buffer and silently
        truncates longer tokens; this asks for the real size when 64 bytes are not enough.
        """
        size = 64
        for _ in range(2):
            buffer = (ctypes.c_char * size)()
            n = self._lib.llama_token_to_piece(self._vocab, token, buffer, size, 0, False)
            if n >= 0:
                return buffer.raw[:n]
            size = -n
        return b""

"""Does the CPU LLM gain from decoding several sessions' replies together?

llama.cpp decodes a *batch* of tokens in one call (``llama_decode``), and the tokens of a
batch may belong to different sequences, each with its own KV cache (``n_seq_max``). One
decoding step then reads the weights once for all of them: on a CPU, where a small
model's step is bound by memory bandwidth and per-call overhead, k sequences should cost
much less than k steps. This measures it with the packaged Gemma 3 270M (Q4_K_M), the
engine's sampling (repeat penalty, greedy) and voice prompts (the engine's dialogue
format with its worked examples, a different short question per sequence):

* ``raw``: for k = 1, 2, 4, 8 sequences, one prefill batch of the k prompts, then
  ``--tokens`` decoding steps of k tokens each (stops ignored, every sequence writes
  ``--tokens``); tokens/s of one sequence and of all together, ms per step, and whether
  each sequence wrote the same tokens as it does alone (batched arithmetic may round
  differently).
* ``engine`` (the engine end to end, when ``--engine`` is given): k concurrent
  ``generate()`` requests with ``parallel_sequences`` 1 (one at a time, today's path) and
  k, wall time until all replies ended and their mean time to first text.

    python -m loadtests.bench_llm_parallel [--ks 1,2,4,8] [--tokens 64] [--threads 2]
        [--repeats 3] [--engine] [--smoke]

Writes ``reports/bench_llm_parallel.json``. About a minute on two idle cores (the
figures move with whatever else runs there: run it on an idle machine).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

from loadtests._report import add_smoke_flag, smoke_reports, write_report

QUESTIONS = (
    "What is the capital of Italy?",
    "How many legs does a spider have?",
    "What colour is the sky on a clear day?",
    "Who wrote Romeo and Juliet?",
    "What is the boiling point of water?",
    "Name a large animal that lives in the sea.",
    "What do bees make?",
    "How many days are in a week?",
)


def _prompts(questions: list[int]) -> list[str]:
    from pipeline.engines.llm.llama_cpp import LlamaCppOptions
    from pipeline.engines.llm.prompting import build_dialogue_prompt
    from schemas import ChatMessage

    dialogue = LlamaCppOptions().dialogue_format()
    return [
        build_dialogue_prompt(
            [ChatMessage(role="user", content=QUESTIONS[i % len(QUESTIONS)])], dialogue=dialogue
        ).text
        for i in questions
    ]


def _sampler(seqs: Any, repeat_penalty: float) -> Any:
    """The engine's chain at temperature 0 (what Llama._init_sampler builds)."""
    chain = seqs.sampler()
    chain.add_penalties(
        n_vocab=seqs.n_vocab,
        penalty_last_n=64,
        penalty_repeat=repeat_penalty,
        penalty_freq=0.0,
        penalty_present=0.0,
    )
    chain.add_greedy()
    return chain


def raw_run(k: int, tokens: int, threads: int, n_ctx: int, first: int = 0) -> dict[str, Any]:
    """k sequences (questions ``first``...): one prefill batch, then ``tokens`` steps of
    k tokens."""
    from pipeline.engines._llama_cpp_open import open_gguf_sequences

    seqs = open_gguf_sequences(
        None, None, n_ctx=n_ctx, n_seq=k, n_threads=threads, n_batch=512, omp_passive_wait=True
    )
    lib = seqs.lib
    try:
        prompts = [
            seqs.tokenize(p.encode(), True, False) for p in _prompts(list(range(first, first + k)))
        ]
        samplers = [_sampler(seqs, 1.1) for _ in range(k)]
        batch = lib.llama_batch_init(max(512, sum(map(len, prompts))), 0, 1)
        try:

            def add(token: int, pos: int, seq: int, logits: bool) -> None:
                i = batch.n_tokens
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
                batch.seq_id[i][0], batch.logits[i] = seq, logits
                batch.n_tokens = i + 1

            started = time.perf_counter()
            batch.n_tokens = 0
            out_index = []
            for seq, prompt in enumerate(prompts):
                for pos, token in enumerate(prompt):
                    add(token, pos, seq, pos == len(prompt) - 1)
                out_index.append(batch.n_tokens - 1)
            if lib.llama_decode(seqs.ctx, batch) != 0:
                raise RuntimeError("prefill failed")
            nxt = [samplers[s].sample(seqs._ctx, out_index[s]) for s in range(k)]
            prefill_s = time.perf_counter() - started
            written: list[list[int]] = [[t] for t in nxt]
            steps: list[float] = []
            for step in range(tokens - 1):
                started = time.perf_counter()
                batch.n_tokens = 0
                for seq in range(k):
                    add(nxt[seq], len(prompts[seq]) + step, seq, True)
                if lib.llama_decode(seqs.ctx, batch) != 0:
                    raise RuntimeError("decode failed")
                nxt = [samplers[s].sample(seqs._ctx, s) for s in range(k)]
                steps.append(time.perf_counter() - started)
                for seq in range(k):
                    written[seq].append(nxt[seq])
        finally:
            lib.llama_batch_free(batch)
    finally:
        seqs.close()
    decode_s = sum(steps)
    return {
        "k": k,
        "prompt_tokens": [len(p) for p in prompts],
        "prefill_s": round(prefill_s, 4),
        "step_ms_median": round(1000 * statistics.median(steps), 2),
        "tokens_per_s_per_sequence": round((tokens - 1) / decode_s, 1),
        "tokens_per_s_total": round(k * (tokens - 1) / decode_s, 1),
        "written": written,
    }


async def engine_run(k: int, parallel: int, tokens: int, threads: int) -> dict[str, Any]:
    """k concurrent requests through the engine with ``parallel_sequences=parallel``."""
    from pipeline.engines.llm.llama_cpp import LlamaCppLanguageModel
    from schemas import ChatMessage, GenerationRequest, SamplingSettings

    llm = LlamaCppLanguageModel(
        n_ctx=1024, n_threads=threads, parallel_sequences=parallel, line_stop=False
    )
    await llm.load()
    try:

        async def one(i: int) -> tuple[float, float, str]:
            request = GenerationRequest(
                request_id=f"r{i}",
                messages=(
                    ChatMessage(role="user", content="Count to a thousand."),
                    ChatMessage(role="assistant", content=f"{i + 1}, {i + 2},"),
                ),
                sampling=SamplingSettings(temperature=0.0, max_tokens=tokens),
            )
            started, first = time.perf_counter(), None
            text = []
            async for delta in llm.generate(request):
                first = first or time.perf_counter() - started
                text.append(delta)
            return first or float("nan"), time.perf_counter() - started, "".join(text)

        await one(0)  # warm up
        started = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(k)))
        wall = time.perf_counter() - started
    finally:
        await llm.close()
    return {
        "k": k,
        "parallel_sequences": parallel,
        "wall_s": round(wall, 3),
        "first_text_s_mean": round(statistics.mean(r[0] for r in results), 3),
        "replies": [r[2] for r in results],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ks", default="1,2,4,8", help="numbers of sequences")
    parser.add_argument("--tokens", type=int, default=64, help="tokens each sequence writes")
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--repeats", type=int, default=3, help="runs per k (the best counts)")
    parser.add_argument("--engine", action="store_true", help="also the engine end to end")
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        smoke_reports()
        args.ks, args.tokens, args.engine, args.repeats = "1,2", 4, True, 1
    ks = [int(k) for k in args.ks.split(",")]
    # Best of --repeats, the ks interleaved: on a shared machine the slowest runs measure
    # the neighbours, the fastest the model.
    runs: dict[int, list[dict[str, Any]]] = {k: [] for k in ks}
    for _ in range(args.repeats):
        for k in ks:
            runs[k].append(raw_run(k, args.tokens, args.threads, 512))
    raw = [max(runs[k], key=lambda r: r["tokens_per_s_total"]) for k in ks]
    for k, run in zip(ks, raw, strict=True):
        run["tokens_per_s_total_all_repeats"] = [r["tokens_per_s_total"] for r in runs[k]]
    # Each sequence alone, for the comparison of the tokens written.
    alone = [
        raw_run(1, args.tokens, args.threads, 512, first=i)["written"][0] for i in range(max(ks))
    ]
    single = raw[0] if raw[0]["k"] == 1 else None
    print(f"threads={args.threads} tokens={args.tokens}")
    for run in raw:
        gain = (run["tokens_per_s_total"] / single["tokens_per_s_total"]) if single else None
        same = sum(w == alone[i] for i, w in enumerate(run["written"]))
        run["sequences_same_as_alone"] = same
        print(
            f"k={run['k']}: {run['tokens_per_s_per_sequence']:7.1f} tok/s per sequence, "
            f"{run['tokens_per_s_total']:7.1f} tok/s total"
            + (f" ({gain:.2f}x one sequence)" if gain else "")
            + f", step {run['step_ms_median']} ms, prefill {run['prefill_s']} s, "
            f"same tokens as alone: {same}/{run['k']}"
        )
    figures: dict[str, Any] = {
        "threads": args.threads,
        "tokens": args.tokens,
        "raw": [{k: v for k, v in r.items() if k != "written"} for r in raw],
    }
    if args.engine:
        engine = []
        for k in ks:
            if k == 1:
                continue
            for parallel in (1, k):
                run = asyncio.run(engine_run(k, parallel, args.tokens, args.threads))
                engine.append(run)
                print(
                    f"engine k={k} parallel={parallel}: all done in {run['wall_s']} s, "
                    f"first text after {run['first_text_s_mean']} s on average"
                )
        pairs = {(r["k"], r["parallel_sequences"]): r["replies"] for r in engine}
        for r in engine:
            r["replies_same_as_one_at_a_time"] = r["replies"] == pairs[(r["k"], 1)]
            del r["replies"]
        figures["engine"] = engine
    path = write_report("bench_llm_parallel", figures)
    print(f"report: {path}")


if __name__ == "__main__":
    main()

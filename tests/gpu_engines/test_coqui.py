"""The ``coqui`` TTS engine on Coqui's real code, with a tiny VITS built in the test.

No model is downloaded: the fixture builds a VITS configuration with tiny dimensions and
a character tokenizer (no phonemizer), initialises the model with random weights, and
saves a checkpoint and ``config.json`` the way Coqui's trainer does. The engine loads
them through Coqui's ``Synthesizer`` like any released voice. Random weights speak noise,
so the tests check what the engine owns: the rate, the PCM16 framing, speed, voice and
language checks, errors and cancellation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("TTS", reason="Coqui TTS is installed by scripts/test-gpu-engines.sh coqui")
torch = pytest.importorskip("torch")

from pipeline.engines import create_engine  # noqa: E402
from pipeline.engines.tts.coqui import CoquiSynthesizer  # noqa: E402
from schemas import EngineError, ModelMissingError, ProtocolError, SynthesisRequest  # noqa: E402

RATE = 16000  # not Coqui's default 22050: the engine must report the model's own rate


def _tiny_vits(folder: Path, *, speakers: list[str] | None = None) -> Path:
    """Build, initialise and save a tiny random VITS; return the checkpoint's path."""
    from TTS.tts.configs.shared_configs import BaseAudioConfig, CharactersConfig
    from TTS.tts.configs.vits_config import VitsArgs, VitsConfig
    from TTS.tts.models import setup_model

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    args = VitsArgs(
        hidden_channels=16,
        hidden_channels_ffn_text_encoder=32,
        num_heads_text_encoder=2,
        num_layers_text_encoder=1,
        num_layers_posterior_encoder=1,
        num_layers_flow=1,
        upsample_initial_channel_decoder=16,
        resblock_kernel_sizes_decoder=[3],
        resblock_dilation_sizes_decoder=[[1, 3, 5]],
        # the decoder's upsampling must multiply up to the hop length (256)
        upsample_rates_decoder=[8, 8, 4],
        upsample_kernel_sizes_decoder=[16, 16, 8],
        use_sdp=False,  # the deterministic duration predictor: lengths follow the speed
        init_discriminator=False,
        use_speaker_embedding=bool(speakers),
        speaker_embedding_channels=8,
    )
    config = VitsConfig(
        model_args=args,
        audio=BaseAudioConfig(sample_rate=RATE, hop_length=256, win_length=1024, fft_size=1024),
        use_phonemes=False,
        phonemizer=None,
        text_cleaner="basic_cleaners",
        characters=CharactersConfig(
            characters_class="TTS.tts.utils.text.characters.Graphemes",
            pad="<PAD>",
            eos="<EOS>",
            bos="<BOS>",
            blank="<BLNK>",
            characters="abcdefghijklmnopqrstuvwxyz",
            punctuations="!'(),-.:;? ",
        ),
        add_blank=True,
        test_sentences=[],
        use_speaker_embedding=bool(speakers),
        speakers=list(speakers or []),
    )
    model = setup_model(config)  # what Coqui's Synthesizer calls to build a model
    checkpoint = folder / "model.pth"
    torch.save({"model": model.state_dict(), "config": config.to_dict()}, checkpoint)
    config.save_json(str(folder / "config.json"))
    return checkpoint


@pytest.fixture(scope="module")
def vits_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_vits(tmp_path_factory.mktemp("tiny-vits"))


@pytest.fixture
async def engine(vits_checkpoint: Path) -> AsyncIterator[CoquiSynthesizer]:
    synth = CoquiSynthesizer(model_path=vits_checkpoint, device="cpu", torch_threads=1)
    await synth.load()
    try:
        yield synth
    finally:
        await synth.close()


async def _collect(engine: CoquiSynthesizer, text: str, **kw: object) -> list[bytes]:
    chunks = []
    async for chunk in engine.synthesize(SynthesisRequest(text=text, **kw)):  # type: ignore[arg-type]
        assert chunk.sample_rate == RATE
        chunks.append(chunk.audio)
    return chunks


async def test_speaks_pcm16_at_the_models_rate(engine: CoquiSynthesizer) -> None:
    assert engine.ready and engine.sample_rate == RATE
    assert not engine.streaming  # VITS speaks whole pieces
    started = time.perf_counter()
    chunks = await _collect(engine, "Hello there, how are you today?")
    elapsed = time.perf_counter() - started
    audio = b"".join(chunks)
    assert len(chunks) == 1 and len(audio) > 0 and len(audio) % 2 == 0
    assert len(audio) / 2 / RATE > 0.1  # some sound, at least a tenth of a second
    print(f"\ncoqui tiny VITS: load {engine.load_seconds:.2f} s, piece {elapsed:.3f} s")


async def test_through_the_registry(vits_checkpoint: Path) -> None:
    synth = create_engine("tts", "coqui", {"model_path": str(vits_checkpoint), "device": "cpu"})
    assert isinstance(synth, CoquiSynthesizer)
    await synth.load()
    try:
        assert await _collect(synth, "yes")
    finally:
        await synth.close()


async def test_speed_changes_the_length(engine: CoquiSynthesizer) -> None:
    text = "the same words at two speeds"
    slow = b"".join(await _collect(engine, text, speed=0.5))
    fast = b"".join(await _collect(engine, text, speed=2.0))
    assert len(slow) > 1.5 * len(fast)  # durations round up, and Coqui pads each piece
    assert engine._synth.tts_model.length_scale == 1  # restored after each call


async def test_nothing_speakable_yields_nothing(engine: CoquiSynthesizer) -> None:
    assert await _collect(engine, " ... !? ") == []


async def test_single_speaker_model_refuses_no_voice_but_ignores_language(
    engine: CoquiSynthesizer,
) -> None:
    assert engine.speakers == [] and engine.languages == []
    assert await _collect(engine, "ja", language="de", voice="anyone")


async def test_multi_speaker_voices(tmp_path: Path) -> None:
    checkpoint = _tiny_vits(tmp_path / "multi", speakers=["ana", "ben"])
    synth = CoquiSynthesizer(model_path=checkpoint, device="cpu")
    await synth.load()
    try:
        assert synth.speakers == ["ana", "ben"]
        assert await _collect(synth, "hello", voice="ben")
        assert await _collect(synth, "hello")  # the first speaker by default
        with pytest.raises(ProtocolError) as info:
            await _collect(synth, "hello", voice="carl")
        assert "ana" in info.value.message
    finally:
        await synth.close()


async def test_cancellation_frees_the_worker(engine: CoquiSynthesizer) -> None:
    long_text = " ".join(["a long sentence that takes a while to speak"] * 12)
    stream = engine.synthesize(SynthesisRequest(text=long_text))
    task = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await stream.aclose()
    assert engine._worker.serving == 0
    # The worker finishes the call in progress, drops its audio and serves the next one.
    assert await asyncio.wait_for(_collect(engine, "next"), timeout=60)


async def test_closed_engine_refuses_work(vits_checkpoint: Path) -> None:
    synth = CoquiSynthesizer(model_path=vits_checkpoint, device="cpu")
    await synth.load()
    await synth.close()
    with pytest.raises(EngineError):
        await _collect(synth, "hello")


async def test_missing_model_names_the_setting(tmp_path: Path) -> None:
    synth = CoquiSynthesizer(model_path=tmp_path / "nope.pth", device="cpu")
    with pytest.raises(ModelMissingError) as info:
        await synth.load()
    assert info.value.details["setting"] == "VOXLINE_TTS__OPTIONS__MODEL_PATH"
    assert info.value.details["package"] == "coqui-tts"
    with pytest.raises(ModelMissingError):
        await CoquiSynthesizer(device="cpu").load()


async def test_cuda_without_a_gpu_is_a_configuration_error(vits_checkpoint: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(EngineError) as info:
        await CoquiSynthesizer(model_path=vits_checkpoint, device="cuda").load()
    assert info.value.code == "configuration_error"


class _FakeXtts(torch.nn.Module):
    """Stands in for Coqui's ``Xtts`` in the streaming path (a real XTTS-v2 is 2 GB).

    It has what the engine uses: ``inference_stream`` yielding torch chunks, the stored
    speakers and the language list; it records how far a stream ran and that it was
    closed, so cancellation between chunks can be seen.
    """

    def __init__(self) -> None:
        super().__init__()
        latents = {"gpt_cond_latent": torch.zeros(1, 32, 8), "speaker_embedding": torch.ones(8)}
        self.config = type("Config", (), {"languages": ["en", "de"]})()
        self.speaker_manager = type(
            "Speakers", (), {"speakers": {"ana": latents}, "speaker_names": ["ana"]}
        )()
        self.produced = 0
        self.closed = False

    def inference_stream(
        self, text: str, language: str, gpt_cond_latent: Any, speaker_embedding: Any, **kw: Any
    ) -> Iterator[Any]:
        assert language in self.config.languages and kw["enable_text_splitting"] is False
        try:
            for _ in range(5):
                self.produced += 1
                time.sleep(0.05)
                yield torch.full((2400,), 0.25 * kw["speed"])
        finally:
            self.closed = True


async def test_streaming_model_yields_chunks_as_made(engine: CoquiSynthesizer) -> None:
    fake = _FakeXtts()
    engine._synth.tts_model = fake
    assert engine.streaming and engine.speakers == ["ana"] and engine.languages == ["en", "de"]
    chunks = [c async for c in engine.synthesize(SynthesisRequest(text="Hallo", language="de-AT"))]
    assert [len(c.audio) for c in chunks] == [4800] * 5 and fake.closed
    with pytest.raises(ProtocolError):
        await _collect(engine, "bonjour", language="fr")

    fake = _FakeXtts()
    engine._synth.tts_model = fake
    stream = engine.synthesize(SynthesisRequest(text="a long piece"))
    assert (await stream.__anext__()).audio
    await stream.aclose()
    await asyncio.sleep(0.3)  # the worker notices at its next chunk
    assert fake.closed and fake.produced < 5

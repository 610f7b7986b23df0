"""Audio at the edges: PCM16 checks and conversions, resampling, decoding and encoding.

Independent producers check the codecs both ways: soundfile writes the FLAC and Ogg/Vorbis
uploads we decode, and the stdlib ``wave`` module reads the WAV we write.
"""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest
import soundfile
from hypothesis import given
from hypothesis import strategies as st

from pipeline.audio import (
    AudioEncoder,
    PcmResampler,
    check_pcm16,
    check_sample_rate,
    decode_audio,
    decode_frames,
    encode_audio,
    float_to_pcm16,
    is_digital_silence,
    pcm16_to_float,
    resample,
    resample_pcm16,
    rms_dbfs,
)
from schemas import (
    AudioFormat,
    ErrorCode,
    InputAudioFormat,
    InputTooLargeError,
    InvalidAudioError,
)


def tone(
    freq: float = 440.0, seconds: float = 1.0, rate: int = 16000, level: float = 0.5
) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(samples.size, 1 / rate)[int(np.argmax(spectrum))])


@pytest.fixture(scope="module")
def speechlike() -> bytes:
    """1.5 s of a tone with a rising pitch: enough structure to survive lossy codecs."""
    t = np.arange(24000) / 16000
    samples = 0.4 * np.sin(2 * np.pi * (300 + 200 * t) * t)
    return float_to_pcm16(samples)


# -- PCM16 ------------------------------------------------------------------------------


def test_pcm16_float_round_trip_and_clipping() -> None:
    samples = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 1.7, -3.0], dtype=np.float32)
    pcm = float_to_pcm16(samples)
    assert np.frombuffer(pcm, "<i2").tolist() == [0, 16384, -16384, 32767, -32768, 32767, -32768]
    back = pcm16_to_float(pcm)
    assert back.dtype == np.float32
    assert np.allclose(back[:3], samples[:3], atol=1 / 32768)


@pytest.mark.parametrize(
    ("data", "code"),
    [(b"", ErrorCode.EMPTY_INPUT), (b"\x00\x01\x02", ErrorCode.INVALID_AUDIO)],
)
def test_bad_pcm16_is_refused_with_a_code(data: bytes, code: ErrorCode) -> None:
    with pytest.raises(InvalidAudioError) as info:
        pcm16_to_float(data)
    assert info.value.code == code
    with pytest.raises(InvalidAudioError):
        check_pcm16(data)


def test_non_finite_and_multichannel_floats_are_refused() -> None:
    with pytest.raises(InvalidAudioError):
        float_to_pcm16(np.array([0.0, np.nan]))
    with pytest.raises(InvalidAudioError):
        float_to_pcm16(np.zeros((2, 10)))


def test_sample_rate_check() -> None:
    assert check_sample_rate(16000) == 16000
    with pytest.raises(InvalidAudioError) as info:
        check_sample_rate(12345)
    assert info.value.code == ErrorCode.UNSUPPORTED_SAMPLE_RATE
    assert check_sample_rate(12345, None) == 12345
    with pytest.raises(InvalidAudioError):
        check_sample_rate(0, None)


def test_rms_dbfs() -> None:
    assert rms_dbfs(np.zeros(100, np.float32)) == float("-inf")
    assert rms_dbfs(np.ones(100, np.float32)) == pytest.approx(0.0)
    assert rms_dbfs(tone(level=0.1)) == pytest.approx(-23.0, abs=0.1)


# -- resampling ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("src", "dst"), [(48000, 16000), (16000, 24000), (22050, 16000), (8000, 16000)]
)
def test_resample_keeps_length_and_pitch(src: int, dst: int) -> None:
    out = resample(tone(440.0, 1.0, src), src, dst)
    assert out.dtype == np.float32
    assert abs(out.size - dst) <= 2
    assert dominant_hz(out, dst) == pytest.approx(440.0, abs=2.0)


def test_resample_pcm16_same_rate_is_identity() -> None:
    pcm = float_to_pcm16(tone())
    assert resample_pcm16(pcm, 16000, 16000) is pcm
    assert len(resample_pcm16(pcm, 16000, 8000)) == len(pcm) // 2


def test_streaming_resampler_matches_whole_buffer() -> None:
    pcm = float_to_pcm16(tone(300.0, 1.0, 48000))
    resampler = PcmResampler(48000, 16000)
    out = b"".join(resampler.push(pcm[i : i + 1001]) for i in range(0, len(pcm), 1001))
    out += resampler.flush()
    whole = pcm16_to_float(resample_pcm16(pcm, 48000, 16000))
    streamed = pcm16_to_float(out)
    assert abs(streamed.size - whole.size) <= 2
    n = min(streamed.size, whole.size)
    # Same filter, continuous state: differences are rounding, not clicks.
    assert np.max(np.abs(streamed[:n] - whole[:n])) < 0.01


@pytest.mark.parametrize("size", [0, 1, 2, 640, 960, 1024])
def test_digital_silence_is_every_byte_zero(size: int) -> None:
    assert is_digital_silence(bytes(size))
    if size:
        assert not is_digital_silence(bytes(size - 1) + b"\x01")  # the last byte counts
        assert not is_digital_silence(b"\x01" + bytes(size - 1))


# -- decoding ------------------------------------------------------------------------------


def _soundfile_bytes(samples: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("fmt", "subtype"), [("WAV", "PCM_16"), ("FLAC", None), ("OGG", "VORBIS"), ("WAV", "FLOAT")]
)
def test_decode_common_formats_to_pcm16_at_the_rate_asked(fmt: str, subtype: str | None) -> None:
    stereo = np.stack([tone(440.0, 1.0, 44100), tone(440.0, 1.0, 44100)], axis=1)
    data = _soundfile_bytes(stereo, 44100, fmt, subtype)
    pcm = decode_audio(data, sample_rate=16000)
    samples = pcm16_to_float(pcm)
    assert abs(samples.size - 16000) < 400  # Vorbis adds a little priming
    assert dominant_hz(samples, 16000) == pytest.approx(440.0, abs=3.0)


def test_decode_mp3_and_opus_from_our_own_encoder(speechlike: bytes) -> None:
    for fmt in (AudioFormat.MP3, AudioFormat.OPUS):
        decoded = decode_audio(encode_audio(speechlike, 16000, fmt), sample_rate=16000)
        assert abs(len(decoded) - len(speechlike)) < 0.1 * len(speechlike), fmt


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("empty", ErrorCode.EMPTY_INPUT),
        ("text", ErrorCode.UNSUPPORTED_FORMAT),
        ("random", ErrorCode.UNSUPPORTED_FORMAT),
        ("wav_header_only", ErrorCode.EMPTY_INPUT),
        ("flac_corrupt", ErrorCode.INVALID_AUDIO),
    ],
)
def test_bad_uploads_give_clear_errors(name: str, code: ErrorCode) -> None:
    flac = _soundfile_bytes(tone(), 16000, "FLAC")
    cases = {
        "empty": b"",
        "text": b"this is a text file, not audio\n" * 20,
        "random": np.random.default_rng(1).bytes(4096),
        "wav_header_only": _soundfile_bytes(np.zeros(0, np.float32), 16000, "WAV", "PCM_16"),
        "flac_corrupt": flac[:100] + bytes(3000),
    }
    with pytest.raises(InvalidAudioError) as info:
        decode_audio(cases[name])
    assert info.value.code == code
    assert info.value.message


def test_decode_refuses_audio_longer_than_allowed() -> None:
    data = _soundfile_bytes(tone(seconds=3.0), 16000, "FLAC")
    with pytest.raises(InputTooLargeError):
        decode_audio(data, max_seconds=1.0)
    assert len(decode_audio(data, max_seconds=5.0)) == 3 * 16000 * 2


# -- encoding ------------------------------------------------------------------------------


def test_wav_whole_buffer_has_exact_header(speechlike: bytes) -> None:
    data = encode_audio(speechlike, 16000, "wav", output_rate=24000)
    with wave.open(io.BytesIO(data)) as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (
            1,
            2,
            24000,
        )
        assert abs(reader.getnframes() - 36000) <= 2


@pytest.mark.parametrize("fmt", list(AudioFormat))
def test_streaming_encoder_yields_as_it_goes_and_decodes_back(
    fmt: AudioFormat, speechlike: bytes
) -> None:
    pieces: list[bytes] = []
    with AudioEncoder(fmt, 16000, output_rate=24000) as encoder:
        for i in range(0, len(speechlike), 3200):  # 100 ms chunks
            pieces.append(encoder.encode(speechlike[i : i + 3200]))
        pieces.append(encoder.finish())
    assert encoder.sample_rate == 24000
    assert sum(1 for p in pieces[:-1] if p) >= len(pieces) // 2, "output should flow while encoding"
    data = b"".join(pieces)
    if fmt is AudioFormat.PCM16:
        assert abs(len(data) - 36000 * 2) <= 8
        return
    if fmt in (AudioFormat.PCMU, AudioFormat.PCMA):  # raw G.711: no header to tell it by
        assert abs(len(data) - 36000) <= 8  # a byte a sample
        heard = pcm16_to_float(decode_frames(data, InputAudioFormat(fmt.value), 24000))
        sent = pcm16_to_float(resample_pcm16(speechlike, 16000, 24000))
        n = min(len(heard), len(sent))
        assert np.corrcoef(heard[:n], sent[:n])[0, 1] > 0.99
        return
    decoded = decode_audio(data, sample_rate=16000)
    assert abs(len(decoded) - len(speechlike)) < 0.1 * len(speechlike)
    assert encoder.content_type.startswith("audio/")


#: G.711's own code points (ITU-T G.711 tables): μ-law 0xFF and 0x7F are the two zeros,
#: 0x00 and 0x80 its largest magnitudes (±32124); A-law 0xD5 / 0x55 are ±8, the smallest
G711_POINTS = [
    (InputAudioFormat.PCMU, b"\xff\x7f\x00\x80", [0, 0, -32124, 32124]),
    (InputAudioFormat.PCMA, b"\xd5\x55\x2a\xaa", [8, -8, -32256, 32256]),
]


@pytest.mark.parametrize(("law", "coded", "samples"), G711_POINTS)
def test_g711_decodes_to_the_standards_values(
    law: InputAudioFormat, coded: bytes, samples: list[int]
) -> None:
    assert np.frombuffer(decode_frames(coded, law, 8000), "<i2").tolist() == samples


@given(data=st.binary(max_size=400),
       law=st.sampled_from([InputAudioFormat.PCMU, InputAudioFormat.PCMA]))
def test_any_g711_frame_is_a_sample_a_byte_and_encodes_back(
    data: bytes, law: InputAudioFormat
) -> None:
    pcm = decode_frames(data, law, 8000)
    assert len(pcm) == 2 * len(data)
    if data:  # μ-law has two zeros (0xFF, 0x7F): the samples come back, not every byte
        assert decode_frames(encode_audio(pcm, 8000, law.value), law, 8000) == pcm


def test_pcm16_frames_must_be_whole_samples() -> None:
    assert decode_frames(b"\x01\x00", InputAudioFormat.PCM16, 16000) == b"\x01\x00"
    with pytest.raises(InvalidAudioError):
        decode_frames(b"\x01", InputAudioFormat.PCM16, 16000)


def test_opus_takes_only_its_rates_and_unknown_formats_fail() -> None:
    with AudioEncoder("opus", 22050) as encoder:
        assert encoder.sample_rate == 48000
    with AudioEncoder("opus", 16000) as encoder:
        assert encoder.sample_rate == 16000
    with pytest.raises(InvalidAudioError) as info:
        AudioEncoder("wma", 16000)
    assert info.value.code == ErrorCode.UNSUPPORTED_FORMAT
    with pytest.raises(InvalidAudioError):
        encode_audio(b"", 16000, "wav")
    with pytest.raises(InvalidAudioError):
        AudioEncoder("wav", 16000).encode(b"\x00")

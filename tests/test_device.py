"""The torch-free device runtime: export, streaming API, concurrency, resampling, lattices,
model-directory validation and the transcribe/listen commands, on the tiny model that
overfits four synthesized utterances (see tiny_model.py)."""

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from edgevoice.audio.io import read_audio, resample, write_audio
from edgevoice.device.lattice import Lattice
from edgevoice.device.recognizer import Recognizer
from edgevoice.errors import AudioError, ConfigError, LatticeError, ModelError

from tiny_model import SENTENCES

EV = [sys.executable, "-m", "edgevoice.cli"]


@pytest.fixture(scope="module")
def recognizer(exported):
    return Recognizer.load(exported, precision="float32")  # compared with the torch decoder


@pytest.fixture(scope="module")
def audio(corpus):
    return [read_audio(corpus / f"u{i}.flac") for i in range(len(SENTENCES))]


def test_device_transcribes_like_the_torch_decoder(overfit, recognizer, audio):

    from edgevoice.train.decode import streaming_beam_search
    from edgevoice.train.evaluate import TrainedModel

    torch_model = TrainedModel(overfit[0])
    for samples, sentence in zip(audio, SENTENCES):
        result = recognizer.transcribe(samples)
        assert result.text == sentence
        reference = streaming_beam_search(torch_model.model, torch_model.features_of(samples), chunk_frames=16, beam=4)
        assert [h["tokens"] for h in result.nbest] == [h.tokens for h in reference]
        assert [h["score"] for h in result.nbest] == pytest.approx([h.score for h in reference], abs=1e-3)
        times = result.nbest[0]["token_times"]
        assert len(times) == len(result.tokens) and times == sorted(times)
        assert result.words[0]["start"] == times[0]
        words = [w["word"] for w in result.words]
        assert words == sentence.split()
        starts = [w["start"] for w in result.words]
        assert starts == sorted(starts) and 0 <= starts[0] and result.words[-1]["end"] <= result.audio_seconds
        assert result.audio_seconds == pytest.approx(len(samples) / 16000)
        assert result.compute_seconds > 0 and result.finish_seconds > 0


def test_int8_model_is_smaller_and_still_transcribes(exported, audio):
    meta = json.loads((exported / "metadata.json").read_text())
    float_bytes = sum((exported / f).stat().st_size for f in meta["variants"]["float32"].values())
    int8_bytes = sum((exported / f).stat().st_size for f in meta["variants"]["int8"].values())
    assert int8_bytes < 0.5 * float_bytes
    int8 = Recognizer.load(exported, precision="int8")
    texts = [int8.transcribe(x).text for x in audio]
    assert sum(t == s for t, s in zip(texts, SENTENCES)) >= 3, texts


def test_default_precision_is_int8_where_exported(exported, tmp_path, audio):
    auto = Recognizer.load(exported)
    assert auto.precision == "int8" and Recognizer.load(exported, precision="float32").precision == "float32"
    int8 = Recognizer.load(exported, precision="int8")
    assert [auto.transcribe(x).nbest for x in audio[:2]] == [int8.transcribe(x).nbest for x in audio[:2]]
    d = _copy(exported, tmp_path / "float-only")
    meta = json.loads((d / "metadata.json").read_text())
    del meta["variants"]["int8"]
    (d / "metadata.json").write_text(json.dumps(meta))
    assert Recognizer.load(d).precision == "float32"  # an export without --int8
    with pytest.raises(ConfigError, match="precision must be one of auto, float32, int8, got 'fp16'"):
        Recognizer.load(exported, precision="fp16")
    del meta["variants"]["float32"]
    (d / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="names no float32 or int8 variant"):
        Recognizer.load(d)


def test_streaming_in_odd_chunks_equals_one_call(recognizer, audio):
    rng = np.random.default_rng(0)
    for samples in audio:
        whole = recognizer.transcribe(samples)
        stream = recognizer.create_stream()
        pos, partials = 0, []
        while pos < len(samples):
            n = int(rng.choice([1, 7, 160, 333, 999, 4000]))
            stream.accept_waveform(16000, samples[pos : pos + n])
            partials.append(stream.partial_text)
            pos += n
        result = stream.finish()
        assert result.nbest == whole.nbest
        assert partials[-1] == whole.text or whole.text.startswith(partials[-1])
    with pytest.raises(AudioError, match="finished"):
        stream.accept_waveform(16000, audio[0][:100])


def test_many_streams_share_one_model_across_threads(recognizer, audio):
    expected = [recognizer.transcribe(x).nbest for x in audio]
    results: dict[int, list] = {}

    def work(i: int) -> None:
        samples = audio[i % len(audio)]
        stream = recognizer.create_stream()
        for start in range(0, len(samples), 1234):
            stream.accept_waveform(16000, samples[start : start + 1234])
        results[i] = stream.finish().nbest

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[i] == expected[i % len(audio)] for i in range(12))


def test_other_sample_rates_are_resampled(recognizer, audio):
    for rate in (8000, 22050, 44100, 48000):
        x = resample(audio[0], 16000, rate)
        stream = recognizer.create_stream()
        for start in range(0, len(x), 777):  # chunked: the resampler keeps its state
            stream.accept_waveform(rate, x[start : start + 777])
        result = stream.finish()
        assert result.audio_seconds == pytest.approx(len(audio[0]) / 16000, abs=0.01)
        if rate > 16000:
            assert result.text == SENTENCES[0]
    int16 = (audio[1] * 32767).astype(np.int16)
    assert recognizer.transcribe(int16).text == SENTENCES[1]
    stream = recognizer.create_stream()
    stream.accept_waveform(16000, audio[0][:1000])
    with pytest.raises(AudioError, match="sample rate changed"):
        stream.accept_waveform(8000, audio[0][:1000])


@pytest.mark.parametrize("bad, message", [
    (np.array([0.1, np.nan], np.float32), "NaN"),
    (np.zeros((3, 3, 3), np.float32), "mono"),
    (np.array(["a"]), "float or int16"),
])
def test_bad_samples_are_refused(recognizer, bad, message):
    with pytest.raises(AudioError, match=message):
        recognizer.create_stream().accept_waveform(16000, bad)
    with pytest.raises(AudioError, match="sample rate"):
        recognizer.create_stream().accept_waveform(0, np.zeros(10, np.float32))


def test_empty_audio_gives_an_empty_result(recognizer):
    result = recognizer.create_stream().finish()
    assert result.text == "" and result.words == [] and result.audio_seconds == 0
    assert Lattice.from_bytes(result.lattice.to_bytes()).nbest()[0]["text"] == ""


def test_lattice_round_trips_and_holds_the_nbest(recognizer, audio):
    for samples in audio:
        result = recognizer.transcribe(samples)
        lat = result.lattice
        blob = lat.to_bytes()
        assert len(blob) < 0.02 * 2 * len(samples)  # well under 2 % of the 16-bit audio
        back = Lattice.from_bytes(blob)
        assert back.num_states == lat.num_states and [a.word for a in back.arcs] == [a.word for a in lat.arcs]
        assert [a.start for a in back.arcs] == [a.start for a in lat.arcs]
        assert [a.logprob for a in back.arcs] == pytest.approx([a.logprob for a in lat.arcs], rel=1e-3, abs=1e-3)  # f16
        via_json = Lattice.from_json(json.dumps(lat.to_json()))
        assert via_json.to_json() == lat.to_json()
        texts = {h["text"] for h in result.nbest}
        lattice_nbest = lat.nbest(10)
        assert {h["text"] for h in lattice_nbest} == texts
        assert lattice_nbest[0]["text"] == result.text
        assert sum(h["posterior"] for h in lattice_nbest) == pytest.approx(1.0, abs=1e-4)
        assert lattice_nbest[0]["score"] == pytest.approx(result.nbest[0]["score"], abs=1e-3) or \
            len([h for h in result.nbest if h["text"] == result.text]) > 1
        assert lat.oracle_errors(SENTENCES[0])[0] <= len(SENTENCES[0].split())
        assert "<svg" in lat.to_svg() and all(w in lat.to_svg() for w in result.text.split())


def test_lattice_merges_prefixes_and_suffixes():
    def words(text, start=0.0):
        return [{"word": w, "start": start + i, "end": start + i + 0.5} for i, w in enumerate(text.split())]

    hyps = [(words("turn on the light"), -1.0), (words("turn on the lights"), -2.0), (words("turn off the light"), -3.0),
            (words("turn on the light"), -4.0)]  # a duplicate word sequence adds up
    lat = Lattice.from_nbest(hyps, 5.0)
    assert sum(1 for a in lat.arcs if a.word == "turn") == 1  # common prefix merged
    assert {h["text"] for h in lat.nbest()} == {"turn on the light", "turn on the lights", "turn off the light"}
    best = lat.nbest()[0]
    assert best["score"] == pytest.approx(np.logaddexp(-1.0, -4.0), abs=1e-4)
    assert all(a.dst > a.src for a in lat.arcs)
    # "the light" after "on" and after "off" end at equal times with equal weights only
    # if their futures match; the "lights" branch keeps them apart here.
    assert lat.oracle_errors("turn off the light") == (0, "turn off the light")
    assert lat.oracle_errors("turn off the lights")[0] == 1
    same_future = Lattice.from_nbest([(words("a b c"), -1.0), (words("x b c"), -1.0)])
    assert same_future.num_states == 4  # b c shared after a / x


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:-1], "checksum|truncated"),
    (lambda b: b"XXXX" + b[4:], "magic"),
    (lambda b: b[:4] + bytes([9]) + b[5:], "version"),
    (lambda b: b[:20] + bytes([b[20] ^ 0xFF]) + b[21:], "checksum"),
    (lambda b: b"", "magic"),
])
def test_malformed_binary_lattices_are_refused(damage, message):
    lat = Lattice.from_nbest([([{"word": "call", "start": 0.1, "end": 0.3}, {"word": "mom", "start": 0.4, "end": 0.6}], -1.0)])
    with pytest.raises(LatticeError, match=message):
        Lattice.from_bytes(damage(lat.to_bytes()))


def test_malformed_json_lattices_are_refused():
    good = Lattice.from_nbest([([{"word": "hi", "start": 0.0, "end": 0.2}], -1.0)]).to_json()
    cyclic = json.loads(json.dumps(good))
    cyclic["arcs"].append({"from": 1, "to": 0, "word": "hi", "logprob": 0.0, "start": 0, "end": 0})
    with pytest.raises(LatticeError, match="cycle"):
        Lattice.from_json(cyclic)
    with pytest.raises(LatticeError, match="malformed"):
        Lattice.from_json({"version": 1, "num_states": 2})
    with pytest.raises(LatticeError, match="out of range"):
        Lattice.from_json(dict(good, finals={"7": 0.0}))


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_corrupt_model_directories_are_named(exported, tmp_path, overfit):
    with pytest.raises(ModelError, match="not found"):
        Recognizer.load(tmp_path / "nowhere")
    with pytest.raises(ModelError, match="export"):
        Recognizer.load(overfit[0])  # a training run, not exported
    d = _copy(exported, tmp_path / "truncated")
    data = (d / "encoder.onnx").read_bytes()
    (d / "encoder.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="encoder.onnx is corrupt"):
        Recognizer.load(d, precision="float32")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        Recognizer.load(d, precision="float32", verify_checksums=False)
    assert Recognizer.load(d).precision == "int8"  # the default never reads the float32 files
    data = (d / "encoder.int8.onnx").read_bytes()
    (d / "encoder.int8.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="encoder.int8.onnx is corrupt"):  # no silent fall-back to float32
        Recognizer.load(d)
    d = _copy(exported, tmp_path / "newer")
    meta = json.loads((d / "metadata.json").read_text())
    (d / "metadata.json").write_text(json.dumps(dict(meta, format_version=99)))
    with pytest.raises(ModelError, match="newer"):
        Recognizer.load(d)
    (d / "metadata.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        Recognizer.load(d)
    (d / "metadata.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "cmvn"}))
    with pytest.raises(ModelError, match="cmvn"):
        Recognizer.load(d)
    d = _copy(exported, tmp_path / "no-int8")
    meta = json.loads((d / "metadata.json").read_text())
    del meta["variants"]["int8"]
    (d / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="no int8 variant"):
        Recognizer.load(d, precision="int8")
    (d / "tokenizer.model").unlink()
    with pytest.raises(ModelError, match="tokenizer.model is missing"):
        Recognizer.load(d)


def test_device_runtime_runs_with_torch_unimportable(exported, corpus):
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'torch' or name.startswith('torch.'):\n"
            "            raise ImportError('torch is blocked in this test')\n"
            "sys.meta_path.insert(0, Block())\n"
            "from edgevoice.audio.io import read_audio\n"
            "from edgevoice.device.recognizer import Recognizer\n"
            f"r = Recognizer.load({str(exported)!r}, precision='float32')\n"
            f"print(r.transcribe(read_audio({str(corpus / 'u1.flac')!r})).text)\n"
            "assert 'torch' not in sys.modules\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == SENTENCES[1]


def test_transcribe_command(exported, corpus, tmp_path):
    empty = tmp_path / "empty.wav"
    write_audio(empty, np.zeros(0, np.float32))
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF not really audio")
    loud = tmp_path / "u2-44k.wav"
    write_audio(loud, resample(read_audio(corpus / "u2.flac"), 16000, 44100), 44100)
    files = [corpus / "u0.flac", empty, garbage, loud]
    out = subprocess.run(EV + ["transcribe", "--model", str(exported), "--json", "--nbest", "2",
                               "--lattice-dir", str(tmp_path / "lat"), *map(str, files)], capture_output=True, text=True)
    assert out.returncode == 1  # some files failed, the others were transcribed
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line["file"] for line in lines] == [str(f) for f in files]
    assert lines[0]["text"] == SENTENCES[0] and len(lines[0]["nbest"]) == 2
    assert [w["word"] for w in lines[0]["words"]] == SENTENCES[0].split()
    assert "error" in lines[1] and "error" in lines[2] and str(garbage) in out.stderr
    assert lines[3]["text"] == SENTENCES[2]
    blob = (tmp_path / "lat" / "u0.evlt").read_bytes()
    assert Lattice.from_bytes(blob).nbest(1)[0]["text"] == SENTENCES[0]
    assert (tmp_path / "lat" / "u0.svg").exists()
    human = subprocess.run(EV + ["transcribe", "--model", str(exported), str(corpus / "u3.flac")], capture_output=True,
                           text=True)
    assert human.returncode == 0 and SENTENCES[3] in human.stdout and "real-time factor" in human.stdout
    assert "int8 model" in human.stdout  # the default where the export has int8
    exact = subprocess.run(EV + ["transcribe", "--model", str(exported), "--precision", "float32", str(corpus / "u3.flac")],
                           capture_output=True, text=True)
    assert exact.returncode == 0 and SENTENCES[3] in exact.stdout and "float32 model" in exact.stdout
    both = subprocess.run(EV + ["transcribe", "--model", str(exported), "--precision", "float32", "--int8",
                                str(corpus / "u3.flac")], capture_output=True, text=True)
    assert both.returncode != 0 and "--int8 contradicts --precision float32" in both.stderr


def test_listen_reads_pcm_from_stdin(exported, corpus):
    x = resample(read_audio(corpus / "u3.flac"), 16000, 48000)
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
    out = subprocess.run(EV + ["listen", "--model", str(exported), "--stdin", "--rate", "48000", "--json"], input=pcm,
                         capture_output=True)
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.decode().splitlines()]
    finals = [e for e in events if e["event"] == "final_end"]
    assert len(finals) == 1 and finals[0]["text"] == SENTENCES[3]
    assert events[-1]["event"] == "intent" and "slots" in events[-1]  # understanding of the request
    partials = [e for e in events if e["event"] == "partial"]
    assert partials and all(SENTENCES[3].startswith(e["text"]) for e in partials)
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)
    # Two requests separated by silence: the end-pointer ends the first, the second follows.
    two = pcm + np.zeros(48000 * 3, "<i2").tobytes() + pcm
    out = subprocess.run(EV + ["listen", "--model", str(exported), "--stdin", "--rate", "48000", "--json", "--no-understand"],
                         input=two, capture_output=True)
    finals = [json.loads(line) for line in out.stdout.decode().splitlines() if '"final_end"' in line]
    # (the tiny model knows its four utterances only as recorded, so the second request's
    # text is not checked: it starts wherever the first one ended)
    assert len(finals) >= 2 and finals[0]["text"] == SENTENCES[3] and finals[-1]["time"] > finals[0]["time"] + 3

import json

import numpy as np
import pytest
import soundfile as sf

from edgevoice.audio.io import read_audio
from edgevoice.corpus.loaders import (REAL_SETS, import_corpus, load_common_voice, load_jsonl, load_kaldi_dir,
                                      load_librispeech, load_real_set)
from edgevoice.corpus.manifest import read_manifest, validate_record
from edgevoice.errors import AudioError, ManifestError

from conftest import shared_data_or_skip


def tone(seconds=0.5, rate=16000, freq=440.0):
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_librispeech_layout(tmp_path):
    chapter = tmp_path / "19" / "198"
    chapter.mkdir(parents=True)
    sf.write(chapter / "19-198-0000.flac", tone(1.0), 16000)
    sf.write(chapter / "19-198-0001.flac", tone(0.5), 16000)
    (chapter / "19-198.trans.txt").write_text("19-198-0000 NORTHANGER ABBEY\n19-198-0001 CHAPTER 1\n")
    records = load_librispeech(tmp_path)
    assert [r["text"] for r in records] == ["northanger abbey", "chapter one"]
    assert records[0]["speaker"] == "librispeech:19" and records[0]["duration"] == pytest.approx(1.0)
    for r in records:
        validate_record(r)


def test_common_voice_tsv_with_mp3_clips(tmp_path):
    (tmp_path / "clips").mkdir()
    sf.write(tmp_path / "clips" / "a.mp3", tone(1.0, 48000), 48000, format="MP3")
    (tmp_path / "dev.tsv").write_text("client_id\tpath\tsentence\taccents\nabc\ta.mp3\tHello there, 2 cats!\tus\n")
    (rec,) = load_common_voice(tmp_path / "dev.tsv")
    assert rec["text"] == "hello there two cats" and rec["split"] == "dev" and rec["sample_rate"] == 48000
    x = read_audio(rec["audio"])
    assert len(x) / 16000 == pytest.approx(1.0, abs=0.1)  # mp3 adds codec padding


def test_kaldi_dir_with_paths_pipes_and_segments(tmp_path):
    sf.write(tmp_path / "a.wav", tone(2.0), 16000)
    sf.write(tmp_path / "b.wav", tone(1.0, 8000), 8000)
    (tmp_path / "wav.scp").write_text(f"recA {tmp_path / 'a.wav'}\nrecB sox {tmp_path / 'b.wav'} -t wav - |\n")
    (tmp_path / "segments").write_text("u1 recA 0.0 0.5\nu2 recA 0.5 2.0\nu3 recB 0.0 1.0\n")
    (tmp_path / "text").write_text("u1 turn on\nu2 the lights\nu3 now\n")
    (tmp_path / "utt2spk").write_text("u1 s1\nu2 s1\nu3 s2\n")
    records = load_kaldi_dir(tmp_path)
    assert [(r["id"], r["text"], r["speaker"]) for r in records] == [
        ("u1", "turn on", "kaldi:s1"), ("u2", "the lights", "kaldi:s1"), ("u3", "now", "kaldi:s2")]
    assert [r["duration"] for r in records] == pytest.approx([0.5, 1.5, 1.0], abs=0.01)
    written = import_corpus(records, tmp_path / "out")
    assert [r["duration"] for r in read_manifest(tmp_path / "out")] == [r["duration"] for r in written]


def test_plain_jsonl(tmp_path):
    sf.write(tmp_path / "x.wav", tone(0.7, 22050), 22050)
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio": "x.wav", "text": "Play Jazz", "speaker": "me"}) + "\n")
    (rec,) = load_jsonl(tmp_path / "m.jsonl")
    assert rec["text"] == "play jazz" and rec["sample_rate"] == 22050
    out = import_corpus([rec], tmp_path / "imported")
    assert out[0]["sample_rate"] == 16000 and sf.info(tmp_path / "imported" / out[0]["audio"]).samplerate == 16000


def test_loader_errors_name_the_problem(tmp_path):
    with pytest.raises(ManifestError, match="trans.txt"):
        load_librispeech(tmp_path)
    with pytest.raises(ManifestError, match="wav.scp"):
        load_kaldi_dir(tmp_path)
    (tmp_path / "m.jsonl").write_text('{"audio": "missing.wav", "text": "x"}\n')
    with pytest.raises(AudioError, match="missing.wav"):
        load_jsonl(tmp_path / "m.jsonl")
    (tmp_path / "n.jsonl").write_text("{not json\n")
    with pytest.raises(ManifestError, match="n.jsonl:1"):
        load_jsonl(tmp_path / "n.jsonl")


@pytest.mark.parametrize("content, message", [(b"", "empty"), (b"RIFF\x00\x00garbage" * 10, "cannot read"),
                                              (b"\x00" * 1000, "cannot read")])
def test_unreadable_audio(tmp_path, content, message):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=message) as info:
        read_audio(path)
    assert "bad.wav" in str(info.value)


def test_missing_audio(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        read_audio(tmp_path / "nothing.flac")


@pytest.mark.parametrize("name", REAL_SETS)
def test_real_sets_load_into_the_schema(name):
    shared_data_or_skip()
    records = load_real_set(name)
    assert len(records) > 100
    for r in records[:50]:
        validate_record(r)
    x = read_audio(records[0]["audio"])
    assert len(x) / 16000 == pytest.approx(records[0]["duration"], abs=0.01)  # resampled to 16 kHz
    if name != "librispeech_unlabeled":
        assert all(r["text"] for r in records)


def test_real_set_layout_from_a_built_fixture(tmp_path):
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "a.flac", tone(0.8, 8000), 8000)
    rows = [{"id": "x-a", "audio": "audio/a.flac", "text": "Activated.", "speaker": "allison", "sample_rate": 8000,
             "duration": 0.8, "split": "dev"}]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (rec,) = load_real_set(tmp_path)
    assert rec["text"] == "activated" and rec["split"] == "dev" and rec["engine"] == "human"
    assert len(read_audio(rec["audio"])) == int(0.8 * 16000)
    with pytest.raises(ManifestError, match="no real set"):
        load_real_set(tmp_path / "absent")

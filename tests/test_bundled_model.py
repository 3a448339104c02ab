"""The bundled default model and sample audio, exactly as the README's main command uses
them: both precisions load (which checks the format and every file's checksum), and the
recognizer gets most words of the bundled commands (spoken by held-out voices) right. A
guard against shipping a broken or mismatched export, not an accuracy benchmark (that is
benchmarks/recognizer_eval.py)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgevoice.audio.io import read_audio
from edgevoice.device.recognizer import Recognizer
from edgevoice.text.metrics import word_error_rate

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "default"
SAMPLES = ROOT / "samples"


def sample_references() -> dict[str, str]:
    """What each bundled sample says, read from the script that synthesized it."""
    script = (SAMPLES.parent / "scripts" / "make_samples.sh").read_text()
    pairs = re.findall(r'corpus say "([^"]+)" .*--out samples/(\S+\.flac)', script)
    assert len(pairs) == 4, "scripts/make_samples.sh should make the four bundled samples"
    return {name: text for text, name in pairs}


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_bundled_model_recognizes_the_bundled_samples(precision):
    recognizer = Recognizer.load(MODEL, precision=precision)
    references, hypotheses = [], []
    for name, text in sample_references().items():
        result = recognizer.transcribe(read_audio(SAMPLES / name))
        references.append(text)
        hypotheses.append(result.text)
        assert result.words and result.lattice is not None
    # The shipped (stage-8) model makes 6 word errors in these 28 words, float32 and int8 alike.
    assert word_error_rate(references, hypotheses) <= 0.4, list(zip(references, hypotheses))
    assert any(h.startswith("hey edgevoice") for h in hypotheses)


def test_readme_main_command_runs():
    out = subprocess.run([sys.executable, "-m", "edgevoice.cli", "transcribe", "--json", *sorted(map(str, SAMPLES.glob("*.flac")))],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    assert len(lines) == 4 and all(line["text"] for line in lines)


def test_listen_with_the_bundled_end_pointer_ends_each_request_in_digital_silence():
    """Two commands, each followed by 2.5 s of exact zeros (a file, a muted input): the bundled
    end-pointer (speech detector + learned model) ends both within ~1.5 s of their speech, and
    the silence left when the input ends is not reported as a request of its own."""
    import numpy as np

    speech = read_audio(SAMPLES / "jazz.flac")
    gap = np.zeros(40000, np.float32)
    audio = np.concatenate([speech, gap, speech, gap])
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    out = subprocess.run([sys.executable, "-m", "edgevoice.cli", "listen", "--stdin", "--rate", "16000", "--json"],
                         input=pcm, capture_output=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.decode().splitlines()]
    finals = [e for e in events if e["event"] == "final_end"]
    assert len(finals) == 2 and all(e["text"] for e in finals), finals
    second_start = (len(speech) + len(gap)) / 16000
    assert finals[0]["time"] < len(speech) / 16000 + 1.6
    assert second_start < finals[1]["time"] < second_start + len(speech) / 16000 + 1.6
    assert sum(e["event"] == "intent" for e in events) == 2

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

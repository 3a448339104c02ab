"""The layout's rules: the device side and audio/ never import torch."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from edgevoice.corpus.layout import lay_out, natural_pause_positions

SRC = Path(__file__).resolve().parents[1] / "src" / "edgevoice"


def test_device_and_audio_never_import_torch():
    # The device's cloud client belongs to the device side too.
    for path in [*(SRC / "device").rglob("*.py"), *(SRC / "audio").rglob("*.py"), SRC / "cloud" / "client.py"]:
        for line in path.read_text().splitlines():
            stripped = line.strip()
            assert not stripped.startswith(("import torch", "from torch")), f"{path}: {line}"
    # And at run time, with torch made unimportable.
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'torch' or name.startswith('torch.'):\n"
            "            raise ImportError('torch is blocked in this test')\n"
            "sys.meta_path.insert(0, Block())\n"
            "import edgevoice.audio.io, edgevoice.audio.augment, edgevoice.audio.analysis, edgevoice.text.normalize\n"
            "import edgevoice.device, edgevoice.device.recognizer, edgevoice.device.nlu, edgevoice.device.endpoint\n"
            "import edgevoice.device.speculation, edgevoice.device.heard_forms, edgevoice.cloud.client\n"
            "assert 'torch' not in sys.modules\nprint('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


def test_stream_layout_times():
    rate = 16000
    pieces = [np.ones(rate, np.float32), np.ones(rate // 2, np.float32)]
    wake = np.ones(rate // 4, np.float32)
    lay = lay_out(pieces, [2, 5], [0.6], lead_silence=0.5, trail_silence=0.8, wake=wake, wake_text="hey edgevoice",
                  wake_gap=0.3)
    assert lay.wake_word == {"text": "hey edgevoice", "start": 0.5, "end": 0.75}
    assert lay.speech_start == 0.5
    assert lay.pauses == [{"start": 2.05, "end": 2.65, "after_word": 4}]
    assert lay.speech_end == 3.15
    assert len(lay.audio) == int(3.95 * rate)
    assert lay.audio[int(2.1 * rate):int(2.6 * rate)].max() == 0  # the pause is silent


def test_natural_pause_positions():
    words = "set a timer for ten minutes".split()
    assert natural_pause_positions(words, [4]) == [3, 4]  # before "for" and before the slot value

"""A four-sentence corpus and a tiny transducer that overfits it: shared by the training,
export and device tests (trained once per test session, see conftest.py)."""

import json
from pathlib import Path

import numpy as np

from conftest import engines_or_fail

from edgevoice.audio.io import write_audio
from edgevoice.corpus.tts import Synthesizer, Voice

SENTENCES = ["turn on the lights", "call mom", "play some jazz", "stop the music"]
TINY = {
    "vocab_size": 34, "epochs": 160, "max_frames": 4000, "lr": 0.003, "min_lr_ratio": 0.3, "warmup_steps": 10,
    "spec_augment": False,
    "dev_utterances": 4, "checkpoint_every": 1000, "average_last": 1, "threads": 1,
    "model": {"encoder_dim": 96, "encoder_layers": 1, "subsampling_channels": 8, "predictor_embed_dim": 32,
              "predictor_dim": 64, "joiner_dim": 96, "dropout": 0.0},
}


def make_corpus(folder: Path, copies: int = 1) -> Path:
    """Each sentence by one flite voice, listed `copies` times for training and once for dev."""
    engines_or_fail()
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    rng = np.random.default_rng(0)
    with Synthesizer() as synth:
        for i, text in enumerate(SENTENCES):
            speech = synth.synthesize(text, Voice.parse("flite:slt:p1.00:w1.00"))
            audio = np.concatenate([np.zeros(1600, np.float32), speech, np.zeros(6400, np.float32)])
            audio += np.float32(1e-4) * rng.standard_normal(len(audio)).astype(np.float32)
            write_audio(folder / f"u{i}.flac", audio)
            for split, n in (("train", copies), ("dev", 1)):
                for c in range(n):
                    rows.append({"id": f"{split}{i}-{c}", "audio": f"u{i}.flac", "sample_rate": 16000,
                                 "duration": round(len(audio) / 16000, 3), "text": text, "intent": None, "slots": [],
                                 "voice": "flite:slt:p1.00:w1.00", "speaker": "slt", "language": "en", "whisper": False,
                                 "augmentation": {}, "wake_word": None, "speech_start": None, "speech_end": None,
                                 "pauses": [], "split": split, "source": "test", "engine": "flite"})
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder

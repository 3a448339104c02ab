"""`edgevoice eval`: word and sentence error rates, per split / engine / voice, and the
real-time factor, for a trained model on any manifest."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from edgevoice.audio.features import FeatureConfig, GlobalCMVN, compute_fbank
from edgevoice.corpus.manifest import audio_path, read_manifest
from edgevoice.errors import ConfigError, EdgevoiceError
from edgevoice.text.metrics import error_counts
from edgevoice.text.tokenizer import Tokenizer
from edgevoice.train.decode import beam_search, greedy_search, streaming_beam_search
from edgevoice.train.model import ModelConfig, Transducer


class TrainedModel:
    """A run folder (or a bundled model folder): model.pt, tokenizer.model, cmvn.json,
    features.json."""

    def __init__(self, folder: str | Path, checkpoint: str = "model.pt"):
        folder = Path(folder)
        missing = [n for n in (checkpoint, "tokenizer.model", "cmvn.json") if not (folder / n).is_file()]
        if missing:
            raise ConfigError(f"{folder} is not a trained model folder: missing {', '.join(missing)}")
        try:
            state = torch.load(folder / checkpoint, map_location="cpu", weights_only=False)
            self.config = ModelConfig.from_dict(state["config"]["model"])
            self.model = Transducer(self.config)
            self.model.load_state_dict(state["model"])
        except ConfigError:
            raise
        except Exception as exc:  # unpickling, shape mismatches, truncated files
            raise ConfigError(f"{folder / checkpoint} is corrupt or does not match its config: {exc}") from exc
        self.model.eval()
        self.tokenizer = Tokenizer(folder / "tokenizer.model")
        self.cmvn = GlobalCMVN.load(folder / "cmvn.json")
        feature_file = folder / "features.json"
        self.features = FeatureConfig(**json.loads(feature_file.read_text())) if feature_file.exists() else FeatureConfig()

    def features_of(self, samples: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.cmvn(compute_fbank(samples, self.features)))

    def transcribe(self, samples: np.ndarray, beam: int = 4, streaming: bool = False) -> list:
        feats = self.features_of(samples)
        if beam <= 1:
            tokens = greedy_search(self.model, feats.unsqueeze(0), torch.tensor([len(feats)]))[0]
            return [(self.tokenizer.decode(tokens), 0.0, tokens)]
        hyps = streaming_beam_search(self.model, feats, beam=beam) if streaming else beam_search(self.model, feats, len(feats), beam)
        return [(self.tokenizer.decode(h.tokens), h.score, h.tokens) for h in hyps]


def evaluate(model_dir: str | Path, manifest: str | Path, beam: int = 4, streaming: bool = False,
             limit: int | None = None, splits: list[str] | None = None, progress: bool = True) -> dict:
    from edgevoice.audio.io import read_audio

    torch.set_num_threads(1)  # the real-time factor is reported for one thread
    model = TrainedModel(model_dir)
    folder = Path(manifest) if Path(manifest).is_dir() else Path(manifest).parent
    records = [r for r in read_manifest(manifest) if r["text"] and (not splits or r["split"] in splits)]
    if limit:
        records = records[:limit]
    if not records:
        raise EdgevoiceError(f"no labelled utterances to evaluate in {manifest}")
    from tqdm import tqdm

    rows = []
    decode_seconds = audio_seconds = 0.0
    for rec in tqdm(records, desc="eval", disable=not progress):
        samples = read_audio(audio_path(rec, folder))
        t0 = time.perf_counter()
        hyp = model.transcribe(samples, beam, streaming)[0][0]
        decode_seconds += time.perf_counter() - t0
        audio_seconds += len(samples) / 16000
        rows.append({"id": rec["id"], "ref": rec["text"], "hyp": hyp, "split": rec["split"], "engine": rec["engine"],
                     "voice": rec["voice"], "source": rec.get("source", "")})
    result = summarize(rows)
    result.update(rtf=round(decode_seconds / audio_seconds, 4), audio_hours=round(audio_seconds / 3600, 3),
                  beam=beam, streaming=streaming, model=str(model_dir), manifest=str(manifest))
    result["rows"] = rows
    return result


def _scores(rows: list[dict]) -> dict:
    c = error_counts([r["ref"] for r in rows], [r["hyp"] for r in rows])
    return {"wer": round(c["errors"] / max(1, c["ref_words"]), 4), "ser": round(c["sentence_errors"] / max(1, len(rows)), 4),
            "utterances": len(rows), "words": c["ref_words"], "substitutions": c["substitutions"],
            "deletions": c["deletions"], "insertions": c["insertions"]}


def summarize(rows: list[dict]) -> dict:
    out = _scores(rows)
    for key in ("split", "engine", "voice", "source"):
        groups = defaultdict(list)
        for r in rows:
            groups[r[key]].append(r)
        out[f"by_{key}"] = {k: _scores(v) for k, v in sorted(groups.items())}
    return out


def markdown_table(result: dict, by: str = "engine") -> str:
    lines = ["| set | utterances | WER | SER |", "|---|---|---|---|",
             f"| **all** | {result['utterances']} | **{result['wer']:.2%}** | {result['ser']:.2%} |"]
    for name, s in result.get(f"by_{by}", {}).items():
        lines.append(f"| {by}: {name} | {s['utterances']} | {s['wer']:.2%} | {s['ser']:.2%} |")
    lines.append(f"\nreal-time factor (1 thread, beam {result['beam']}): {result['rtf']:.4f}")
    return "\n".join(lines)

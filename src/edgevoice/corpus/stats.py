"""`edgevoice corpus stats`: what a corpus holds, as numbers and as one PNG."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from edgevoice.corpus.manifest import read_manifest


def corpus_stats(manifest: str | Path) -> dict:
    records = read_manifest(manifest)
    hours = lambda key: {k: round(v / 3600, 3) for k, v in sorted(_sum(records, key).items(), key=lambda kv: -kv[1])}
    voices_by_split: dict[str, set] = defaultdict(set)
    speakers_by_split: dict[str, set] = defaultdict(set)
    engines_by_split: dict[str, set] = defaultdict(set)
    for r in records:
        voices_by_split[r["split"]].add(r["voice"])
        speakers_by_split[r["split"]].add(r["speaker"])
        engines_by_split[r["split"]].add(r["engine"])
    voice_overlap = {
        f"{a}&{b}": len(voices_by_split[a] & voices_by_split[b])
        for a, b in (("train", "test"), ("train", "dev"), ("dev", "test"))
    }
    texts_by_split = {s: {r["text"] for r in records if r["split"] == s} for s in voices_by_split}
    text_overlap = {
        f"{a}&{b}": len(texts_by_split.get(a, set()) & texts_by_split.get(b, set()))
        for a, b in (("train", "test"), ("train", "dev"))
    }
    aug = Counter()
    for r in records:
        a = r["augmentation"]
        aug["noise"] += a.get("noise") is not None
        aug["reverb"] += a.get("rir") is not None
        aug["telephone"] += a.get("channel") == "telephone"
        aug["narrowband"] += a.get("channel") == "narrowband"
        aug["eq"] += a.get("eq_db") is not None
        aug["whisper"] += r["whisper"]
        aug["wake_word"] += r["wake_word"] is not None
        aug["pauses"] += bool(r["pauses"])
    n = len(records)
    return {
        "utterances": n,
        "hours": round(sum(r["duration"] for r in records) / 3600, 3),
        "hours_per_split": hours("split"),
        "hours_per_engine": hours("engine"),
        "hours_per_source": hours("source"),
        "hours_per_intent": hours("intent"),
        "hours_per_voice": hours("voice"),
        "distinct_voices": {s: len(v) for s, v in sorted(voices_by_split.items())},
        "distinct_speakers": {s: len(v) for s, v in sorted(speakers_by_split.items())},
        "engines_per_split": {s: sorted(v) for s, v in sorted(engines_by_split.items())},
        "voice_overlap": voice_overlap,
        "sentence_overlap": text_overlap,
        "augmentation_share": {k: round(v / n, 3) for k, v in aug.items()} if n else {},
        "mean_duration": round(sum(r["duration"] for r in records) / n, 3) if n else 0.0,
    }


def _sum(records, key) -> dict:
    out: dict = defaultdict(float)
    for r in records:
        out[str(r.get(key))] += r["duration"]
    return out


def plot_stats(manifest: str | Path, out_png: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_manifest(manifest)
    stats = corpus_stats(manifest)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    ax = axes[0, 0]
    splits = list(stats["hours_per_split"])
    engines = sorted({r["engine"] for r in records})
    bottom = [0.0] * len(splits)
    for engine in engines:
        vals = [sum(r["duration"] for r in records if r["split"] == s and r["engine"] == engine) / 3600 for s in splits]
        ax.bar(splits, vals, bottom=bottom, label=engine)
        bottom = [b + v for b, v in zip(bottom, vals)]
    for i, s in enumerate(splits):
        ax.text(i, bottom[i], f"{stats['distinct_voices'][s]} voices", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("hours")
    ax.set_title(f"{stats['hours']:.1f} h, {stats['utterances']} utterances")
    ax.legend()
    ax = axes[0, 1]
    src = stats["hours_per_source"]
    ax.barh(list(src), list(src.values()))
    ax.set_xlabel("hours")
    ax.set_title("text sources")
    ax = axes[1, 0]
    ax.hist([r["duration"] for r in records], bins=40)
    ax.set_xlabel("utterance duration (s)")
    ax.set_title(f"mean {stats['mean_duration']:.2f} s")
    ax = axes[1, 1]
    snrs = [r["augmentation"]["snr"] for r in records if r["augmentation"].get("snr") is not None]
    if snrs:
        ax.hist(snrs, bins=30)
    shares = ", ".join(f"{k} {v:.0%}" for k, v in stats["augmentation_share"].items())
    ax.set_xlabel("SNR (dB) of noisy utterances")
    ax.set_title(shares, fontsize=8)
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return out_png

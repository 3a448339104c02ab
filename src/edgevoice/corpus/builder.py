"""`edgevoice corpus build`: text sources x voices x augmentation -> 16 kHz FLAC + manifest.

Determinism: utterance i is planned from (seed, i) alone, and the corpus is the shortest
prefix of utterances 0, 1, 2, ... that reaches the requested hours, so the same seed gives
the same manifest whatever the number of worker processes.

Resumability: every finished utterance is appended to `journal.jsonl` after its audio
file is in place; a re-run skips what the journal lists and finishes the rest.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgevoice.audio import augment
from edgevoice.audio.io import SAMPLE_RATE, write_audio
from edgevoice.corpus.layout import WAKE_WORDS, lay_out, natural_pause_positions, strip_wake_word, tts_text
from edgevoice.corpus.manifest import SPLITS, validate_record, write_manifest
from edgevoice.corpus.sentences import Sentence, contains_phrase
from edgevoice.corpus.slot_lists import heldout_names
from edgevoice.corpus.tts import Synthesizer, Voice, voices_for_split
from edgevoice.errors import ConfigError, EdgevoiceError, TemplateError

FORMAT_VERSION = 1

# Share of the utterances drawn from each text source (normalized over those present).
SOURCE_WEIGHTS = {
    "home_assistant": 0.35,
    "assistant": 0.15,
    "slurp_lm": 0.22,
    "hwu64": 0.12,
    "snips": 0.12,
    "slurp_devel": 0.04,  # dev split only
    "rare_names": 1.0,  # biasing evaluation only: as many name sentences as all others together
    "training_rare_names": 1.0,  # biasing-train only: likewise, with the training rare names
}
USER_TEMPLATE_WEIGHT = 1.0  # each user template file weighs as much as all defaults together
ENGINE_WEIGHTS = {
    "train": {"espeak": 0.3, "flite": 0.35, "festival": 0.35},
    "dev": {"espeak": 0.4, "flite": 0.35, "festival": 0.25},
    "test": {"espeak": 0.5, "festival": 0.5},
}
FILLERS = ("um", "uh", "er", "hmm")
# `corpus build --profile endpointing`: the end-pointing evaluation set. Realistic pauses at
# natural places, hesitations inside them, long and varied trailing silence with the
# noise running on and sometimes a burst after the command; dev (tuning) and test only.
ENDPOINTING_PROFILE = {"pause_prob": 0.6, "hesitation_prob": 0.4, "trail_silence": (2.5, 4.0),
                       "trailing_burst_prob": 0.2, "continuing_pauses": True, "plan_splits": {"train": 0.0, "dev": 0.5, "test": 0.5}}
# `--profile endpointing-train`: the same material with training voices and sentences only,
# to fit what tells a pause from the end (the acoustic end-of-query classifier).
ENDPOINTING_TRAIN_PROFILE = {**ENDPOINTING_PROFILE, "plan_splits": {"train": 1.0, "dev": 0.0, "test": 0.0}}

DEFAULT_SOURCES = ("home_assistant", "assistant", "slurp_lm", "hwu64", "snips", "slurp_devel")
# `corpus build --profile biasing`: the context-biasing evaluation set. Half the utterances
# speak a held-out rare name (never in training text), half are ordinary test sentences;
# bias lists of 10, 100 and 1000 phrases per utterance go to bias_lists.jsonl. Dev (to tune
# the fusion weight) and test.
BIASING_PROFILE = {"sources": [*DEFAULT_SOURCES, "rare_names"], "plan_splits": {"train": 0.0, "dev": 0.3, "test": 0.7},
                   "bias_list_sizes": [10, 100, 1000]}
# `--profile biasing-train`: material for the neural biaser: half the utterances speak a
# training rare name (lists/training_rare_names.txt), which the recognizer never heard and so
# gets wrong, as it does a user's own contacts; training voices and sentences only. Without
# such names the biaser learns that lists add nothing: the recognizer knows every training
# contact by heart.
BIASING_TRAIN_PROFILE = {"sources": [*DEFAULT_SOURCES, "training_rare_names"],
                         "plan_splits": {"train": 1.0, "dev": 0.0, "test": 0.0}}
MAX_WORDS = 25


@dataclass
class BuildConfig:
    hours: float = 1.0
    seed: int = 0
    templates: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=lambda: list(DEFAULT_SOURCES))
    text_dir: str | None = None  # ../shared/data/text by default
    split_fractions: dict = field(default_factory=lambda: {"train": 0.9, "dev": 0.05, "test": 0.05})
    template_samples: int = 20000  # random sentences drawn from each template set
    wake_word_prob: float = 0.3
    pause_prob: float = 0.2
    whisper_prob: float = 0.06
    noise_prob: float = 0.75
    snr_range: tuple = (0.0, 30.0)
    rir_prob: float = 0.4
    telephone_prob: float = 0.07
    narrowband_prob: float = 0.08
    eq_prob: float = 0.5
    tempo_range: tuple = (0.85, 1.2)
    pitch_semitones: float = 1.5
    lead_silence: tuple = (0.1, 1.0)
    trail_silence: tuple = (0.2, 1.5)
    # End-pointing material (off in training corpora; see ENDPOINTING_PROFILE):
    hesitation_prob: float = 0.0  # per pause: a filler ("um", "uh") spoken inside it
    trailing_burst_prob: float = 0.0  # a short non-speech noise burst after the command
    # Pauses with the prosody of a sentence that goes on: the command is synthesized once,
    # with a comma at each pause, and cut at the engine's phrase breaks (else each piece is
    # synthesized alone and ends with a sentence-final fall, which no speaker makes mid-request).
    continuing_pauses: bool = False
    # Shares of utterances per split, if not split_fractions (which also assigns sentences
    # and voices to splits, and so stays the same for sets that must share those splits).
    plan_splits: dict | None = None
    bias_list_sizes: list | None = None  # write bias_lists.jsonl with lists of these sizes (corpus/biasing.py)

    # Settings added after corpora were built; at their defaults they leave the fingerprint
    # (and every random draw) as it was, so older corpora still resume.
    _LATER_FIELDS = {"hesitation_prob": 0.0, "trailing_burst_prob": 0.0, "plan_splits": None, "bias_list_sizes": None,
                     "continuing_pauses": False}

    def validate(self) -> "BuildConfig":
        if not self.hours > 0:
            raise ConfigError(f"hours must be positive, got {self.hours}")
        for name, fr in (("split_fractions", self.split_fractions), ("plan_splits", self.plan_splits or self.split_fractions)):
            if set(fr) != set(SPLITS) or abs(sum(fr.values()) - 1) > 1e-6 or min(fr.values()) < 0:
                raise ConfigError(f"{name} must give train/dev/test shares summing to 1, got {fr}")
        for name in ("wake_word_prob", "pause_prob", "whisper_prob", "noise_prob", "rir_prob", "telephone_prob",
                     "narrowband_prob", "eq_prob", "hesitation_prob", "trailing_burst_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be within 0-1, got {getattr(self, name)}")
        known = set(DEFAULT_SOURCES) | {"templates", "rare_names", "training_rare_names"}
        unknown = [s for s in self.sources if s not in known]
        if unknown:
            raise ConfigError(f"unknown text source(s) {unknown}; choose from {sorted(known)}")
        if self.bias_list_sizes is not None and (not self.bias_list_sizes or
                                                 not all(isinstance(n, int) and n > 0 for n in self.bias_list_sizes)):
            raise ConfigError(f"bias_list_sizes must be positive integers, got {self.bias_list_sizes}")
        if self.telephone_prob + self.narrowband_prob > 1:
            raise ConfigError("telephone_prob + narrowband_prob must not exceed 1 (one channel per utterance)")
        if not 0 <= self.snr_range[0] <= self.snr_range[1]:
            raise ConfigError(f"snr_range must be (low, high) with 0 <= low <= high, got {self.snr_range}")
        return self

    def fingerprint(self) -> str:
        """Everything that changes the corpus content (hours only extends it)."""
        d = asdict(self)
        d.pop("hours")
        for name, default in self._LATER_FIELDS.items():
            if d[name] == default:
                d.pop(name)
        return hashlib.sha1(json.dumps(d, sort_keys=True, default=list).encode()).hexdigest()[:12]


# ---------------------------------------------------------------- text pools

def split_key(text: str) -> str:
    """The text a sentence's split is decided by: without a leading wake word, so that
    "alexa what time is it" (a source sentence) and "what time is it" (which may get the
    wake word prepended) always land in the same split."""
    return strip_wake_word(text) or text


def sentence_split(sentence: Sentence, fractions: dict) -> str:
    if sentence.split:
        return sentence.split
    digest = hashlib.sha1(split_key(sentence.text).encode()).hexdigest()
    bucket = int(digest[:8], 16) % 10000 / 10000
    if bucket < fractions["test"]:
        return "test"
    if bucket < fractions["test"] + fractions["dev"]:
        return "dev"
    return "train"


class TextPools:
    """Sentences per split and source; splits disjoint by sentence text; held-out rare
    names removed from training text."""

    def __init__(self, config: BuildConfig):
        from edgevoice.corpus.templates import (assistant_sampler, home_assistant_sampler, load_template_file,
                                                rare_name_sampler, training_rare_name_sampler)
        from edgevoice.corpus.text_sources import shared_text_sources

        rng = random.Random(config.seed)
        sources: dict[str, list[Sentence]] = {}
        weights: dict[str, float] = {}
        wanted = set(config.sources)
        samplers = []
        if "home_assistant" in wanted:
            samplers.append(("home_assistant", home_assistant_sampler()))
        if "assistant" in wanted:
            samplers.append(("assistant", assistant_sampler()))
        for path in config.templates:
            sampler = load_template_file(path)
            samplers.append((sampler.source, sampler))
        if "rare_names" in wanted:  # last, so the other sources draw as they always did
            samplers.append(("rare_names", rare_name_sampler()))
        if "training_rare_names" in wanted:
            samplers.append(("training_rare_names", training_rare_name_sampler()))
        for name, sampler in samplers:
            drawn = {s.text: s for s in (sampler.sample(rng) for _ in range(config.template_samples)) if s.text}
            if not drawn:
                raise TemplateError(f"{name}: the templates expand to no text")
            sources[name] = list(drawn.values())
            weights[name] = USER_TEMPLATE_WEIGHT if name.startswith("templates:") else SOURCE_WEIGHTS[name]
        shared_wanted = wanted & {"slurp_lm", "hwu64", "snips", "slurp_devel"}
        if shared_wanted:
            shared = shared_text_sources(config.text_dir)
            missing = shared_wanted - set(shared)
            if missing:
                print(f"note: text source(s) {sorted(missing)} not found (../shared/data/text absent); "
                      "building from the other sources")
            for name in shared_wanted & set(shared):
                sources[name] = shared[name]
                weights[name] = SOURCE_WEIGHTS[name]
        if not sources:
            raise ConfigError("no text sources: give --templates FILE or enable the default sources")
        banned: dict[str, list[list[str]]] = {}  # first word -> held-out names starting with it
        for name in heldout_names():
            banned.setdefault(name.split()[0], []).append(name.split())
        self.pools: dict[str, dict[str, list[Sentence]]] = {s: {} for s in SPLITS}
        # Sentences a source pins to a split (SLURP devel -> dev) pin their wake-word-free
        # text there too, so no other source can put the same words in another split.
        pinned = {split_key(s.text): s.split for ss in sources.values() for s in ss if s.split}
        self.dropped_heldout = 0
        for name in sorted(sources):
            seen = set()
            for sentence in sources[name]:
                if sentence.text in seen or len(sentence.words) > MAX_WORDS:
                    continue
                seen.add(sentence.text)
                split = pinned.get(split_key(sentence.text)) or sentence_split(sentence, config.split_fractions)
                if split == "train" and any(contains_phrase(sentence.words, b)
                                            for w in set(sentence.words) & banned.keys() for b in banned[w]):
                    self.dropped_heldout += 1
                    continue
                self.pools[split].setdefault(name, []).append(sentence)
        self.weights = {
            split: {name: weights[name] for name in self.pools[split]} for split in SPLITS
        }

    def choose(self, split: str, rng: np.random.Generator) -> Sentence:
        names = sorted(self.weights[split])
        if not names:
            raise ConfigError(f"no sentences for the {split} split; use more text or different split fractions")
        p = np.array([self.weights[split][n] for n in names])
        name = names[rng.choice(len(names), p=p / p.sum())]
        pool = self.pools[split][name]
        return pool[rng.integers(len(pool))]

    def counts(self) -> dict:
        return {split: {name: len(v) for name, v in pools.items()} for split, pools in self.pools.items()}


# ---------------------------------------------------------------- planning

@dataclass
class UtteranceSpec:
    index: int
    id: str
    split: str
    sentence: Sentence
    voice: Voice
    tempo: float
    pitch_shift: float
    whisper: str | None  # None, "espeak" (whisper variant) or "lpc" (whisperizer)
    wake_word: str | None
    wake_gap: float
    lead_silence: float
    trail_silence: float
    pause_before: list[int]  # command word indices a pause precedes
    pause_durations: list[float]
    noise: str | None
    snr: float | None
    rir: int | None
    gain_db: float
    channel: str | None  # None, "telephone" or "narrowband"
    eq_db: list[float] | None  # microphone colouring, gains at augment.EQ_BANDS_HZ
    fillers: list[str | None] = field(default_factory=list)  # per pause: a hesitation spoken inside it
    trailing_burst: dict | None = None  # {"delay", "duration", "kind"} of a noise burst after the command
    continuing_pauses: bool = False  # BuildConfig.continuing_pauses


def _voices_by_split() -> dict[str, dict[str, dict[str, list[Voice]]]]:
    """split -> engine -> engine voice name -> pseudo-speakers"""
    out: dict = {}
    for split in SPLITS:
        out[split] = {}
        for v in voices_for_split(split):
            base = v.name.split("+")[0] if v.engine == "espeak" else v.name
            out[split].setdefault(v.engine, {}).setdefault(base, []).append(v)
    return out


class Planner:
    def __init__(self, config: BuildConfig, pools: TextPools, n_rirs: int):
        self.config = config
        self.pools = pools
        self.voices = _voices_by_split()
        self.n_rirs = n_rirs

    def plan(self, index: int) -> UtteranceSpec:
        c = self.config
        rng = np.random.default_rng([c.seed, index])
        splits = list(SPLITS)
        shares = c.plan_splits or c.split_fractions
        split = splits[rng.choice(3, p=[shares[s] for s in splits])]
        sentence = self.pools.choose(split, rng)
        engines = {e: w for e, w in ENGINE_WEIGHTS[split].items() if e in self.voices[split]}
        names = sorted(engines)
        p = np.array([engines[e] for e in names])
        engine = names[rng.choice(len(names), p=p / p.sum())]
        bases = sorted(self.voices[split][engine])
        candidates = self.voices[split][engine][bases[rng.integers(len(bases))]]
        voice = candidates[rng.integers(len(candidates))]

        whisper = None
        if rng.random() < c.whisper_prob:
            whisper = "espeak" if engine == "espeak" and rng.random() < 0.5 else "lpc"
        wake = WAKE_WORDS[rng.integers(len(WAKE_WORDS))] if rng.random() < c.wake_word_prob else None
        words = sentence.words
        pause_before: list[int] = []
        if rng.random() < c.pause_prob:
            positions = natural_pause_positions(words, [s.start for s in sentence.slots])
            if positions:
                k = 2 if len(positions) > 2 and rng.random() < 0.25 else 1
                pause_before = sorted(int(x) for x in rng.choice(positions, size=k, replace=False))
        u = rng.random()
        channel = "telephone" if u < c.telephone_prob else "narrowband" if u < c.telephone_prob + c.narrowband_prob else None
        noise = snr = None
        if rng.random() < c.noise_prob:
            kinds = augment.NOISE_TYPES if whisper is None else ("white", "pink", "brown", "hvac")
            noise = str(kinds[rng.integers(len(kinds))])
            snr = round(float(rng.uniform(*c.snr_range)), 1)
        # Drawn last, and only when enabled, so that corpora without them keep their draws.
        fillers: list[str | None] = []
        if c.hesitation_prob > 0:
            fillers = [str(FILLERS[rng.integers(len(FILLERS))]) if rng.random() < c.hesitation_prob else None
                       for _ in pause_before]
        burst = None
        if c.trailing_burst_prob > 0 and rng.random() < c.trailing_burst_prob:
            burst = {"delay": round(float(rng.uniform(0.2, 1.2)), 3), "duration": round(float(rng.uniform(0.05, 0.3)), 3),
                     "kind": str(("white", "pink", "brown")[rng.integers(3)])}
        return UtteranceSpec(
            continuing_pauses=c.continuing_pauses,
            fillers=fillers,
            trailing_burst=burst,
            index=index,
            id=f"ev{c.seed}-{index:07d}",
            split=split,
            sentence=sentence,
            voice=voice,
            tempo=round(float(rng.uniform(*c.tempo_range)), 3),
            pitch_shift=round(float(2 ** (rng.uniform(-c.pitch_semitones, c.pitch_semitones) / 12)), 3),
            whisper=whisper,
            wake_word=wake,
            wake_gap=round(float(rng.uniform(0.1, 0.7)), 3),
            lead_silence=round(float(rng.uniform(*c.lead_silence)), 3),
            trail_silence=round(float(rng.uniform(*c.trail_silence)), 3),
            pause_before=pause_before,
            pause_durations=[round(float(rng.uniform(0.3, 1.0)), 3) for _ in pause_before],
            noise=noise,
            snr=snr,
            rir=int(rng.integers(self.n_rirs)) if self.n_rirs and rng.random() < c.rir_prob else None,
            gain_db=round(float(rng.uniform(-12.0, 6.0)), 1),
            channel=channel,
            eq_db=augment.random_eq_gains(rng) if rng.random() < c.eq_prob else None,
        )


# ---------------------------------------------------------------- rendering

@dataclass
class Banks:
    """Shared, precomputed material: room impulse responses and babble tracks."""

    rirs: list[np.ndarray]
    rir_info: list[dict]
    babble: list[np.ndarray]


def _speak(synth: Synthesizer, text: str, spec: UtteranceSpec, rng: np.random.Generator) -> np.ndarray:
    audio = synth.synthesize(tts_text(text), spec.voice, spec.tempo, spec.pitch_shift,
                             whisper=spec.whisper == "espeak")
    audio = augment.trim(audio)
    if spec.whisper == "lpc":
        audio = augment.whisperize(audio, rng)
    if len(audio) < SAMPLE_RATE // 50:
        raise EdgevoiceError(f"{spec.voice.id} produced (almost) no speech for {text!r}")
    return audio


# A phrase break the engines leave at a comma (80-270 ms of near-silence here); the closures of stops
# inside words are rarely as long, and the breaks must also fall where the text puts them.
MIN_PHRASE_BREAK = 0.08


def split_at_phrase_breaks(audio: np.ndarray, piece_chars: list[int], rate: int = SAMPLE_RATE,
                           tolerance: float = 0.2) -> list[np.ndarray] | None:
    """Cut one synthesis of "piece one, piece two, ..." into its pieces at the phrase breaks
    (the longest silences inside the speech, at least MIN_PHRASE_BREAK), each break within
    `tolerance` of where the pieces' character counts put it. None when they cannot be found."""
    start, end = augment.speech_bounds(audio, rate)
    hop = rate // 100
    n = (end - start) // hop
    if len(piece_chars) < 2 or n < 10:
        return None
    energy = augment.frame_energy_db(audio[start : start + n * hop], rate)
    quiet = energy < energy.max() - 35.0
    runs, run_start = [], None
    for i, q in enumerate(quiet):
        if q and run_start is None:
            run_start = i
        elif not q and run_start is not None:
            if i - run_start >= MIN_PHRASE_BREAK * 100:
                runs.append((run_start, i))
            run_start = None
    breaks = len(piece_chars) - 1
    if len(runs) < breaks:
        return None
    chosen = sorted(sorted(runs, key=lambda r: r[0] - r[1])[:breaks])
    expected = np.cumsum(piece_chars)[:-1] / sum(piece_chars)
    if any(abs((a + b) / 2 / n - e) > tolerance for (a, b), e in zip(chosen, expected)):
        return None
    cuts = [0] + [x for a, b in chosen for x in (a, b)] + [n]
    pieces = [augment.trim(audio[start + a * hop : start + b * hop], rate) for a, b in zip(cuts[::2], cuts[1::2])]
    return pieces if all(len(p) >= rate // 50 for p in pieces) else None


def _speak_command(synth: Synthesizer, words: list[str], bounds: list[int], spec: UtteranceSpec,
                   rng: np.random.Generator) -> tuple[list[np.ndarray], str]:
    """The command's pieces between pauses, and how they were made ("continuing": one
    synthesis cut at its phrase breaks; "separate": each piece alone)."""
    texts = [" ".join(words[a:b]) for a, b in zip(bounds, bounds[1:])]
    if spec.continuing_pauses and len(texts) > 1:
        spoken = [tts_text(t) for t in texts]
        audio = synth.synthesize(", ".join(spoken), spec.voice, spec.tempo, spec.pitch_shift,
                                 whisper=spec.whisper == "espeak")
        pieces = split_at_phrase_breaks(audio, [len(t) for t in spoken])
        if pieces is not None:
            if spec.whisper == "lpc":
                pieces = [augment.whisperize(p, rng) for p in pieces]
            return pieces, "continuing"
    return [_speak(synth, t, spec, rng) for t in texts], "separate"


def render(spec: UtteranceSpec, synth: Synthesizer, banks: Banks, seed: int) -> tuple[np.ndarray, dict]:
    """Synthesize and augment one utterance; return (16 kHz audio, manifest record)."""
    rng = np.random.default_rng([seed, spec.index, 1])
    words = spec.sentence.words
    offset = len(spec.wake_word.split()) if spec.wake_word else 0
    bounds = [0] + spec.pause_before + [len(words)]
    pieces, pause_prosody = _speak_command(synth, words, bounds, spec, rng)
    wake = _speak(synth, spec.wake_word, spec, rng) if spec.wake_word else None
    fillers = [_speak(synth, f, spec, rng) if f else None for f in spec.fillers] or None
    layout = lay_out(
        pieces,
        [b + offset for b in bounds[:-1]],
        spec.pause_durations,
        spec.lead_silence,
        spec.trail_silence,
        wake=wake,
        wake_text=spec.wake_word,
        wake_gap=spec.wake_gap,
        fillers=fillers,
        filler_texts=spec.fillers or None,
    )
    x = layout.audio
    s0, s1 = layout.speech_region
    if spec.trailing_burst:
        b = spec.trailing_burst
        start = s1 + int(b["delay"] * SAMPLE_RATE)
        n = min(int(b["duration"] * SAMPLE_RATE), len(x) - start)
        if n > 0:  # a door, a cough, a clatter: loud, short, not speech
            noise = augment.colored_noise(n, b["kind"], rng)
            level = np.sqrt(np.mean(np.square(x[s0:s1], dtype=np.float64))) * 10 ** (rng.uniform(-12, 0) / 20)
            burst = noise / (np.sqrt(np.mean(np.square(noise, dtype=np.float64))) + 1e-12) * level * np.hanning(n)
            x = x.copy()
            x[start : start + n] += burst.astype(np.float32)
    # Level: speech at -23 dBFS before room, noise and gain.
    x = x * 10 ** ((-23.0 - augment.rms_db(x[s0:s1])) / 20)
    aug: dict = {"tempo": spec.tempo, "pitch": spec.pitch_shift, "noise": spec.noise, "snr": spec.snr,
                 "rir": None, "gain_db": spec.gain_db, "channel": spec.channel, "eq_db": spec.eq_db}
    if spec.whisper:
        aug["whisper_method"] = spec.whisper
    if spec.pause_before and spec.continuing_pauses:
        aug["pause_prosody"] = pause_prosody
    if spec.trailing_burst:
        aug["trailing_burst"] = {"start": round(s1 / SAMPLE_RATE + spec.trailing_burst["delay"], 3),
                                 "duration": spec.trailing_burst["duration"], "kind": spec.trailing_burst["kind"]}
    if spec.rir is not None:
        x = augment.apply_rir(x, banks.rirs[spec.rir])
        aug["rir"] = spec.rir
        aug.update(banks.rir_info[spec.rir])
    if spec.noise is not None:
        if spec.noise == "babble":
            talkers = [banks.babble[i] for i in rng.choice(len(banks.babble), size=min(4, len(banks.babble)), replace=False)]
            noise = augment.babble_from(talkers, len(x), rng)
        else:
            noise = augment.colored_noise(len(x), spec.noise, rng)
        x = augment.mix_at_snr(x, noise, spec.snr, (s0, s1))
    if spec.eq_db is not None:
        x = augment.equalize(x, spec.eq_db)
    if spec.channel == "telephone":
        x = augment.telephone(x)
    elif spec.channel == "narrowband":
        x = augment.narrowband(x)
    x = x * 10 ** (spec.gain_db / 20)
    x = x + rng.standard_normal(len(x)).astype(np.float32) * 10 ** (-75 / 20)  # never digital silence
    peak = float(np.max(np.abs(x)))
    if peak > 0.99:  # keep the clip-free level instead of clipping
        x = x * (0.99 / peak)
        aug["gain_db"] = round(spec.gain_db + 20 * np.log10(0.99 / peak), 1)
    sentence = spec.sentence
    text = f"{spec.wake_word} {sentence.text}" if spec.wake_word else sentence.text
    slots = [dict(s.to_dict(), start=s.start + offset, end=s.end + offset) for s in sentence.slots]
    record = {
        "id": spec.id,
        "audio": f"audio/{spec.index // 1000:04d}/{spec.id}.flac",
        "sample_rate": SAMPLE_RATE,
        "duration": round(len(x) / SAMPLE_RATE, 3),
        "text": text,
        "intent": sentence.intent,
        "slots": slots,
        "voice": spec.voice.id,
        "speaker": spec.voice.speaker,
        "language": "en",
        "whisper": spec.whisper is not None,
        "augmentation": aug,
        "wake_word": layout.wake_word,
        "speech_start": layout.speech_start,
        "speech_end": layout.speech_end,
        "pauses": layout.pauses,
        "split": spec.split,
        "source": sentence.source,
        "engine": spec.voice.engine,
    }
    return x.astype(np.float32), record


# ---------------------------------------------------------------- banks

def build_banks(cache_dir: Path, config: BuildConfig, pools: TextPools, n_rirs: int = 200, n_babble: int = 12) -> Banks:
    """Room responses and babble tracks, computed once per corpus and cached."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / "banks.npz"
    if path.exists():
        data = np.load(path, allow_pickle=False)
        info = json.loads(str(data["rir_info"]))
        return Banks([data[f"rir{i}"] for i in range(len(info))], info,
                     [data[f"babble{i}"] for i in range(int(data["n_babble"]))])
    rng = np.random.default_rng([config.seed, 7])
    rirs, infos = [], []
    for _ in range(n_rirs):
        rir, info = augment.make_room_impulse_response(rng)
        rirs.append(rir)
        infos.append(info)
    # Babble from training text and training voices (fast engines), never test material.
    babble = []
    voices = [v for v in voices_for_split("train") if v.engine != "festival"]
    with Synthesizer() as synth:
        for _ in range(n_babble):
            talk = []
            for _ in range(4):
                sentence = pools.choose("train", rng)
                voice = voices[rng.integers(len(voices))]
                talk.append(augment.trim(synth.synthesize(tts_text(sentence.text), voice)))
            babble.append(np.concatenate(talk).astype(np.float32))
    arrays = {f"rir{i}": r for i, r in enumerate(rirs)}
    arrays.update({f"babble{i}": b for i, b in enumerate(babble)})
    tmp = cache_dir / "banks.tmp.npz"
    np.savez(tmp, rir_info=json.dumps(infos), n_babble=len(babble), **arrays)
    os.replace(tmp, path)
    return Banks(rirs, infos, babble)


# ---------------------------------------------------------------- workers

_WORKER: dict = {}


def _worker_init(config: BuildConfig, pools: TextPools, banks: Banks, out_dir: str) -> None:
    _WORKER["planner"] = Planner(config, pools, len(banks.rirs))
    _WORKER["banks"] = banks
    _WORKER["synth"] = Synthesizer()
    _WORKER["out"] = Path(out_dir)
    _WORKER["seed"] = config.seed


def _work(index: int) -> dict:
    spec = _WORKER["planner"].plan(index)
    try:
        audio, record = render(spec, _WORKER["synth"], _WORKER["banks"], _WORKER["seed"])
    except EdgevoiceError as exc:
        # A TTS failure on one sentence/voice is recorded (deterministically: the same
        # spec fails again) and skipped, instead of ending a long build.
        return {"id": spec.id, "failed": str(exc), "duration": 0.0}
    path = _WORKER["out"] / record["audio"]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.flac")
    write_audio(tmp, audio)
    os.replace(tmp, path)  # atomic: an interrupted build never leaves a truncated file
    return validate_record(record, spec.id)


def _index(rec: dict) -> int:
    return int(rec["id"].rsplit("-", 1)[1])


def _read_journal(path: Path, out_dir: Path) -> dict[int, dict]:
    done: dict[int, dict] = {}
    if not path.exists():
        return done
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by an interruption
            if "failed" in rec or (out_dir / rec["audio"]).exists():
                done[_index(rec)] = rec
    return done


def build_corpus(config: BuildConfig, out_dir: str | Path, jobs: int | None = None, progress: bool = True) -> dict:
    """Build (or finish) the corpus in `out_dir`; returns a summary dict."""
    config.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = jobs or os.cpu_count() or 1
    start = time.time()
    config_path = out / "build_config.json"
    if config_path.exists():
        previous = json.loads(config_path.read_text())
        if previous.get("fingerprint") != config.fingerprint():
            raise ConfigError(f"{out} holds a corpus built with other settings (seed, sources, templates or "
                              "augmentation); use the same settings to resume or a new --out folder")
    config_path.write_text(json.dumps({"format_version": FORMAT_VERSION, "fingerprint": config.fingerprint(),
                                       **asdict(config)}, indent=2, default=list))
    pools = TextPools(config)
    banks = build_banks(out / "cache", config, pools)
    journal_path = out / "journal.jsonl"
    done = _read_journal(journal_path, out)
    target = config.hours * 3600

    def prefix_seconds() -> tuple[int, float]:
        total, i = 0.0, 0
        while i in done and total < target:
            total += done[i]["duration"]
            i += 1
        return i, total

    bar = None
    if progress:
        from tqdm import tqdm

        # Counted in seconds of audio, so the rate reads as x real time.
        bar = tqdm(total=int(target), unit="s", desc="corpus (audio seconds)", unit_scale=False)
    already = min(target, sum(r["duration"] for r in done.values()))
    if bar is not None:
        bar.update(int(already))
    synthesized = 0.0
    ctx = mp.get_context("fork")
    with ctx.Pool(jobs, initializer=_worker_init, initargs=(config, pools, banks, str(out))) as pool, \
            open(journal_path, "a", encoding="utf-8") as journal:
        while True:
            n_prefix, total = prefix_seconds()
            if total >= target:
                break
            mean = (np.mean([r["duration"] for r in done.values()]) if done else 4.0)
            remaining = int((target - total) / mean * 1.03) + jobs
            todo = []
            i = n_prefix
            while len(todo) < max(remaining, 1):
                if i not in done:
                    todo.append(i)
                i += 1
            for rec in pool.imap_unordered(_work, todo, chunksize=4):
                journal.write(json.dumps(rec) + "\n")
                journal.flush()
                done[_index(rec)] = rec
                synthesized += rec["duration"]
                if bar is not None:
                    bar.update(min(int(synthesized + already) - bar.n, bar.total - bar.n))
    if bar is not None:
        bar.close()
    n_prefix, total = prefix_seconds()
    prefix = [done[i] for i in range(n_prefix)]
    records = [r for r in prefix if "failed" not in r]
    failed = [r for r in prefix if "failed" in r]
    # Utterances past the prefix (overshoot of the last wave) are not part of this corpus.
    for i, rec in done.items():
        if i >= n_prefix and "failed" not in rec:
            (out / rec["audio"]).unlink(missing_ok=True)
    write_manifest(journal_path, prefix)  # compact the journal to exactly the corpus (+ its failures)
    write_manifest(out / "manifest.jsonl", records)
    wall = time.time() - start
    built = max(0.0, total - already)  # corpus audio added by this run (overshoot not counted)
    summary = {
        "utterances": len(records),
        "hours": round(total / 3600, 3),
        "hours_built_this_run": round(built / 3600, 3),
        "synthesized_hours_this_run": round(synthesized / 3600, 3),
        "wall_seconds": round(wall, 1),
        "x_real_time": round(built / wall, 1) if built else None,
        "jobs": jobs,
        "text_pool": pools.counts(),
        "dropped_heldout_name_sentences": pools.dropped_heldout,
        "failed": len(failed),
        "failures": [f"{r['id']}: {r['failed']}" for r in failed[:10]],
    }
    if config.bias_list_sizes:
        from edgevoice.corpus.biasing import write_bias_lists

        from edgevoice.corpus.biasing import ENTITY_SLOTS

        # Beyond the built-in lists, entity values of the training text fill the big lists.
        extra = sorted({s.text for ss in pools.pools["train"].values() for sentence in ss for s in sentence.slots
                        if s.name in ENTITY_SLOTS})
        summary["bias_lists"] = write_bias_lists(out, records, config.bias_list_sizes, config.seed, extra)
    (out / "build_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def recognizer_text(seed: int = 0, template_samples: int | None = None) -> dict[str, list[str]]:
    """The sentences the recognizer is trained to transcribe, by split ("train", "dev"),
    as its transcripts have them: the corpus builder's text pools for this seed, a wake
    word in front of as many as the builder gives one (BuildConfig.wake_word_prob), and
    the transcripts of the real sets' train / dev splits where ../shared/data is present.
    What the device's token LM is counted on (`edgevoice lm ngram`); never test text.
    template_samples: draws per template set (more than a corpus uses: the splits go by
    sentence text, so more draws add train sentences and never a test one)."""
    from edgevoice.corpus.loaders import load_real_set
    from edgevoice.errors import ManifestError

    config = BuildConfig(seed=seed)
    if template_samples is not None:
        config = BuildConfig(seed=seed, template_samples=template_samples)
    pools = TextPools(config).pools
    rng = np.random.default_rng(seed + 7919)
    texts: dict[str, list[str]] = {}
    for split in ("train", "dev"):
        sentences = [s.text for by_source in pools[split].values() for s in by_source]
        texts[split] = [f"{WAKE_WORDS[rng.integers(len(WAKE_WORDS))]} {t}" if rng.random() < config.wake_word_prob
                        else t for t in sentences]
    for name in ("fsdd", "asterisk_en", "wakeword"):
        try:
            records = load_real_set(name)
        except ManifestError:  # the shared data is optional
            continue
        for r in records:
            if r["text"] and r["split"] in texts:
                texts[r["split"]].append(r["text"])
    return texts

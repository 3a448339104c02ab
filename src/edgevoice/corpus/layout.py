"""Stream layout: leading silence, optional wake word and gap, the command with optional
pauses at natural places, trailing silence; with the exact times of every part.

These times are the end-pointing ground truth, so the layout works on trimmed speech
segments and places them at known sample offsets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgevoice.audio.io import SAMPLE_RATE

WAKE_WORDS = ("alexa", "computer", "hey edgevoice")
# Spoken-form words the TTS engines mispronounce, and what to send them instead.
TTS_PRONUNCIATIONS = {"edgevoice": "edge voice"}

# Words before which people naturally pause in a request ("set a timer for ... ten minutes").
_PAUSE_BEFORE = {"and", "to", "for", "in", "at", "on", "by", "with", "saying", "that", "then", "please", "from"}


def strip_wake_word(text: str) -> str:
    """The request without a leading wake word ("alexa turn on ..." -> "turn on ...")."""
    for wake in sorted(WAKE_WORDS, key=len, reverse=True):
        if text == wake or text.startswith(wake + " "):
            return text[len(wake) :].strip()
    return text


def tts_text(spoken: str) -> str:
    return " ".join(TTS_PRONUNCIATIONS.get(w, w) for w in spoken.split())


def natural_pause_positions(words: list[str], slot_starts: list[int]) -> list[int]:
    """Word indices k (1 <= k < len) such that a pause may fall before word k: before a
    slot value, or before a preposition/conjunction, never before the last word alone
    after a one-word start."""
    positions = set(k for k in slot_starts if 0 < k < len(words))
    positions |= {k for k, w in enumerate(words) if 0 < k < len(words) and w in _PAUSE_BEFORE}
    return sorted(positions)


@dataclass
class Layout:
    audio: np.ndarray
    speech_start: float
    speech_end: float
    wake_word: dict | None
    pauses: list[dict] = field(default_factory=list)
    segments: list[tuple[float, float]] = field(default_factory=list)  # speech segments

    @property
    def speech_region(self) -> tuple[int, int]:
        return int(self.speech_start * SAMPLE_RATE), int(self.speech_end * SAMPLE_RATE)


def lay_out(
    command_pieces: list[np.ndarray],
    piece_first_words: list[int],
    pause_durations: list[float],
    lead_silence: float,
    trail_silence: float,
    wake: np.ndarray | None = None,
    wake_text: str | None = None,
    wake_gap: float = 0.0,
    rate: int = SAMPLE_RATE,
    fillers: list[np.ndarray | None] | None = None,
    filler_texts: list[str | None] | None = None,
) -> Layout:
    """Place the pieces. `piece_first_words[i]` is the index (in the full text) of the
    first word of piece i; `pause_durations[i]` is the pause after piece i (one fewer
    than pieces)."""
    if len(pause_durations) != len(command_pieces) - 1:
        raise ValueError("need exactly one pause duration between consecutive command pieces")
    parts: list[np.ndarray] = [np.zeros(int(lead_silence * rate), np.float32)]
    t = len(parts[0])
    segments: list[tuple[int, int]] = []
    wake_word = None
    if wake is not None:
        parts.append(wake)
        segments.append((t, t + len(wake)))
        wake_word = {"text": wake_text, "start": round(t / rate, 3), "end": round((t + len(wake)) / rate, 3)}
        t += len(wake)
        gap = np.zeros(int(wake_gap * rate), np.float32)
        parts.append(gap)
        t += len(gap)
    pauses = []
    for i, piece in enumerate(command_pieces):
        parts.append(piece)
        segments.append((t, t + len(piece)))
        t += len(piece)
        if i < len(pause_durations):
            silence = np.zeros(int(pause_durations[i] * rate), np.float32)
            pause = {"start": round(t / rate, 3), "end": round((t + len(silence)) / rate, 3),
                     "after_word": piece_first_words[i + 1] - 1}
            filler = fillers[i] if fillers else None
            if filler is not None:  # a hesitation ("um") in the middle of the pause, which it lengthens
                half = len(silence) // 2
                silence = np.concatenate([silence[:half], filler, silence[half:]])
                pause["end"] = round((t + len(silence)) / rate, 3)
                pause["filler"] = {"text": filler_texts[i] if filler_texts else None,
                                   "start": round((t + half) / rate, 3), "end": round((t + half + len(filler)) / rate, 3)}
            parts.append(silence)
            pauses.append(pause)
            t += len(silence)
    parts.append(np.zeros(int(trail_silence * rate), np.float32))
    audio = np.concatenate(parts).astype(np.float32)
    return Layout(
        audio=audio,
        speech_start=round(segments[0][0] / rate, 3),
        speech_end=round(segments[-1][1] / rate, 3),
        wake_word=wake_word,
        pauses=pauses,
        segments=[(s / rate, e / rate) for s, e in segments],
    )

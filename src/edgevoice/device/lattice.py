"""Word lattices: what the device sends to the cloud instead of audio.

A lattice is a DAG of words. States are numbered in topological order (every arc goes
from a lower to a higher state, so it can hold no cycle); state 0 is the start. Each arc
carries a word, its start and end time and a log-probability; a state may be final with
a final log-weight. Weights are posteriors: along any path, arcs plus the final weight
sum to the log posterior of that word sequence among the search's hypotheses, and
`log_normalizer` restores the search's own scores (path + normalizer = hypothesis score).

Built from the n-best of the beam search: a prefix tree of the word sequences (common
prefixes merged), then equal suffixes merged, so the result is a minimal word graph for
those hypotheses.

Binary form (version 1), little-endian, integers as LEB128 varints:
    b"EVLT" | u8 version | varint audio_ms | f32 log_normalizer
    | varint n_words | n_words x (varint len, utf-8 bytes)
    | varint n_states | varint n_finals | n_finals x (varint state, f16 weight)
    | varint n_arcs | n_arcs x (varint src, varint dst - src, varint word, varint start_cs,
                                varint duration_cs, f16 logprob)
    | u32 CRC-32 of everything before it
Times are in centiseconds. A malformed blob raises LatticeError naming the problem.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass, field

from edgevoice.errors import LatticeError

MAGIC = b"EVLT"
VERSION = 1
MAX_STATES = 100_000
MAX_ARCS = 400_000


@dataclass(frozen=True)
class Arc:
    src: int
    dst: int
    word: str
    logprob: float
    start: float
    end: float


@dataclass
class Lattice:
    num_states: int
    arcs: list[Arc]
    finals: dict[int, float]
    log_normalizer: float = 0.0
    audio_seconds: float = 0.0
    _out: dict | None = field(default=None, repr=False, compare=False)

    # ---- construction ---------------------------------------------------------------

    @staticmethod
    def from_nbest(hyps: list[tuple[list[dict], float]], audio_seconds: float = 0.0) -> "Lattice":
        """hyps: (words [{word, start, end}], score) pairs. Returns the minimal word graph
        whose paths are exactly the distinct word sequences, weighted by posterior."""
        merged: dict[tuple, tuple[list[dict], float]] = {}
        for words, score in hyps:  # equal word sequences (different tokenizations) add up
            key = tuple(w["word"] for w in words)
            if key in merged:
                merged[key] = (merged[key][0] if merged[key][1] >= score else words, _lse([merged[key][1], score]))
            else:
                merged[key] = (words, score)
        if not merged:
            return Lattice(1, [], {0: 0.0}, 0.0, audio_seconds)
        norm = _lse([s for _, s in merged.values()])
        # Prefix tree: node = word prefix; mass = log-sum of the scores of paths through it.
        children: list[dict[str, int]] = [{}]
        times: list[tuple[float, float] | None] = [None]
        through: list[list[float]] = [[]]
        ending: list[list[float]] = [[]]
        for words, score in sorted(merged.values(), key=lambda ws: -ws[1]):
            node = 0
            through[0].append(score)
            for w in words:
                nxt = children[node].get(w["word"])
                if nxt is None:  # times come from the best hypothesis with this prefix
                    nxt = len(children)
                    children[node][w["word"]] = nxt
                    children.append({})
                    times.append((float(w["start"]), float(w["end"])))
                    through.append([])
                    ending.append([])
                node = nxt
                through[node].append(score)
            ending[node].append(score)
        mass = [_lse(s) for s in through]
        arcs, finals = [], {}
        for node, kids in enumerate(children):
            for word, child in kids.items():
                arcs.append(Arc(node, child, word, mass[child] - mass[node], *times[child]))
            if ending[node]:
                finals[node] = _lse(ending[node]) - mass[node]
        lat = Lattice(len(children), arcs, finals, norm, audio_seconds)
        return lat.minimized()

    def minimized(self) -> "Lattice":
        """Merge states whose futures are identical (same final weight and same arcs to
        equivalent states), then renumber topologically."""
        out = self.outgoing()
        rep: dict[tuple, int] = {}
        canon: dict[int, int] = {}
        for s in range(self.num_states - 1, -1, -1):  # children have higher numbers
            sig = (_q(self.finals.get(s)),
                   tuple(sorted((a.word, _q(a.logprob), _q(a.start), _q(a.end), canon[a.dst]) for a in out.get(s, []))))
            canon[s] = rep.setdefault(sig, s)
        keep = sorted(set(canon.values()))
        arcs = {(canon[a.src], a.word, canon[a.dst]): Arc(canon[a.src], canon[a.dst], a.word, a.logprob, a.start, a.end)
                for a in self.arcs if canon[a.src] == a.src}
        finals = {s: w for s, w in self.finals.items() if canon[s] == s}
        # Topological renumbering (Kahn), start state first.
        indeg = {s: 0 for s in keep}
        for a in arcs.values():
            indeg[a.dst] += 1
        order, ready = [], [s for s in keep if indeg[s] == 0]
        succ: dict[int, list[Arc]] = {}
        for a in arcs.values():
            succ.setdefault(a.src, []).append(a)
        while ready:
            ready.sort()
            s = ready.pop(0)
            order.append(s)
            for a in succ.get(s, []):
                indeg[a.dst] -= 1
                if indeg[a.dst] == 0:
                    ready.append(a.dst)
        number = {s: i for i, s in enumerate(order)}
        new_arcs = sorted((Arc(number[a.src], number[a.dst], a.word, a.logprob, a.start, a.end) for a in arcs.values()),
                          key=lambda a: (a.src, a.start, a.word))
        return Lattice(len(order), new_arcs, {number[s]: w for s, w in finals.items()}, self.log_normalizer,
                       self.audio_seconds)

    # ---- queries --------------------------------------------------------------------

    def outgoing(self) -> dict[int, list[Arc]]:
        out: dict[int, list[Arc]] = {}
        for a in self.arcs:
            out.setdefault(a.src, []).append(a)
        return out

    def paths(self, limit: int = 1000) -> list[tuple[list[Arc], float]]:
        """Up to `limit` complete paths with their log posteriors, best first."""
        out = self.outgoing()
        results: list[tuple[list[Arc], float]] = []

        def walk(state: int, arcs: list[Arc], score: float) -> None:
            if len(results) >= limit * 4:
                return
            if state in self.finals:
                results.append((arcs, score + self.finals[state]))
            for a in out.get(state, []):
                walk(a.dst, arcs + [a], score + a.logprob)

        walk(0, [], 0.0)
        results.sort(key=lambda r: -r[1])
        return results[:limit]

    def nbest(self, n: int = 10) -> list[dict]:
        return [{"text": " ".join(a.word for a in arcs), "posterior": round(math.exp(score), 6),
                 "score": round(score + self.log_normalizer, 4),
                 "words": [{"word": a.word, "start": a.start, "end": a.end} for a in arcs]}
                for arcs, score in self.paths(n)]

    def oracle_errors(self, reference: str) -> tuple[int, str]:
        """Fewest word errors of any path against `reference`, and that path's text."""
        from edgevoice.text.metrics import word_errors

        best = None
        for arcs, _ in self.paths(10_000):
            text = " ".join(a.word for a in arcs)
            errors = word_errors(reference, text)
            if best is None or errors < best[0]:
                best = (errors, text)
        return best if best else (len(reference.split()), "")

    # ---- serialization --------------------------------------------------------------

    def to_bytes(self) -> bytes:
        words = sorted({a.word for a in self.arcs})
        index = {w: i for i, w in enumerate(words)}
        buf = bytearray(MAGIC)
        buf.append(VERSION)
        _put_varint(buf, round(self.audio_seconds * 1000))
        buf += struct.pack("<f", self.log_normalizer)
        _put_varint(buf, len(words))
        for w in words:
            raw = w.encode("utf-8")
            _put_varint(buf, len(raw))
            buf += raw
        _put_varint(buf, self.num_states)
        _put_varint(buf, len(self.finals))
        for s, weight in sorted(self.finals.items()):
            _put_varint(buf, s)
            buf += struct.pack("<e", max(weight, -60000.0))
        _put_varint(buf, len(self.arcs))
        for a in self.arcs:
            start_cs = round(a.start * 100)
            _put_varint(buf, a.src)
            _put_varint(buf, a.dst - a.src)
            _put_varint(buf, index[a.word])
            _put_varint(buf, start_cs)
            _put_varint(buf, max(0, round(a.end * 100) - start_cs))
            buf += struct.pack("<e", max(a.logprob, -60000.0))
        buf += struct.pack("<I", zlib.crc32(bytes(buf)))
        return bytes(buf)

    @staticmethod
    def from_bytes(blob: bytes, max_states: int = MAX_STATES, max_arcs: int = MAX_ARCS) -> "Lattice":
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise LatticeError("a lattice must be bytes")
        blob = bytes(blob)
        if len(blob) < len(MAGIC) + 1 + 4 + 4 or blob[:4] != MAGIC:
            raise LatticeError("not an edgevoice lattice (bad magic bytes)")
        if blob[4] != VERSION:
            raise LatticeError(f"unsupported lattice version {blob[4]} (this edgevoice reads version {VERSION})")
        body, (crc,) = blob[:-4], struct.unpack("<I", blob[-4:])
        if zlib.crc32(body) != crc:
            raise LatticeError("lattice checksum mismatch: the data is corrupt or truncated")
        r = _Reader(body, 5)
        audio_seconds = r.varint() / 1000
        (norm,) = r.unpack("<f")
        words = []
        for _ in range(r.count("words", max_arcs)):
            n = r.count("word length", 1000)
            try:
                words.append(r.take(n).decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise LatticeError("a lattice word is not valid UTF-8") from exc
        num_states = r.varint()
        if not 1 <= num_states <= max_states:
            raise LatticeError(f"lattice has {num_states} states (allowed 1-{max_states})")
        finals = {}
        for _ in range(r.count("final states", num_states)):
            s = r.varint()
            if s >= num_states:
                raise LatticeError(f"final state {s} out of range")
            finals[s] = float(r.unpack("<e")[0])
        n_arcs = r.varint()
        if n_arcs > max_arcs:
            raise LatticeError(f"lattice has {n_arcs} arcs (allowed at most {max_arcs})")
        arcs = []
        for _ in range(n_arcs):
            src, step, wi, start_cs, dur_cs = (r.varint() for _ in range(5))
            (lp,) = r.unpack("<e")
            if step == 0:
                raise LatticeError("lattice arc loops on a state (a cycle)")
            if src + step >= num_states:
                raise LatticeError(f"lattice arc to state {src + step} out of range")
            if wi >= len(words):
                raise LatticeError(f"lattice arc names word {wi} of {len(words)}")
            arcs.append(Arc(src, src + step, words[wi], float(lp), start_cs / 100, (start_cs + dur_cs) / 100))
        if r.pos != len(body):
            raise LatticeError(f"{len(body) - r.pos} unexpected trailing bytes in lattice")
        if not finals:
            raise LatticeError("lattice has no final state")
        return Lattice(num_states, arcs, finals, float(norm), audio_seconds)

    def to_json(self) -> dict:
        return {"version": VERSION, "audio_seconds": self.audio_seconds, "log_normalizer": self.log_normalizer,
                "num_states": self.num_states, "finals": {str(s): w for s, w in sorted(self.finals.items())},
                "arcs": [{"from": a.src, "to": a.dst, "word": a.word, "logprob": a.logprob, "start": a.start,
                          "end": a.end} for a in self.arcs]}

    @staticmethod
    def from_json(data: dict | str) -> "Lattice":
        try:
            if isinstance(data, str):
                data = json.loads(data)
            if data.get("version") != VERSION:
                raise LatticeError(f"unsupported lattice version {data.get('version')!r}")
            n = int(data["num_states"])
            if not 1 <= n <= MAX_STATES:
                raise LatticeError(f"lattice has {n} states (allowed 1-{MAX_STATES})")
            finals = {int(s): float(w) for s, w in data["finals"].items()}
            arcs = [Arc(int(a["from"]), int(a["to"]), str(a["word"]), float(a["logprob"]), float(a["start"]),
                        float(a["end"])) for a in data["arcs"]]
        except LatticeError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LatticeError(f"malformed lattice JSON: {exc!r}") from exc
        for a in arcs:
            if a.dst <= a.src:
                raise LatticeError("lattice arcs must go from lower to higher states (cycle or unsorted states)")
            if a.dst >= n:
                raise LatticeError(f"lattice arc to state {a.dst} out of range")
        if not finals or any(not 0 <= s < n for s in finals):
            raise LatticeError("lattice final states missing or out of range")
        return Lattice(n, arcs, finals, float(data.get("log_normalizer", 0.0)), float(data.get("audio_seconds", 0.0)))

    def to_svg(self) -> str:
        """A left-to-right drawing: states placed by time, arcs labelled word / posterior."""
        time_of = {0: 0.0}
        for a in self.arcs:
            time_of[a.dst] = max(time_of.get(a.dst, 0.0), a.end)
        rank: dict[float, int] = {}
        pos = {}
        for s in range(self.num_states):
            t = round(time_of.get(s, 0.0), 2)
            pos[s] = (40 + t * 220, 40 + 60 * rank.get(t, 0))
            rank[t] = rank.get(t, 0) + 1
        width = max(x for x, _ in pos.values()) + 80
        height = max(y for _, y in pos.values()) + 60
        parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
                 f'font-family="sans-serif" font-size="12">',
                 '<defs><marker id="a" markerWidth="8" markerHeight="8" refX="8" refY="4" orient="auto">'
                 '<path d="M0,0 L8,4 L0,8 z"/></marker></defs>']
        for a in self.arcs:
            (x1, y1), (x2, y2) = pos[a.src], pos[a.dst]
            parts.append(f'<line x1="{x1 + 14:.0f}" y1="{y1:.0f}" x2="{x2 - 14:.0f}" y2="{y2:.0f}" stroke="black" '
                         f'marker-end="url(#a)"/>')
            parts.append(f'<text x="{(x1 + x2) / 2:.0f}" y="{(y1 + y2) / 2 - 6:.0f}" text-anchor="middle">'
                         f'{_xml(a.word)} / {math.exp(a.logprob):.2f}</text>')
        for s, (x, y) in pos.items():
            ring = f'<circle cx="{x:.0f}" cy="{y:.0f}" r="10" fill="none" stroke="black"/>' if s in self.finals else ""
            parts.append(f'<circle cx="{x:.0f}" cy="{y:.0f}" r="13" fill="white" stroke="black"/>{ring}'
                         f'<text x="{x:.0f}" y="{y + 4:.0f}" text-anchor="middle">{s}</text>')
        parts.append("</svg>")
        return "\n".join(parts)


def _lse(values: list[float]) -> float:
    if not values:
        return -math.inf
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values)) if m > -math.inf else m


def _q(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def _xml(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _put_varint(buf: bytearray, value: int) -> None:
    if value < 0:
        raise ValueError("varints are unsigned")
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            buf.append(byte | 0x80)
        else:
            buf.append(byte)
            return


class _Reader:
    def __init__(self, data: bytes, pos: int):
        self.data, self.pos = data, pos

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise LatticeError("lattice is truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def varint(self) -> int:
        value = shift = 0
        while True:
            if self.pos >= len(self.data):
                raise LatticeError("lattice is truncated")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 35:
                raise LatticeError("malformed number in lattice")

    def count(self, what: str, limit: int) -> int:
        n = self.varint()
        if n > limit:
            raise LatticeError(f"lattice declares {n} {what} (allowed at most {limit})")
        return n

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

"""Context biasing by shallow fusion: an Aho-Corasick trie over the token sequences of the
user's phrases (contacts, device names, areas), applied inside beam search.

Every token that extends a partial match of a phrase earns a bonus (the phrase's weight,
per token), so a rare name survives the beam long enough to be completed. If the match
fails, the hypothesis falls back along the failure links and the bonus it got for the
abandoned prefix is taken back; a hypothesis that ends inside a partial match loses it
at the end too. A completed phrase keeps its bonus (icefall's and sherpa-onnx's "strict"
context graph).

Phrase list files: one phrase per line, optionally `phrase | weight`; `#` starts a comment.
"""

from __future__ import annotations

from collections import deque
from functools import lru_cache
from dataclasses import dataclass, field
from pathlib import Path

from edgevoice.errors import ConfigError

DEFAULT_WEIGHT = 1.5  # log-probability bonus per token of a phrase


@dataclass
class _Node:
    token: int
    depth: int
    token_score: float
    node_score: float  # sum of token scores from the root: the bonus held by a partial match
    is_end: bool = False
    phrase: str | None = None
    next: dict[int, int] = field(default_factory=dict)
    fail: int = 0
    output: int | None = None  # nearest phrase end along the failure links
    output_score: float = 0.0  # bonus earned on reaching this node for phrases completed here


class ContextGraph:
    ROOT = 0

    def __init__(self, token_phrases: list[tuple[list[int], float, str]]):
        self.nodes = [_Node(-1, 0, 0.0, 0.0)]
        self.phrases = [p for _, _, p in token_phrases]
        self.phrase_tokens = [list(t) for t, _, _ in token_phrases]
        for tokens, weight, phrase in token_phrases:
            if not tokens:
                continue
            node = 0
            for token in tokens:
                child = self.nodes[node].next.get(token)
                if child is None:
                    child = len(self.nodes)
                    parent = self.nodes[node]
                    self.nodes.append(_Node(token, parent.depth + 1, weight, parent.node_score + weight))
                    parent.next[token] = child
                elif weight > self.nodes[child].token_score:  # shared prefix: the stronger boost wins
                    delta = weight - self.nodes[child].token_score
                    self._raise(child, delta)
                node = child
            self.nodes[node].is_end = True
            self.nodes[node].phrase = phrase
        self._link()

    def _raise(self, start: int, delta: float) -> None:
        self.nodes[start].token_score += delta
        stack = [start]
        while stack:
            n = stack.pop()
            self.nodes[n].node_score += delta
            stack.extend(self.nodes[n].next.values())

    def _link(self) -> None:
        """Breadth-first: failure links, output links and output scores."""
        queue = deque(self.nodes[0].next.values())
        for n in queue:
            self.nodes[n].fail = 0
        while queue:
            current = queue.popleft()
            for token, child in self.nodes[current].next.items():
                f = self.nodes[current].fail
                while token not in self.nodes[f].next and f != 0:
                    f = self.nodes[f].fail
                target = self.nodes[f].next.get(token, 0)
                self.nodes[child].fail = target if target != child else 0
                queue.append(child)
            node = self.nodes[current]
            out = node.fail
            while out != 0 and not self.nodes[out].is_end:
                out = self.nodes[out].fail
            node.output = out if out != 0 else None
            node.output_score = (node.node_score if node.is_end else 0.0) + \
                (self.nodes[node.output].output_score if node.output is not None else 0.0)

    def __len__(self) -> int:
        return len(self.phrases)

    def forward(self, state: int, token: int) -> tuple[float, int, str | None]:
        """(bonus, new state, phrase completed here or None) for one emitted token."""
        node = self.nodes[state]
        if token in node.next:
            new = node.next[token]
            score = self.nodes[new].token_score
        else:
            new = node.fail
            while token not in self.nodes[new].next and new != 0:
                new = self.nodes[new].fail
            new = self.nodes[new].next.get(token, 0)
            score = self.nodes[new].node_score - node.node_score  # takes back the abandoned prefix's bonus
        n = self.nodes[new]
        matched = n.phrase if n.is_end else (self.nodes[n.output].phrase if n.output is not None else None)
        return score + n.output_score, new, matched

    def finalize(self, state: int) -> float:
        """Bonus taken back from a hypothesis that ends inside a partial match."""
        return -self.nodes[state].node_score

    # ---- building from text -----------------------------------------------------------

    @staticmethod
    def from_phrases(phrases: list[str | tuple[str, float]], tokenizer, default_weight: float = DEFAULT_WEIGHT) -> "ContextGraph":
        entries = []
        for item in phrases:
            text, weight = (item, default_weight) if isinstance(item, str) else item
            spoken = spoken_form(text)
            if not spoken:
                raise ConfigError(f"bias phrase {text!r} has no words")
            if not weight > 0:
                raise ConfigError(f"bias phrase {text!r}: weight must be positive, got {weight}")
            entries.append((tokenizer.encode(spoken), float(weight), spoken))
        return ContextGraph(entries)

    @staticmethod
    def read_phrase_file(path: str | Path) -> list[tuple[str, float]]:
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the phrase list {path}: {exc}") from exc
        phrases = []
        for number, line in enumerate(lines, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            text, _, weight = line.partition("|")
            try:
                w = float(weight) if weight.strip() else DEFAULT_WEIGHT
            except ValueError:
                raise ConfigError(f"{path}:{number}: weight {weight.strip()!r} is not a number "
                                  f"(write `phrase | 2.0`)") from None
            if not text.strip():
                raise ConfigError(f"{path}:{number}: a weight without a phrase")
            if not w > 0 or w > 20:
                raise ConfigError(f"{path}:{number}: weight must be within (0, 20], got {w}")
            phrases.append((text.strip(), w))
        return phrases


@lru_cache(maxsize=1 << 16)
def spoken_form(text: str) -> str:
    """normalize(text), remembered: a user's lists (and their heard forms) come back with every
    request, and normalizing them again was most of building a 100-phrase graph with forms."""
    from edgevoice.text.normalize import normalize

    return normalize(text)

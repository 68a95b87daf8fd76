"""The ``text_similarity`` metrics, each computed by the library that defines it (none is written here).

OpenAI's graders guide names the metrics and, for ``fuzzy_match``, the library (rapidfuzz); it leaves the rest of
each metric's settings open. ftgw's choices, so that a score can be checked by hand:

- ``fuzzy_match``: ``rapidfuzz.fuzz.ratio(input, reference) / 100``, the normalised Indel similarity of the two
  strings (1 - edit distance with insertions and deletions / total length), case-sensitive.
- ``bleu``: NLTK's ``sentence_bleu`` of the input against the one reference: up to 4-grams, uniform weights, the
  brevity penalty, Chen & Cherry's smoothing method 1 (an n-gram order with no match counts as 0.1 matches, so a
  short answer is not 0), and ``auto_reweigh`` (an answer of fewer than 4 words uses the n-gram orders it has: an
  identical short answer scores 1).
- ``gleu``: NLTK's ``sentence_gleu`` (Google BLEU, 1- to 4-grams): min(precision, recall) over all n-grams.
- ``meteor``: NLTK's ``meteor_score`` (alpha 0.9, beta 3, gamma 0.5; exact, Porter-stem and WordNet-synonym
  matches; lower-cased), WordNet 3.0 read from the copy ``make install`` puts in ``.wordnet/``.
- ``rouge_1`` … ``rouge_5``, ``rouge_l``: the F-measure of Google's ``rouge-score`` (no stemming) with its default
  tokenisation (lower-case, split on what is not a letter or digit) extended to every script's letters and digits:
  the default keeps ASCII only, so a non-English answer would score 0 whatever it said.
- ``cosine`` needs an embeddings model (OpenAI's text-embedding-3-large); ftgw serves none, so it is refused when
  the grader is validated.

BLEU, GLEU and METEOR read words as NLTK's ``wordpunct_tokenize`` splits them (runs of letters and digits, runs of
punctuation; no data files needed). An empty input scores 0 on every metric; so does an empty reference, except
``fuzzy_match`` of two empty strings (1).
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable
from typing import Any

from app.evals.graders._wordnet import reader as wordnet

UNSUPPORTED = {"cosine": "cosine similarity needs an embeddings model, and ftgw serves none"}
_WORD = re.compile(r"[^\W_]+")
_WORDNET_LOCK = threading.Lock()


def fuzzy_match(text: str, reference: str) -> float:
    from rapidfuzz import fuzz

    return float(fuzz.ratio(text, reference)) / 100.0


def _words(text: str) -> list[str]:
    from nltk.tokenize import wordpunct_tokenize

    return list(wordpunct_tokenize(text))


def bleu(text: str, reference: str) -> float:
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    hypothesis, ref = _words(text), _words(reference)
    if not hypothesis or not ref:
        return 0.0
    smoothing = SmoothingFunction().method1
    return float(sentence_bleu([ref], hypothesis, smoothing_function=smoothing, auto_reweigh=True))


def gleu(text: str, reference: str) -> float:
    from nltk.translate.gleu_score import sentence_gleu

    hypothesis, ref = _words(text), _words(reference)
    if not hypothesis or not ref:
        return 0.0
    return float(sentence_gleu([ref], hypothesis))


def meteor(text: str, reference: str) -> float:
    from nltk.translate.meteor_score import meteor_score

    hypothesis, ref = _words(text), _words(reference)
    if not hypothesis or not ref:
        return 0.0
    # NLTK's WordNet reader seeks and reads shared file handles: one thread at a time.
    with _WORDNET_LOCK:
        return float(meteor_score([ref], hypothesis, wordnet=wordnet()))


class _Words:
    """rouge-score's tokenizer interface: its default rule (lower-case, letters and digits) for every script."""

    def tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text.lower())


@functools.cache
def _rouge_scorer(kind: str) -> Any:
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer([kind], tokenizer=_Words())


def _rouge(kind: str) -> Callable[[str, str], float]:
    def score(text: str, reference: str) -> float:
        # rouge-score's argument order is (target, prediction): the reference first.
        return float(_rouge_scorer(kind).score(reference, text)[kind].fmeasure)

    return score


METRICS: dict[str, Callable[[str, str], float]] = {
    "fuzzy_match": fuzzy_match,
    "bleu": bleu,
    "gleu": gleu,
    "meteor": meteor,
    **{f"rouge_{n}": _rouge(f"rouge{n}") for n in range(1, 6)},
    "rouge_l": _rouge("rougeL"),
}


def similarity(metric: str, text: str, reference: str) -> float:
    """``metric``'s score of ``text`` against ``reference``, in [0, 1]."""
    return METRICS[metric](text, reference)

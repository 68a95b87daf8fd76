"""Suggestions about valid examples, gathered while streaming: separators, stop sequences, whitespace, case, labels.

These are the checks of OpenAI's old ``fine_tunes.prepare_data`` tool. Each tracker keeps O(1) state per
check (a common suffix, a few counters, the first lines concerned), plus at most ``MAX_CLASSES`` labels.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from app.datasets.formats import Example
from app.datasets.schemas import Classification, ClassStat, Fix, Format, Suggestion, SuggestionCode
from app.tokenizers import Tokenizer

# Separators, in the order they are proposed; the first that no prompt contains is chosen.
SEPARATORS = ("\n\n###\n\n", " ->", "\n\n===\n\n", "\n\n---\n\n", "\n\n&&&\n\n", "\n\n@@@\n\n")
STOP_SEQUENCES = ("\n", " END", "###", "***", "+++", "&&&", "$$$", "@@@", "%%%")
MAX_LINES = 20
MAX_CLASSES = 50
MAX_LABEL_CHARS = 60
MIN_CLASSIFICATION_EXAMPLES = 10
# A label repeats on average at least this often for the data to look like classification.
CLASSIFICATION_THRESHOLD = 3
# Share of examples whose text is in one case for the whole file to be called so.
CASE_SHARE = 0.9


@dataclass
class LineCounter:
    """A count and the first lines it concerns."""

    count: int = 0
    lines: list[int] = field(default_factory=list)

    def add(self, line: int) -> None:
        self.count += 1
        if len(self.lines) < MAX_LINES:
            self.lines.append(line)


class _Suffix:
    """The longest suffix shared by every text seen, plus which candidate strings appear in them."""

    def __init__(self, candidates: tuple[str, ...]) -> None:
        self.common: str | None = None
        self.candidates = candidates
        self.ending = Counter[str]()
        self.contained: set[str] = set()

    def observe(self, text: str) -> None:
        common = self.common
        if common is None:
            self.common = text
        elif not text.endswith(common):
            length = 0
            limit = min(len(common), len(text))
            while length < limit and common[-1 - length] == text[-1 - length]:
                length += 1
            self.common = common[len(common) - length :] if length else ""
        for candidate in self.candidates:
            if text.endswith(candidate):
                self.ending[candidate] += 1
                body = text[: -len(candidate)]
            else:
                body = text
            if candidate in body:
                self.contained.add(candidate)

    @property
    def marker(self) -> str:
        """The shared ending that can mark where a text ends: ``common`` less the word fragment texts merely share
        (' positive' and ' negative' share 'ive', which marks nothing; ' positive END' and ' negative END' share
        'tive END', whose marker is ' END')."""
        common = self.common or ""
        start = 0
        while start < len(common) and common[start].isalnum():
            start += 1
        return common[start:]

    def choice(self) -> str:
        """The candidate to add: the most used one at the end of texts, else the first no text contains."""
        if self.ending:
            return self.ending.most_common(1)[0][0]
        for candidate in self.candidates:
            if candidate not in self.contained:
                return candidate
        return self.candidates[0]


class Checks:
    """Feed every valid example with :meth:`observe`; :meth:`suggestions` reports at the end."""

    def __init__(self) -> None:
        self.n = 0
        self.prompts = _Suffix(SEPARATORS)
        self.completions = _Suffix(STOP_SEQUENCES)
        self.no_space = LineCounter()
        self.upper = LineCounter()
        self.lower = LineCounter()
        self.cased = 0
        self.labels: Counter[str] | None = Counter()

    def observe(self, line: int, ex: Example) -> None:
        self.n += 1
        target = "".join(ex.texts[i] for i in ex.targets) if len(ex.targets) != 1 else ex.texts[ex.targets[0]]
        if target.isupper():
            self.upper.add(line)
            self.cased += 1
        elif target.islower():
            self.lower.add(line)
            self.cased += 1
        elif target.lower() != target:
            self.cased += 1
        if ex.prompt is not None and ex.label is not None:
            self.prompts.observe(ex.prompt)
            self.completions.observe(ex.label)
            if ex.label and not ex.label[0].isspace():
                self.no_space.add(line)
        labels = self.labels
        if labels is not None and ex.label is not None:
            if len(ex.label) > MAX_LABEL_CHARS or (ex.label not in labels and len(labels) >= MAX_CLASSES):
                self.labels = None  # free text, not labels: stop counting
            else:
                labels[ex.label] += 1

    def classes(self) -> list[tuple[str, int]] | None:
        """The labels, most common first, when few distinct short targets repeat; None otherwise."""
        labels = self.labels
        if labels is None or self.n < MIN_CLASSIFICATION_EXAMPLES or len(labels) < 2:
            return None
        if len(labels) * CLASSIFICATION_THRESHOLD > self.n:
            return None
        return labels.most_common()

    def classification(self, tokenizer: Tokenizer) -> Classification | None:
        """Classes and their balance when the data looks like classification (:meth:`classes`); None otherwise."""
        found = self.classes()
        if found is None:
            return None
        stop = self.completions.marker
        classes = [
            ClassStat(label=label, count=count, single_token=tokenizer.count(_strip_suffix(label, stop)) == 1)
            for label, count in found
        ]
        return Classification(
            classes=classes,
            imbalance=round(classes[0].count / classes[-1].count, 2),
            all_single_token=all(c.single_token for c in classes),
        )

    def suggestions(self, fmt: Format | None, classification: Classification | None) -> list[Suggestion]:
        out: list[Suggestion] = []
        if fmt is Format.PROMPT_COMPLETION and self.n:
            out += self._separator() + self._stop(classification) + self._whitespace()
        out += self._case()
        if classification is not None:
            names = ", ".join(repr(c.label) for c in classification.classes[:10])
            note = "" if classification.all_single_token else "; some labels are several tokens (single is best)"
            out.append(
                Suggestion(
                    code=SuggestionCode.CLASSIFICATION,
                    message=f"looks like classification into {len(classification.classes)} classes ({names}), "
                    f"imbalance {classification.imbalance}x{note}",
                    count=self.n,
                )
            )
        return out

    def _separator(self) -> list[Suggestion]:
        suffix = self.prompts
        if suffix.marker:
            return []
        value = suffix.choice()
        inconsistent = bool(suffix.ending)
        code = SuggestionCode.INCONSISTENT_SEPARATOR if inconsistent else SuggestionCode.MISSING_SEPARATOR
        why = "prompts end with different separators" if inconsistent else "prompts share no separator at the end"
        return [
            Suggestion(
                code=code,
                message=f"{why}; add {value!r} to the end of every prompt so the model knows where it ends",
                count=self.n - suffix.ending[value],
                fix=Fix.ADD_SEPARATOR,
                recommended=True,
                value=value,
            )
        ]

    def _stop(self, classification: Classification | None) -> list[Suggestion]:
        suffix = self.completions
        if suffix.marker:
            return []
        value = suffix.choice()
        inconsistent = bool(suffix.ending)
        code = SuggestionCode.INCONSISTENT_STOP_SEQUENCE if inconsistent else SuggestionCode.MISSING_STOP_SEQUENCE
        why = "completions end with different stop sequences" if inconsistent else "completions share no ending"
        return [
            Suggestion(
                code=code,
                message=f"{why}; add {value!r} to every completion and pass it as `stop` at inference",
                count=self.n - suffix.ending[value],
                fix=Fix.ADD_STOP_SEQUENCE,
                # A label needs no stop sequence when generation is capped at one token.
                recommended=classification is None,
                value=value,
            )
        ]

    def _whitespace(self) -> list[Suggestion]:
        if not self.no_space.count:
            return []
        return [
            Suggestion(
                code=SuggestionCode.NO_LEADING_WHITESPACE,
                message=f"{self.no_space.count} completions do not start with a space; tokenizers split words "
                "with their leading space, so add one",
                count=self.no_space.count,
                lines=self.no_space.lines,
                fix=Fix.ADD_LEADING_WHITESPACE,
                recommended=True,
                value=" ",
            )
        ]

    def _case(self) -> list[Suggestion]:
        if self.cased < MIN_CLASSIFICATION_EXAMPLES:
            return []
        if self.upper.count >= CASE_SHARE * self.cased:
            return [
                Suggestion(
                    code=SuggestionCode.ALL_UPPERCASE,
                    message=f"{self.upper.count} of {self.cased} examples are all uppercase; lowercasing may help",
                    count=self.upper.count,
                    lines=self.upper.lines,
                    fix=Fix.LOWERCASE,
                )
            ]
        if self.lower.count >= CASE_SHARE * self.cased:
            return [
                Suggestion(
                    code=SuggestionCode.ALL_LOWERCASE,
                    message=f"{self.lower.count} of {self.cased} examples are all lowercase; the model will "
                    "answer in lowercase too",
                    count=self.lower.count,
                    lines=self.lower.lines,
                )
            ]
        return []


def _strip_suffix(text: str, suffix: str) -> str:
    return text[: -len(suffix)] if suffix and text.endswith(suffix) else text

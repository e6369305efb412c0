"""A byte-level text corpus that any machine can rebuild from Debian package names.

Tokens are bytes: token id = byte value (0-255); special tokens are >= 256 (``BOS``, ``EOS``, ``PAD``).
On disk every split is a flat ``uint8`` file of UTF-8 text in which documents are separated by the
byte 0 (``SEPARATOR``, which cleaning removes from the text itself); loaders map it to ``EOS``.

``build_corpus`` downloads each source package with ``apt-get download`` (or takes the ``.deb`` from a
cache folder), unpacks it with ``dpkg-deb -x``, extracts plain text with a per-format extractor
(dictd databases, HTML, Sphinx sources, roff manual pages, Texinfo, LaTeX, plain text, the KJV Bible
through the ``bible`` program of ``bible-kjv``), cleans it to UTF-8, removes duplicate paragraphs,
assigns every document to ``train`` or ``heldout`` by a hash of its id, and writes
``train.bin``, ``heldout_<domain>.bin`` (plus ``unseen_<name>.bin`` for sources kept out of training
altogether) and ``manifest.json`` (sources, package versions, licences, byte counts, sha256).
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import html
import html.parser
import json
import re
import shutil
import subprocess
import sys
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nirvana_mri.io_utils import atomic_path, atomic_write_text

# --- the byte tokenizer ------------------------------------------------------------------------------
SEPARATOR = 0  # document separator byte in the .bin files (never part of cleaned text)
BOS, EOS, PAD = 256, 257, 258  # special tokens (>= 256)
VOCAB_SIZE = 512  # room for specials


def encode(text: str) -> np.ndarray:
    """UTF-8 bytes of ``text`` as a ``uint8`` array (token id = byte value)."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()


def decode(ids: Iterable[int]) -> str:
    """Bytes back to text; special tokens (>= 256) are dropped, invalid UTF-8 is replaced."""
    return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")


def to_tokens(chunk: np.ndarray) -> np.ndarray:
    """A ``uint8`` slice of a ``.bin`` file -> ``int64`` token ids (separator -> ``EOS``)."""
    tokens = chunk.astype(np.int64)
    tokens[tokens == SEPARATOR] = EOS
    return tokens


# --- cleaning ----------------------------------------------------------------------------------------
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b\ufeff]")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")


def clean_text(text: str) -> str:
    """NFC-normalised UTF-8 text with ``\\n`` line ends, no control bytes (tab kept), no trailing
    spaces, at most one blank line in a row."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _CONTROL.sub("", text)
    text = _TRAILING_SPACE.sub("\n", text)
    return _MANY_BLANK_LINES.sub("\n\n", text).strip("\n") + "\n"


def split_large(doc_id: str, text: str, max_bytes: int) -> Iterator[tuple[str, str]]:
    """Split a long text at blank lines into pieces of about ``max_bytes`` (each its own document)."""
    if len(text.encode("utf-8")) <= max_bytes:
        yield doc_id, text
        return
    piece: list[str] = []
    size = 0
    number = 0
    for paragraph in text.split("\n\n"):
        piece.append(paragraph)
        size += len(paragraph.encode("utf-8")) + 2
        if size >= max_bytes:
            yield f"{doc_id}#{number}", "\n\n".join(piece)
            piece, size, number = [], 0, number + 1
    if piece:
        yield f"{doc_id}#{number}", "\n\n".join(piece)


# --- extractors: unpacked package folder -> (document id, raw text) --------------------------------------
def _read(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix in (".gz", ".dz"):
        data = gzip.decompress(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")  # older HTML pages in Windows-1252/Latin-1


def _files(root: Path, patterns: Iterable[str]) -> list[Path]:
    found = sorted({p for pattern in patterns for p in root.glob(pattern) if p.is_file()})
    if not found:
        raise FileNotFoundError(f"no file matches {list(patterns)} under {root}")
    return found


def extract_dictd(root: Path, patterns: list[str], entries_per_doc: int = 200) -> Iterator[tuple[str, str]]:
    """A dictd database (``.index`` + ``.dict.dz``): groups of consecutive entries are documents."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    digits = {c: i for i, c in enumerate(alphabet)}

    def b64(value: str) -> int:
        number = 0
        for char in value:
            number = number * 64 + digits[char]
        return number

    for data_path in _files(root, patterns):
        name = data_path.name.split(".")[0]
        data = gzip.decompress(data_path.read_bytes())
        spans = set()
        for line in (data_path.parent / f"{name}.index").read_text(errors="replace").splitlines():
            parts = line.split("\t")
            if len(parts) >= 3 and not parts[0].startswith("00-database"):
                spans.add((b64(parts[1]), b64(parts[2])))
        ordered = sorted(spans)
        for start in range(0, len(ordered), entries_per_doc):
            group = ordered[start : start + entries_per_doc]
            text = "\n".join(data[o : o + n].decode("utf-8", errors="replace") for o, n in group)
            text = re.sub(r" {5,}", "    ", text)  # deep hanging indents waste bytes
            yield f"{name}:{start // entries_per_doc:05d}", text


class _HTMLText(html.parser.HTMLParser):
    SKIP_TAGS = {"script", "style", "head", "nav", "footer"}
    SKIP_CLASSES = {
        "related",
        "sphinxsidebar",
        "sphinxsidebarwrapper",
        "footer",
        "headerlink",
        "navheader",
        "navfooter",
        "breadcrumb",
        "toc",
        "navigation",
        "bd-sidebar",
        "header",
    }
    VOID = {"br", "img", "hr", "meta", "link", "input", "area", "base", "col", "embed", "source", "wbr"}
    BLOCK = {
        "p",
        "div",
        "br",
        "li",
        "ul",
        "ol",
        "dl",
        "dt",
        "dd",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "pre",
        "table",
        "tr",
        "blockquote",
        "section",
        "article",
        "hr",
    }

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip_depth = 0  # > 0 while inside a skipped element (counts nested non-void tags)
        self.pre = 0

    def handle_starttag(self, tag, attrs):
        if self.skip_depth:
            if tag not in self.VOID:
                self.skip_depth += 1
            return
        classes = set((dict(attrs).get("class") or "").split())
        if tag not in self.VOID and (tag in self.SKIP_TAGS or classes & self.SKIP_CLASSES):
            self.skip_depth = 1
            return
        if tag == "pre":
            self.pre += 1
        if tag in self.BLOCK:
            self.parts.append("\n\n" if tag not in ("br", "li", "tr", "dt", "dd") else "\n")

    def handle_endtag(self, tag):
        if self.skip_depth:
            if tag not in self.VOID:
                self.skip_depth -= 1
            return
        if tag == "pre" and self.pre:
            self.pre -= 1
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skip_depth:
            if self.pre:  # keep preformatted text as is; mark its lines so that stripping spares them
                self.parts.append("\n".join(PRE_MARK + line for line in data.split("\n")))
            else:
                self.parts.append(re.sub(r"\s+", " ", data))


PRE_MARK = "\x01"


def html_to_text(markup: str) -> str:
    parser = _HTMLText()
    parser.feed(markup)
    parser.close()
    lines = []
    for line in "".join(parser.parts).split("\n"):
        lines.append(line.replace(PRE_MARK, "").rstrip() if PRE_MARK in line else line.strip())
    return "\n".join(lines)


def extract_html(root: Path, patterns: list[str]) -> Iterator[tuple[str, str]]:
    for path in _files(root, patterns):
        yield str(path.relative_to(root)), html_to_text(_read(path))


def extract_plain(root: Path, patterns: list[str]) -> Iterator[tuple[str, str]]:
    for path in _files(root, patterns):
        yield str(path.relative_to(root)), _read(path)


_ROFF_ESCAPES = [
    (r"\\f[BIRP1-4]|\\f\([A-Z]{2}|\\f\[[A-Z]*\]", ""),
    (r"\\-", "-"),
    (r"\\\(em", "\u2014"),
    (r"\\\(en", "\u2013"),
    (r"\\\(aq", "'"),
    (r"\\\(dq", '"'),
    (r"\\\(lq|\\\(rq", '"'),
    (r"\\\(oq|\\\(cq", "'"),
    (r"\\\(bu", "*"),
    (r"\\\(co", "(c)"),
    (r"\\\(rg", "(R)"),
    (r"\\\(mu", "x"),
    (r"\\\(ti", "~"),
    (r"\\\(ha", "^"),
    (r"\\\(\*.", ""),
    (r"\\\([a-z]{2}", ""),
    (r"\\\[[^\]]*\]", ""),
    (r"\\&", ""),
    (r"\\[|^,/%:]", ""),
    (r"\\[ ~0]", " "),
    (r"\\e", "\\\\"),
    (r"\\\*\(..|\\\*\[[^\]]*\]|\\\*.", ""),
    (r"\\s[-+]?\d", ""),
    (r"\\c\n", ""),
    (r"\\\n", ""),
]


def roff_to_text(source: str) -> str:
    """Plain text of a man page in roff (-man macros), good enough for language modelling."""
    out: list[str] = []
    for line in source.split("\n"):
        if line.startswith(('.\\"', "'\\\"", ".\\}")) or line in (".", "'"):
            continue
        if line.startswith((".", "'")):
            match = re.match(r"[.'](\S+)\s*(.*)", line)
            if not match:
                continue
            macro, rest = match.groups()
            rest = (
                rest.replace('"', "")
                if macro in ("B", "I", "BR", "IR", "RB", "BI", "IB", "RI", "SM", "SB")
                else rest.strip('"')
            )
            if macro in ("SH", "SS"):
                out.append("\n" + rest.upper() if macro == "SH" else "\n" + rest)
            elif macro in ("B", "I", "SM", "SB"):
                out.append(rest)
            elif macro in ("BR", "IR", "RB", "BI", "IB", "RI"):
                out.append(re.sub(r"\s+", "", rest) if len(rest.split()) <= 3 else rest)
            elif macro in ("PP", "P", "LP", "TP", "IP", "sp", "br", "HP"):
                out.append("")
                if macro == "IP" and rest:
                    out.append(rest.split()[0])
            elif macro == "TH":
                out.append(rest.split()[0] if rest else "")
            # every other request (.nf, .fi, .RS, .RE, .in, .ad, .TS, .de, ...) produces no text
            continue
        out.append(line)
    text = "\n".join(out)
    for pattern, replacement in _ROFF_ESCAPES:
        text = re.sub(pattern, replacement, text)
    return text.replace("\\", "")


def extract_man(root: Path, patterns: list[str]) -> Iterator[tuple[str, str]]:
    for path in _files(root, patterns):
        source = _read(path)
        if source.startswith(".so "):
            continue  # a link to another page
        yield str(path.relative_to(root)), roff_to_text(source)


def extract_info(root: Path, patterns: list[str]) -> Iterator[tuple[str, str]]:
    """Texinfo ``.info``: each node is a document (the control-character headers are dropped)."""
    for path in _files(root, patterns):
        for number, node in enumerate(_read(path).split("\x1f")):
            body = "\n".join(
                line for line in node.split("\n") if not line.startswith(("File: ", "Tag Table:"))
            )
            if len(body.strip()) > 200:
                yield f"{path.relative_to(root)}:{number:04d}", body


_TEX_DROP = re.compile(
    r"\\(begin|end|label|ref|cite|index|includegraphics|input|include|cmd|pageref|url)"
    r"(\[[^\]]*\])?\{[^}]*\}"
)
_TEX_KEEP = re.compile(r"\\[a-zA-Z]+\*?(\[[^\]]*\])?\{([^{}]*)\}")


def tex_to_text(source: str) -> str:
    """Prose of a LaTeX file: comments and environments markers dropped, simple commands unwrapped."""
    lines = [re.sub(r"(?<!\\)%.*", "", line) for line in source.split("\n")]
    text = _TEX_DROP.sub("", "\n".join(lines))
    for _ in range(3):
        text = _TEX_KEEP.sub(r"\2", text)
    text = re.sub(r"\\[a-zA-Z]+\*?", "", text)
    text = (
        text.replace("~", " ").replace("``", '"').replace("''", '"').replace("\\%", "%").replace("\\$", "$")
    )
    return re.sub(r"[{}]", "", text)


def extract_tex(root: Path, patterns: list[str]) -> Iterator[tuple[str, str]]:
    for path in _files(root, patterns):
        yield str(path.relative_to(root)), tex_to_text(_read(path))


def extract_kjv(
    root: Path, patterns: list[str], program_root: Path | None = None
) -> Iterator[tuple[str, str]]:
    """The KJV Bible of ``bible-kjv-text`` (a compressed database) through the ``bible`` program of
    ``bible-kjv``; each book is a document."""
    data = _files(root, patterns)[0]
    program = (program_root / "usr/bin/bible") if program_root else Path(shutil.which("bible") or "bible")
    result = subprocess.run(
        [str(program), "-l", "100000", "-p", str(data.parent), "-d", data.name, "gen1:1-rev22:21"],
        capture_output=True,
        check=True,
    )
    text = result.stdout.decode("utf-8", errors="replace")
    book, lines = None, []
    for line in text.split("\n"):
        header = re.fullmatch(r"((?:\d )?[A-Z][A-Za-z ]+?) (\d+)", line.strip())
        if header and (book is None or header.group(1) != book):
            if book is not None:
                yield f"kjv:{book}", "\n".join(lines)
            book, lines = header.group(1), []
        lines.append(line.strip())
    if book is not None:
        yield f"kjv:{book}", "\n".join(lines)


SCANCODE_CATEGORIES = (
    "Permissive",
    "Copyleft",
    "Copyleft Limited",
    "Public Domain",
    "Free Restricted",
    "Patent License",
)


def extract_scancode_licences(root: Path, patterns: list[str]) -> Iterator[tuple[str, str]]:
    """Licence texts of ScanCode's LicenseDB (YAML front matter + text), free-licence categories only."""
    for path in _files(root, patterns):
        source = _read(path)
        match = re.match(r"---\n(.*?)\n---\n(.*)", source, re.S)
        if not match:
            continue
        front, body = match.groups()
        category = re.search(r"^category: (.*)$", front, re.M)
        name = re.search(r"^name: (.*)$", front, re.M)
        if not category or category.group(1).strip().strip("'\"") not in SCANCODE_CATEGORIES:
            continue
        if front.find("is_deprecated: yes") >= 0 or len(body.strip()) < 200:
            continue
        title = name.group(1).strip().strip("'\"") if name else path.stem
        yield path.stem, f"{title}\n\n{body.strip()}"


EXTRACTORS: dict[str, Callable[..., Iterator[tuple[str, str]]]] = {
    "dictd": extract_dictd,
    "html": extract_html,
    "plain": extract_plain,
    "man": extract_man,
    "info": extract_info,
    "tex": extract_tex,
    "kjv": extract_kjv,
    "scancode_licences": extract_scancode_licences,
}


# --- the sources -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    name: str
    package: str
    domain: str  # a held-out split per domain; "unseen" sources never enter training
    licence: str
    extractor: str
    patterns: list[str] = field(default_factory=list)
    max_bytes: int | None = None  # cap on the cleaned text kept (documents chosen by hash)
    helper_packages: tuple[str, ...] = ()  # needed to extract, not part of the text
    note: str = ""
    registry: str = "debian"  # "debian" (apt-get download) or "pypi" (pip download of a wheel, pinned)
    version: str | None = None  # required for PyPI sources (reproducibility)


# Licences checked against each package's debian/copyright (all in Debian main, all allow
# redistribution; GPL/GFDL texts as training data are recorded here and in the model card).
SOURCES: list[Source] = [
    Source(
        "kjv",
        "bible-kjv-text",
        "literature",
        "public domain (King James Version text); packaging GPL-2+",
        "kjv",
        ["usr/lib/bible.data"],
        helper_packages=("bible-kjv",),
    ),
    Source(
        "gcide",
        "dict-gcide",
        "dictionary",
        "GPL-2+ (GCIDE; based on Webster's 1913, public domain)",
        "dictd",
        ["usr/share/dictd/gcide.dict.dz"],
        max_bytes=12_000_000,
    ),
    Source(
        "foldoc",
        "dict-foldoc",
        "computing",
        "GFDL-1.1+ (FOLDOC)",
        "dictd",
        ["usr/share/dictd/foldoc.dict.dz"],
    ),
    Source(
        "jargon",
        "jargon-text",
        "computing",
        "public domain (Jargon File 4.4.7)",
        "plain",
        ["usr/share/doc/jargon-text/jargon.txt.gz"],
    ),
    Source(
        "python-docs",
        "python3.11-doc",
        "computing",
        "PSF-2.0 (Python documentation)",
        "plain",
        ["usr/share/doc/python3.11/html/_sources/**/*.txt"],
        max_bytes=9_000_000,
    ),
    Source(
        "manpages",
        "manpages",
        "computing",
        "various free licences (GPL-2+, BSD, verbatim, public domain; Linux man-pages, Debian main)",
        "man",
        ["usr/share/man/man*/*.gz"],
    ),
    Source(
        "debian-reference",
        "debian-reference-en",
        "computing",
        "GPL-2+",
        "plain",
        ["usr/share/debian-reference/debian-reference.en.txt.gz"],
    ),
    Source(
        "debian-faq",
        "debian-faq",
        "computing",
        "GPL-2+ (Debian FAQ)",
        "html",
        ["usr/share/doc/debian/FAQ/*.en.html"],
    ),
    Source(
        "gnumed-manual",
        "gnumed-doc",
        "biomedical",
        "GPL-2+ (GNUmed medical practice manual)",
        "html",
        ["usr/share/doc/gnumed/user-manual/**/*.html"],
        note="medical-practice software manual (clinical records, prescriptions, documents)",
    ),
    Source(
        "dipy-docs",
        "python-dipy-doc",
        "biomedical",
        "BSD-3-Clause (DIPY documentation)",
        "html",
        ["usr/share/doc/python-dipy-doc/html/**/*.html"],
        note="diffusion MRI analysis documentation",
    ),
    Source(
        "nibabel-docs",
        "python-nibabel-doc",
        "biomedical",
        "Expat/BSD-3-Clause (NiBabel documentation)",
        "html",
        ["usr/share/doc/python-nibabel-doc/html/**/*.html"],
        note="neuroimaging file formats (NIfTI, DICOM, MINC) documentation",
    ),
    Source(
        "licences",
        "base-files",
        "legal",
        "verbatim copying of licence texts permitted (GPL, LGPL, "
        "GFDL, Apache-2.0, MPL-2.0, Artistic, CC0-1.0 in /usr/share/common-licenses)",
        "plain",
        ["usr/share/common-licenses/*"],
    ),
    Source(
        "scancode-licences",
        "scancode-toolkit-mini",
        "legal",
        "CC-BY-4.0 (ScanCode LicenseDB data); "
        "the texts are open-source licence documents, verbatim copying permitted",
        "scancode_licences",
        ["licensedcode/data/licenses/*.LICENSE"],
        max_bytes=6_000_000,
        registry="pypi",
        version="32.5.0",
        note="licence texts of categories Permissive, Copyleft, Copyleft Limited, Public Domain, "
        "Free Restricted, Patent License (proprietary and commercial agreements left out)",
    ),
    Source(
        "gnucash-docs",
        "gnucash-docs",
        "finance",
        "GFDL-1.1+ (no invariant sections) / GPL-2+",
        "html",
        [
            "usr/share/doc/gnucash-docs/gnucash-guide-en/*.html",
            "usr/share/doc/gnucash-docs/gnucash-help-en/*.html",
        ],
        note="personal and business accounting guide",
    ),
    Source(
        "hledger-manual",
        "hledger",
        "finance",
        "GPL-3+ (hledger manual)",
        "info",
        ["usr/share/doc/hledger/hledger.info.gz"],
        note="plain-text double-entry accounting",
    ),
    Source(
        "gretl-guide",
        "gretl-doc",
        "finance",
        "GPL-3 (gretl user's guide, econometrics)",
        "tex",
        ["usr/share/doc/gretl/doc/tex/*.tex*"],
    ),
    Source(
        "devils-dictionary",
        "dict-devil",
        "unseen",
        "public domain (Ambrose Bierce, 1911)",
        "dictd",
        ["usr/share/dictd/devil.dict.dz"],
        note="never trained on: English prose for the unigram comparison",
    ),
]


# --- building ------------------------------------------------------------------------------------------
def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def is_heldout(doc_id: str, fraction: float, salt: str = "nirvana-heldout-v1") -> bool:
    """Deterministic split by document id."""
    return _stable_hash(f"{salt}:{doc_id}") % 1_000_000 < fraction * 1_000_000


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_wheel(package: str, version: str, cache: Path) -> Path:
    """The wheel ``package==version`` from the cache folder, downloading it with ``pip download``."""
    cache.mkdir(parents=True, exist_ok=True)
    stem = package.replace("-", "_")
    found = sorted(cache.glob(f"{stem}-{version}-*.whl"))
    if not found:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary",
                ":all:",
                f"{package}=={version}",
                "-d",
                str(cache),
            ],
            check=True,
        )
        found = sorted(cache.glob(f"{stem}-{version}-*.whl"))
    if not found:
        raise FileNotFoundError(f"pip download {package}=={version} left no wheel in {cache}")
    return found[-1]


def unpack_wheel(wheel: Path, work: Path, patterns: list[str]) -> Path:
    """Extract the members of ``wheel`` that match ``patterns`` (fnmatch) once; returns the folder."""
    root = work / wheel.stem
    if not (root / ".unpacked").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        with zipfile.ZipFile(wheel) as archive:
            members = [m for m in archive.namelist() if any(fnmatch.fnmatch(m, p) for p in patterns)]
            archive.extractall(root, members)
        (root / ".unpacked").touch()
    return root


def fetch_package(package: str, debs: Path) -> Path:
    """The ``.deb`` of ``package`` from the cache folder, downloading it with ``apt-get download``."""
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        subprocess.run(["apt-get", "download", package], cwd=debs, check=True)
        found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        raise FileNotFoundError(f"apt-get download {package} left no .deb in {debs}")
    return found[-1]


def unpack(deb: Path, work: Path) -> tuple[Path, str]:
    """Unpack ``deb`` (``dpkg-deb -x``) once; returns the folder and the package version."""
    version = subprocess.run(
        ["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    root = work / deb.stem
    if not (root / ".unpacked").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        (root / ".unpacked").touch()
    return root, version


def _cap(documents: list[tuple[str, str]], max_bytes: int | None) -> list[tuple[str, str]]:
    if max_bytes is None:
        return documents
    kept, total = [], 0
    for doc_id, text in sorted(documents, key=lambda d: _stable_hash("cap:" + d[0])):
        size = len(text.encode("utf-8"))
        if total + size > max_bytes:
            continue
        kept.append((doc_id, text))
        total += size
    return sorted(kept)


def build_corpus(
    out: Path,
    debs: Path,
    work: Path,
    sources: list[Source] | None = None,
    heldout_fraction: float = 0.05,
    max_doc_bytes: int = 16_000,
    log: Callable[[str], None] = print,
) -> dict:
    """Fetch, extract, clean, deduplicate, split and write the corpus; returns the manifest."""
    sources = SOURCES if sources is None else sources
    out.mkdir(parents=True, exist_ok=True)
    seen_paragraphs: set[bytes] = set()
    train: list[tuple[str, int, bytes]] = []  # (domain, split hash, data)
    heldout: dict[str, list[bytes]] = {}
    unseen: dict[str, list[bytes]] = {}
    records = []
    for source in sources:
        if source.registry == "pypi":
            if not source.version:
                raise ValueError(f"PyPI source {source.name} needs a pinned version")
            deb = fetch_wheel(source.package, source.version, debs)
            root, version = unpack_wheel(deb, work, source.patterns), source.version
        else:
            deb = fetch_package(source.package, debs)
            root, version = unpack(deb, work)
        kwargs = {}
        helpers = []
        for helper in source.helper_packages:
            helper_root, helper_version = unpack(fetch_package(helper, debs), work)
            kwargs["program_root"] = helper_root
            helpers.append({"package": helper, "version": helper_version})
        raw_docs = list(EXTRACTORS[source.extractor](root, source.patterns, **kwargs))
        documents = []
        for doc_id, raw in raw_docs:
            documents.extend(split_large(doc_id, clean_text(raw), max_doc_bytes))
        documents = _cap(documents, source.max_bytes)
        counts = {"documents": 0, "train_bytes": 0, "heldout_bytes": 0, "duplicate_paragraph_bytes": 0}
        for doc_id, text in documents:
            paragraphs = []
            for paragraph in text.split("\n\n"):
                key = hashlib.sha1(paragraph.strip().encode("utf-8")).digest()
                if len(paragraph) >= 80 and key in seen_paragraphs:
                    counts["duplicate_paragraph_bytes"] += len(paragraph.encode("utf-8"))
                    continue
                seen_paragraphs.add(key)
                paragraphs.append(paragraph)
            body = "\n\n".join(paragraphs).strip("\n")
            if len(body) < 64:
                continue
            data = body.encode("utf-8") + b"\n"
            counts["documents"] += 1
            if source.domain == "unseen":
                unseen.setdefault(source.name, []).append(data)
                counts["heldout_bytes"] += len(data)
            elif is_heldout(f"{source.name}/{doc_id}", heldout_fraction):
                heldout.setdefault(source.domain, []).append(data)
                counts["heldout_bytes"] += len(data)
            else:
                train.append((source.domain, _stable_hash(f"{source.name}/{doc_id}"), data))
                counts["train_bytes"] += len(data)
        record = {
            "name": source.name,
            "registry": source.registry,
            "package": source.package,
            "version": version,
            "file": deb.name,
            "file_sha256": _sha256(deb),
            "domain": source.domain,
            "licence": source.licence,
            "extractor": source.extractor,
            "patterns": source.patterns,
            "max_bytes": source.max_bytes,
            "raw_documents": len(raw_docs),
            **counts,
        }
        if helpers:
            record["helper_packages"] = helpers
        if source.note:
            record["note"] = source.note
        records.append(record)
        log(
            f"{source.name:18s} {source.package} {version}: {counts['documents']} docs, "
            f"train {counts['train_bytes'] / 1e6:.2f} MB, held-out {counts['heldout_bytes'] / 1e6:.2f} MB"
        )

    for domain in sorted({s.domain for s in sources} - {"unseen"}):
        if not heldout.get(domain):  # a small domain: hold out its document of smallest hash
            candidates = [item for item in train if item[0] == domain]
            if not candidates:
                raise ValueError(f"domain {domain!r} has no document")
            chosen = min(candidates, key=lambda item: item[1])
            train.remove(chosen)
            heldout[domain] = [chosen[2]]
            log(
                f"domain {domain}: no document fell in the held-out split; "
                f"holding out one ({len(chosen[2])} bytes)"
            )
    files = {"train.bin": [item[2] for item in train]}
    files.update({f"heldout_{domain}.bin": docs for domain, docs in sorted(heldout.items())})
    files.update({f"unseen_{name}.bin": docs for name, docs in sorted(unseen.items())})
    outputs = {}
    for filename, docs in files.items():
        with atomic_path(out / filename) as tmp:
            tmp.write_bytes(bytes([SEPARATOR]).join(docs))
        outputs[filename] = {
            "bytes": (out / filename).stat().st_size,
            "documents": len(docs),
            "sha256": _sha256(out / filename),
        }
    manifest = {
        "format": "uint8 UTF-8 bytes; documents separated by byte 0 (loaded as EOS=257); "
        "token id = byte value",
        "special_tokens": {"BOS": BOS, "EOS": EOS, "PAD": PAD},
        "vocab_size": VOCAB_SIZE,
        "heldout_fraction": heldout_fraction,
        "max_doc_bytes": max_doc_bytes,
        "split_rule": "sha256('nirvana-heldout-v1:<source>/<doc id>') decides held-out per document",
        "deduplication": "exact paragraphs (>= 80 characters) seen before are dropped, across all sources",
        "sources": records,
        "files": outputs,
    }
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(folder: Path) -> dict:
    return json.loads((Path(folder) / "manifest.json").read_text())


def load_bin(path: Path) -> np.ndarray:
    """A corpus split as a read-only memory map of ``uint8``."""
    return np.memmap(path, dtype=np.uint8, mode="r")


def byte_frequencies(data: np.ndarray) -> np.ndarray:
    """Counts of each byte value (256) in ``data``."""
    return np.bincount(np.asarray(data), minlength=256).astype(np.float64)


def unigram_bits_per_byte(train_counts: np.ndarray, heldout: np.ndarray) -> float:
    """Cross-entropy (bits per byte) of ``heldout`` (separators excluded) under the add-one smoothed
    byte frequencies of the training data."""
    counts = np.asarray(train_counts, dtype=np.float64).copy()
    counts[SEPARATOR] = 0
    probs = (counts + 1.0) / (counts.sum() + 256.0)
    values = np.asarray(heldout)
    values = values[values != SEPARATOR]
    if values.size == 0:
        raise ValueError("held-out data is empty")
    return float(-np.log2(probs[values]).mean())

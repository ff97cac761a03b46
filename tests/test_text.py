"""The text engine shared by rank and learn: splitting, analyzers, phrases and TF-IDF."""

from __future__ import annotations

import pytest

from poetkb import text
from poetkb.text import TfidfIndex, analyze, analyze_code, code_words, has_phrase, normalise, split_identifier

DOCS = [
    "cache key includes the accept language header",
    "retry only idempotent requests on another upstream upstream",
    "proxy read timeout cuts a hanging upstream",
    "vary header honored by the cache cache cache",
    "x forwarded for header is appended not replaced",
]


def test_identifiers_split_the_same_way_for_rank_and_learn() -> None:
    """snake_case, camelCase, acronyms and dashes give the same parts."""
    assert split_identifier("proxy_cache_key") == ["proxy", "cache", "key"]
    assert split_identifier("maxRetryCount") == ["max", "retry", "count"]
    assert split_identifier("HTTPServer.X-Forwarded-For") == ["http", "server", "x", "forwarded", "for"]
    assert code_words("maxAge_cache-control2") == ["max", "age", "cache", "control", "2"]
    assert normalise("test_XForwardedFor") == "test x forwarded for"


def test_a_letter_that_qualifies_an_acronym_stays_with_it() -> None:
    """``mTLS`` is one word (a rule's ``mtls`` finds it), while camelCase around acronyms still splits."""
    assert normalise("gold_tests/prod/mTLS.test.py") == "gold tests prod mtls test py"
    assert code_words("getURL") == ["get", "url"]
    assert code_words("aHTTPClient") == ["a", "http", "client"]
    assert code_words("eTag") == ["e", "tag"]


def test_the_prose_analyzer_stems_drops_filler_and_adds_bigrams() -> None:
    """Inflections meet, stop words go, the whole compound and neighbouring pairs are terms."""
    terms = analyze("Retries of the proxy_cache_key")
    assert terms == ["retri", "proxy_cache_key", "proxi", "cach", "proxi cach", "key", "cach key"]
    assert analyze("retry") == analyze("retries") == ["retri"]
    assert "the" not in analyze("the cache")
    assert analyze("cache, key") == ["cach", "key"]  # punctuation ends a phrase


def test_the_code_analyzer_gives_words_and_pairs() -> None:
    """Words of two or more characters, then each pair of neighbours."""
    assert analyze_code("vary header x 2 cache") == ["vary", "header", "cache", "vary header", "header cache"]


def test_phrases_match_whole_words_only() -> None:
    """A rule term matches as whole words, with separators and plurals folded; has_phrase on normalised text."""
    assert text.term_pattern("cache key").search("the Cache-Key changed")
    assert text.term_pattern("retry").search("two retries")
    assert not text.term_pattern("retry").search("retryable")
    assert text.term_pattern("proxy_cache_key").fullmatch("proxy_cache_key")
    assert not text.term_pattern("proxy_cache_key").search("proxy cache key")
    assert text.literal("retry on error") == "retr"
    assert has_phrase(" x forwarded for header ", "forwarded for")
    assert not has_phrase(" x forwarded format ", "forwarded for")
    assert not has_phrase(" anything ", "")


@pytest.mark.parametrize("analyzer", ["prose", "code"])
def test_tfidf_equals_scikit_learn(analyzer: str) -> None:
    """Fitted idf, document vectors and new-text vectors equal TfidfVectorizer(sublinear_tf=True) on both analyzers."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if analyzer == "prose":
        vectorizer = TfidfVectorizer(analyzer=analyze, sublinear_tf=True)
        terms_of = analyze
    else:
        vectorizer = TfidfVectorizer(lowercase=False, token_pattern=r"(?u)\b[a-z][a-z0-9]+\b", sublinear_tf=True,
                                     ngram_range=(1, 2))
        terms_of = analyze_code
    matrix = vectorizer.fit_transform(DOCS).tocsr()
    index = TfidfIndex.fit(terms_of(d) for d in DOCS)
    vocabulary = list(vectorizer.get_feature_names_out())
    assert index.terms == vocabulary
    assert index.idf == pytest.approx(list(vectorizer.idf_), abs=1e-12)
    for d, vector in enumerate(index.vectors):
        row = matrix[d].tocoo()
        assert vector == pytest.approx({vocabulary[c]: v for c, v in zip(row.col, row.data, strict=True)}, abs=1e-12)
    query = "the upstream cache header retries upstream"
    row = vectorizer.transform([query]).tocoo()
    assert index.vectorize(terms_of(query)) == pytest.approx(
        {vocabulary[c]: v for c, v in zip(row.col, row.data, strict=True)}, abs=1e-12)


def test_tfidf_postings_and_cosine() -> None:
    """Postings list each term's documents in order; cosine of a normalised vector with itself is 1."""
    index = TfidfIndex.fit(analyze_code(d) for d in DOCS)
    postings = index.postings()
    cache = postings[index.terms.index("cache")]
    assert [d for d, _ in cache] == [0, 3]
    assert text.cosine(index.vectors[3], index.vectors[3]) == pytest.approx(1.0)
    assert text.cosine(index.vectors[0], index.vectors[1]) == 0.0
    assert TfidfIndex.fit([[], []]).terms == []

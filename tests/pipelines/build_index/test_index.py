"""FAISS helpers: index strings, exact top/bottom-n without self, clear errors on bad input."""

import numpy as np
import pytest

from r2scp_pipeline.pipelines.build_index.index import build_index, normalize, search_excluding


def _keys(n=300, d=16, seed=0):
    x = normalize(np.random.default_rng(seed).normal(size=(n, d)))
    return [f"k{i:03d}" for i in range(n)], x


def _exact(keys, queries, n, lowest=False, exclude=None):
    sims = normalize(queries) @ keys.T
    if lowest:
        sims = -sims
    if exclude is not None:
        sims[exclude] = -np.inf
    return np.argsort(-sims, axis=1, kind="stable")[:, :n]


@pytest.mark.parametrize(
    "factory, params",
    [("Flat", ""), ("IVF8,Flat", "nprobe=8"), ("HNSW32", "efSearch=200"), ("IVF4,PQ8", "nprobe=4")],
)
def test_factory_strings_build_and_search(factory, params):
    ids, keys = _keys()
    keyed = build_index(keys, ids, factory, search_params=params, modality="audio")
    assert keyed.ntotal == 300 and keyed.ids == ids and keyed.metadata["factory"] == factory
    queries = np.random.default_rng(1).normal(size=(50, 16))
    rows, scores = search_excluding(keyed, keys, queries, [f"q{i}" for i in range(50)], 3)
    assert rows.shape == scores.shape == (50, 3)
    # scores are the exact cosines of the returned keys, best first
    np.testing.assert_allclose(
        scores, np.einsum("qd,qnd->qn", normalize(queries), keys[rows]), rtol=1e-5, atol=1e-6
    )
    assert (np.diff(scores, axis=1) <= 1e-7).all()
    exact = _exact(keys, queries, 3)
    recall = np.mean([len(set(r) & set(e)) / 3 for r, e in zip(rows, exact, strict=True)])
    assert recall == 1.0 if factory == "Flat" else recall >= 0.6


def test_flat_top_and_bottom_n_are_exact_and_never_the_query_itself():
    ids, keys = _keys(n=40)
    keyed = build_index(keys, ids, "Flat")
    # queries are copies of corpus keys under the same ids: each one's best match is itself
    q_ids = ids[:10]
    for lowest in (False, True):
        rows, scores = search_excluding(keyed, keys, keys[:10], q_ids, 5, lowest=lowest)
        exclude = np.zeros((10, 40), bool)
        exclude[np.arange(10), np.arange(10)] = True
        np.testing.assert_array_equal(rows, _exact(keys, keys[:10], 5, lowest, exclude))
        assert all(q not in {ids[r] for r in row} for q, row in zip(q_ids, rows, strict=True))
        if lowest:  # lowest similarity first
            assert (np.diff(scores, axis=1) >= -1e-7).all()


def test_short_approximate_results_fall_back_to_exact_search():
    ids, keys = _keys(n=300)
    # nprobe=1 over 16 lists: some lists hold fewer than n keys
    keyed = build_index(keys, ids, "IVF16,Flat", search_params="nprobe=1")
    rows, _ = search_excluding(keyed, keys, keys[:50], ids[:50], 20)
    assert (rows >= 0).all() and rows.shape == (50, 20)
    assert all(len(set(r)) == 20 for r in rows)
    assert all(i not in r for i, r in enumerate(rows))


def test_unknown_index_string_names_the_parameter():
    ids, keys = _keys()
    with pytest.raises(ValueError, match=r"build_index.index.factory='Foo'.*e.g. 'Flat'"):
        build_index(keys, ids, "Foo")
    with pytest.raises(ValueError, match="multiple of the number of subquantizers"):
        build_index(keys, ids, "IVF4,PQ7")


def test_ivf_with_more_lists_than_keys_fails_clearly():
    ids, keys = _keys(n=20)
    with pytest.raises(
        ValueError,
        match=r"corpus of 20 keys.*at least as large as number of clusters \(64\).*fewer IVF lists",
    ):
        build_index(keys, ids, "IVF64,Flat")


def test_bad_search_params_fail_clearly():
    ids, keys = _keys()
    with pytest.raises(ValueError, match="search_params='nprobe=4' does not apply"):
        build_index(keys, ids, "HNSW32", search_params="nprobe=4")


def test_nan_keys_empty_corpus_and_duplicate_ids():
    ids, keys = _keys(n=10)
    keys[3, 0] = np.nan
    with pytest.raises(ValueError, match=r"1 audio vectors contain NaN.*k003"):
        build_index(keys, ids, "Flat", modality="audio")
    with pytest.raises(ValueError, match="corpus is empty"):
        build_index(np.zeros((0, 16), np.float32), [], "Flat", modality="audio")
    ids, keys = _keys(n=10)
    with pytest.raises(ValueError, match="more than once"):
        build_index(keys, ids[:9] + ids[:1], "Flat")


def test_dimension_mismatch_between_queries_and_index():
    ids, keys = _keys(d=16)
    keyed = build_index(keys, ids, "Flat", modality="audio")
    with pytest.raises(ValueError, match="dimension 8 but the audio index has d=16"):
        search_excluding(keyed, keys, np.ones((2, 8), np.float32), ["a", "b"], 3)
    with pytest.raises(ValueError, match="different runs"):
        search_excluding(keyed, keys[:5], np.ones((2, 16), np.float32), ["a", "b"], 3)


def test_n_larger_than_the_corpus_minus_the_query_itself():
    ids, keys = _keys(n=5)
    keyed = build_index(keys, ids, "Flat")
    search_excluding(keyed, keys, keys[:1], ["other"], 5)  # a foreign query may take all 5
    with pytest.raises(ValueError, match=r"n=5 but query 'k000' can retrieve only 4.*lower n"):
        search_excluding(keyed, keys, keys[:1], ["k000"], 5)


def test_training_on_a_seeded_sample():
    ids, keys = _keys(n=300)
    keyed = build_index(keys, ids, "IVF8,Flat", train_size=100, seed=1)
    assert keyed.metadata["trained_on"] == 100 and keyed.ntotal == 300
    assert build_index(keys, ids, "Flat", train_size=100).metadata["trained_on"] == 0
    with pytest.raises(ValueError, match=r"corpus of 300 keys \(a sample of 50\).*train_size"):
        build_index(keys, ids, "IVF64,Flat", train_size=50)

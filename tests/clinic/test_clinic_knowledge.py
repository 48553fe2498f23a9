"""The knowledge base: complete, cited, cross-referenced, and every rule used by the code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from spinedecomp.clinic import knowledge as knowledge_module
from spinedecomp.clinic.knowledge import (
    ContraindicationKind,
    Knowledge,
    RedFlagKind,
    knowledge_text,
    load_knowledge,
    parse_knowledge,
)

SEEDS = {
    "seeds/000_4f6379353aa37af4.txt",
    "seeds/001_deae0fd9ccbd9a89.txt",
    "seeds/003_5fabe3272d7ba8cc.txt",
    "seeds/004_f4b73c78f4f5f1f2.txt",
}
CLINIC_SRC = Path(knowledge_module.__file__).parent


def raw() -> dict[str, Any]:
    data = yaml.safe_load(knowledge_text())
    assert isinstance(data, dict)
    return data


def test_loads_and_is_cached() -> None:
    kb = load_knowledge()
    assert isinstance(kb, Knowledge)
    assert load_knowledge() is kb


def test_every_seed_is_declared_and_cited() -> None:
    kb = load_knowledge()
    seeds = {k for k, s in kb.sources.items() if s.kind == "seed"}
    assert seeds == SEEDS


def test_entry_without_source_is_rejected() -> None:
    data = raw()
    del data["contraindications"][0]["source"]
    with pytest.raises(ValidationError) as exc:
        Knowledge.model_validate(data)
    assert "contraindications.0.source" in str(exc.value).replace("\n", " ").replace(" ", ".")


def test_empty_source_list_is_rejected() -> None:
    data = raw()
    data["side_effects"][0]["source"] = []
    with pytest.raises(ValidationError, match="source"):
        Knowledge.model_validate(data)


def test_unknown_source_is_rejected() -> None:
    data = raw()
    data["red_flags"][0]["source"] = "seeds/999_unknown.txt"
    with pytest.raises(ValidationError, match=r"red_flags\.pain: cites unknown source"):
        Knowledge.model_validate(data)


def test_uncited_seed_is_rejected() -> None:
    data = raw()
    data["sources"]["seeds/005_new.txt"] = {"kind": "seed", "title": "new"}
    with pytest.raises(ValidationError, match="seed sources never cited"):
        Knowledge.model_validate(data)


def test_broken_cross_reference_is_rejected() -> None:
    data = raw()
    data["indications"][0]["confirmed_by"] = ["ct_scan"]
    with pytest.raises(ValidationError, match="unknown confirming tests"):
        Knowledge.model_validate(data)
    data = raw()
    data["diagnostic_tests"][0]["detects"] = ["not_a_contraindication"]
    with pytest.raises(ValidationError, match="unknown detects"):
        Knowledge.model_validate(data)


def test_duplicate_ids_are_rejected() -> None:
    data = raw()
    data["side_effects"].append(dict(data["side_effects"][0]))
    with pytest.raises(ValidationError, match="duplicate ids"):
        Knowledge.model_validate(data)


def test_unknown_field_is_rejected() -> None:
    data = raw()
    data["rules"][0]["sorce"] = "typo"
    with pytest.raises(ValidationError, match="sorce"):
        Knowledge.model_validate(data)


def test_bad_icd_code_is_rejected() -> None:
    data = raw()
    data["indications"][0]["icd10"][0]["code"] = "51.26"
    with pytest.raises(ValidationError, match="code"):
        Knowledge.model_validate(data)


def test_parse_knowledge_round_trip() -> None:
    assert parse_knowledge(knowledge_text()) == load_knowledge()


def test_conservative_care_options() -> None:
    kb = load_knowledge()
    first_line = {c.id for c in kb.conservative_care if c.first_line}
    assert first_line == {
        "rest",
        "ice_heat",
        "otc_medication",
        "home_care_stretching",
        "brace",
        "physical_therapy",
        "acupuncture",
    }


def test_indications_and_codes() -> None:
    kb = load_knowledge()
    ids = {i.id for i in kb.indications}
    assert {
        "disc_herniation",
        "degenerative_disc_disease",
        "radiculopathy",
        "sciatica",
        "spinal_stenosis",
        "posterior_facet_syndrome",
        "nerve_root_injury",
        "recurrent_disc_connective_tissue",
        "peripheral_neuropathy_spinal",
    } <= ids
    codes = {c.code for i in kb.indications for c in i.icd10}
    # The billable codes REFERENCE.md lists.
    assert {"M51.26", "M51.27", "M51.16", "M51.17", "M54.30", "M54.31", "M54.32"} <= codes
    assert {"M48.061", "M48.062", "M54.16", "M54.17", "M54.15"} <= codes
    assert "M48.06" not in codes  # not billable


def test_contraindications_kinds() -> None:
    kb = load_knowledge()
    kinds = {c.id: c.kind for c in kb.contraindications}
    absolute = {
        "pregnancy",
        "severe_osteoporosis",
        "spinal_tumour",
        "spinal_hardware",
        "spinal_fracture",
        "spinal_infection",
        "spinal_instability",
        "myelopathy",
    }
    for cid in absolute:
        assert kinds[cid] is ContraindicationKind.ABSOLUTE, cid
    for cid in ("anticoagulation", "prior_spinal_surgery", "rheumatoid_arthritis", "acute_injury"):
        assert kinds[cid] is ContraindicationKind.RELATIVE, cid
    pregnancy = kb.contraindication("pregnancy")
    assert "male" not in pregnancy.asked_of


def test_tests_side_effects_and_red_flags() -> None:
    kb = load_knowledge()
    assert {t.id for t in kb.diagnostic_tests} == {
        "bone_scan",
        "diskography",
        "emg",
        "ncv",
        "evoked_potentials",
        "x_ray",
        "mri",
    }
    assert {s.id for s in kb.side_effects} == {
        "soreness",
        "stiffness",
        "muscle_spasm",
        "shooting_leg_pain",
        "temporary_pain_increase",
        "headache",
        "fatigue",
        "worsening",
        "persisting_pain",
    }
    contact = {r.id for r in kb.red_flags if r.kind is RedFlagKind.CONTACT_NOW}
    emergency = {r.id for r in kb.red_flags if r.kind is RedFlagKind.EMERGENCY}
    assert contact == {"pain", "tenderness", "swelling", "numbness", "tingling"}
    assert emergency == {"saddle_anaesthesia", "bladder_bowel_change", "progressive_weakness"}


def test_course_lengths_costs_and_evidence() -> None:
    kb = load_knowledge()
    cl = kb.course_lengths
    assert (cl.decompression_overall.min_sessions, cl.decompression_overall.max_sessions) == (5, 30)
    typical = cl.decompression_typical
    assert (typical.min_sessions, typical.max_sessions, typical.min_weeks, typical.max_weeks) == (
        15,
        25,
        5,
        8,
    )
    pt = cl.physical_therapy
    assert (pt.min_sessions, pt.max_sessions, pt.min_weeks, pt.max_weeks) == (8, 16, 4, 12)
    table = {
        p.provider.value: (
            p.per_session_low,
            p.per_session_high,
            p.course_sessions_min,
            p.course_sessions_max,
        )
        for p in kb.costs.providers
    }
    assert table == {
        "chiropractor": (50, 200, 15, 20),
        "physical_therapist": (75, 250, 12, 20),
        "specialised_clinic": (100, 300, 15, 25),
    }
    assert (kb.costs.general_per_session.low, kb.costs.general_per_session.high) == (20, 200)
    assert kb.costs.quoted_course_max == 6000
    assert kb.evidence_figure("immediate_improvement_86").value == 0.86
    assert kb.evidence_figure("sustained_improvement_6mo_368").value == 0.368
    assert kb.evidence_figure("rct_30_vs_30").n == 60
    assert "NASS 2012" in kb.evidence_figure("guideline_2012").source


def test_mcid_values() -> None:
    outcomes = load_knowledge().outcomes
    assert outcomes.nprs.mcid_points == 2
    assert (outcomes.odi.mcid_points, outcomes.odi.mcid_fraction) == (10, 0.30)
    assert (outcomes.ndi.mcid_points, outcomes.ndi.mdc_points) == (7.5, 10.2)
    assert outcomes.ndi.responder_points == 10


def test_every_rule_in_the_code_exists_and_every_rule_is_used() -> None:
    code = "\n".join(p.read_text() for p in CLINIC_SRC.glob("*.py"))
    used = set(re.findall(r'"(R-[A-Z0-9-]+)"', code))
    declared = {r.id for r in load_knowledge().rules}
    assert used - declared == set(), "rules used by the code but missing from knowledge.yaml"
    assert declared - used == set(), "rules declared in knowledge.yaml but never applied"


def test_look_up_of_unknown_id_raises() -> None:
    kb = load_knowledge()
    with pytest.raises(KeyError, match="no rule"):
        kb.rule("R-NOPE")


def test_docs_describe_every_rule() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "clinic.md"
    text = docs.read_text()
    missing = [r.id for r in load_knowledge().rules if f"`{r.id}`" not in text]
    assert missing == []

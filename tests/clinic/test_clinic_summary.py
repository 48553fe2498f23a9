"""Patient-facing summary: what to expect, soreness is common, call now if ..."""

from __future__ import annotations

from collections.abc import Callable

from spinedecomp.clinic.intake import Intake
from spinedecomp.clinic.report import build_report

Make = Callable[..., Intake]


def test_candidate_summary(make_intake: Make) -> None:
    summary = build_report(make_intake()).summary
    text = summary.render_text()
    assert summary.headline.startswith("Non-surgical spinal decompression looks like")
    assert "A visit takes about 20-45 minutes." in text
    assert "It is common to feel sore or stiff" in text
    assert "waist and pelvis" in text
    assert "gentle stretch, not pain" in text
    for flag in ("Tenderness", "Swelling", "New or worse numbness", "New or worse tingling"):
        assert flag in text
    assert "saddle anaesthesia" in text
    assert "is not spinal decompression surgery" in text
    assert "About 25 sessions over 8 weeks" in text
    assert "Cost" in [s.title for s in summary.sections]
    for section in summary.sections:
        assert section.citation, section.title


def test_cervical_summary_mentions_the_neck(make_intake: Make) -> None:
    text = build_report(make_intake(cervical=True)).summary.render_text()
    assert "head and neck" in text


def test_not_candidate_summary_explains_why(make_intake: Make) -> None:
    answers = {c: False for c in make_intake().contraindications} | {"pregnancy": True}
    summary = build_report(make_intake(contraindications=answers)).summary
    assert summary.headline == "Decompression is not the right treatment for you now."
    found = next(s for s in summary.sections if s.title == "What we found")
    assert any("Pregnancy" in line for line in found.lines)
    assert "Your plan" not in [s.title for s in summary.sections]


def test_urgent_summary_has_no_session_or_cost_talk(make_intake: Make) -> None:
    summary = build_report(make_intake(red_flags={"bladder_bowel_change": True})).summary
    section_titles = [s.title for s in summary.sections]
    assert "What to expect in a session" not in section_titles
    assert "Cost" not in section_titles
    assert "Go to emergency care at once if you have" in section_titles

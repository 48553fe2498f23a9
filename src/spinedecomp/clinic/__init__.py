"""Clinic workflow: screening, pathways, course plans, visits, outcomes and cost.

Pure rules and data, no I/O: every clinical list and number comes from the cited
knowledge base ``knowledge.yaml`` (see :mod:`spinedecomp.clinic.knowledge`).
"""

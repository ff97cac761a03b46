"""Mutation testing of edge configurations: how much of a gate suite's power holds on *this* configuration.

Operators (data, in ``operators.yaml``) turn one directive into a fault aimed at
named obligations; :func:`run_mutation` applies each mutant to a live edge,
gates the obligations it should break, reverts, and scores the suite.
"""

from __future__ import annotations

from poetkb.mutation.operators import Mutant, Operator, load_operators, mutants
from poetkb.mutation.report import MutantResult, MutationReport, ObligationScore
from poetkb.mutation.runner import MutationTarget, command_target, demo_target, run_mutation, select

__all__ = ["Mutant", "MutantResult", "MutationReport", "MutationTarget", "ObligationScore", "Operator",
           "command_target", "demo_target", "load_operators", "mutants", "run_mutation", "select"]

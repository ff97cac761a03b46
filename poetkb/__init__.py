"""poetkb: portable obligations, evidence requirements and release gates in an SQLite knowledge graph.

>>> import poetkb
>>> kb = poetkb.open()
>>> kb.obligation("cache.vary.honored").title
'...'

Public names are loaded lazily, so ``import poetkb`` stays fast and loads none
of the heavy libraries (scikit-learn, libcst, networkx) until they are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from poetkb._lazy import lazy_exports
from poetkb._version import __version__

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "open": "poetkb.kb",
    "KnowledgeBase": "poetkb.kb",
    "Catalog": "poetkb.catalog",
    "load_catalog": "poetkb.catalog",
    "check_catalog": "poetkb.catalog",
    "Check": "poetkb.models",
    "Claim": "poetkb.models",
    "Component": "poetkb.models",
    "Directive": "poetkb.models",
    "EvidenceRequirement": "poetkb.models",
    "FailureMode": "poetkb.models",
    "KBMeta": "poetkb.models",
    "KBStats": "poetkb.models",
    "LearnedPattern": "poetkb.models",
    "MappingRule": "poetkb.models",
    "Obligation": "poetkb.models",
    "ObligationMatch": "poetkb.models",
    "Recipe": "poetkb.models",
    "Reference": "poetkb.models",
    "RelatedNode": "poetkb.models",
    "SourceLocation": "poetkb.models",
    "Signal": "poetkb.models",
    "PoetError": "poetkb.errors",
    "CatalogError": "poetkb.errors",
    "CheckFailed": "poetkb.errors",
    "EnvironmentProblem": "poetkb.errors",
    "InputError": "poetkb.errors",
    "Problem": "poetkb.errors",
    "SchemaVersionError": "poetkb.errors",
    "StoreError": "poetkb.errors",
    "TargetUnreachable": "poetkb.errors",
    "UnknownEntity": "poetkb.errors",
    "UnknownObligation": "poetkb.errors",
    "ServiceProfile": "poetkb.load.profile",
    "LoadPlan": "poetkb.load.plan",
    "MetricsSummary": "poetkb.load.metrics",
    "Interpretation": "poetkb.load.interpret",
    "Baseline": "poetkb.load.baselines",
    "Edge": "poetkb.gates.schema",
    "GateReport": "poetkb.gates.schema",
    "GateRun": "poetkb.gates.schema",
    "Selection": "poetkb.gates.schema",
    "GitChange": "poetkb.rank.gitchange",
    "ReviewItem": "poetkb.learn.results",
    "ObligationVerdict": "poetkb.gates.schema",
    "CheckResult": "poetkb.gates.schema",
    "EvidenceManifest": "poetkb.gates.schema",
    "ChangeSummary": "poetkb.rank.change",
    "RankedObligation": "poetkb.rank.explain",
    "Ranking": "poetkb.rank.explain",
    "Why": "poetkb.rank.explain",
    "TestPlan": "poetkb.plans.testplan",
    "Runbook": "poetkb.plans.runbook",
    "DemoState": "poetkb.demo.state",
    "DemoStatus": "poetkb.demo.state",
    "LearnReport": "poetkb.learn.results",
    "LearnSummary": "poetkb.learn.results",
}

__all__ = sorted([*_EXPORTS, "__version__"])


__getattr__, __dir__ = lazy_exports("poetkb", _EXPORTS, globals())


if TYPE_CHECKING:
    from poetkb.catalog import Catalog, check_catalog, load_catalog
    from poetkb.demo.state import DemoState, DemoStatus
    from poetkb.errors import (
        CatalogError,
        CheckFailed,
        EnvironmentProblem,
        InputError,
        PoetError,
        Problem,
        SchemaVersionError,
        StoreError,
        TargetUnreachable,
        UnknownEntity,
        UnknownObligation,
    )
    from poetkb.gates.schema import (
        CheckResult,
        Edge,
        EvidenceManifest,
        GateReport,
        GateRun,
        ObligationVerdict,
        Selection,
    )
    from poetkb.kb import KnowledgeBase, open
    from poetkb.learn.results import LearnReport, LearnSummary, ReviewItem
    from poetkb.load.baselines import Baseline
    from poetkb.load.interpret import Interpretation
    from poetkb.load.metrics import MetricsSummary
    from poetkb.load.plan import LoadPlan
    from poetkb.load.profile import ServiceProfile
    from poetkb.models import (
        Check,
        Claim,
        Component,
        Directive,
        EvidenceRequirement,
        FailureMode,
        KBMeta,
        KBStats,
        LearnedPattern,
        MappingRule,
        Obligation,
        ObligationMatch,
        Recipe,
        Reference,
        RelatedNode,
        Signal,
        SourceLocation,
    )
    from poetkb.plans.runbook import Runbook
    from poetkb.plans.testplan import TestPlan
    from poetkb.rank.change import ChangeSummary
    from poetkb.rank.explain import RankedObligation, Ranking, Why
    from poetkb.rank.gitchange import GitChange

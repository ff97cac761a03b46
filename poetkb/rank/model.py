"""The ranking model derived from a knowledge base: a fitted TF-IDF index and a graph spread table.

Building it is the expensive part of ranking, so it is done once per knowledge
base content, when the knowledge base is built, and kept in the file (see
:mod:`poetkb.rank.model_store`):

- **Text.** :class:`poetkb.text.TfidfIndex` is fitted over the catalog's
  obligations, failure modes and recipes and every learned test pattern, with
  :func:`poetkb.text.analyze` as analyzer. The fitted vocabulary, idf weights
  and document vectors are kept as an inverted index in flat arrays, so a
  query is vectorised and compared in pure Python, with nothing to fit.
- **Graph.** networkx walks the knowledge graph from every failure mode,
  learned pattern, mapping rule and recipe to the obligations that guard,
  exercise or map them (and one ``related_to`` hop further), keeping the
  strongest path to each. A matched failure mode then lends its match to the
  obligations that guard it, with the path as the explanation.

The model is plain data (lists, dicts and typed arrays) so it serialises to
JSON: no pickle, nothing executable is ever read back from a knowledge base file.
"""

from __future__ import annotations

import base64
import gc
import json
import math
import sys
from array import array
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from poetkb.text import TfidfIndex, analyze, analyze_with_surface, weigh
from poetkb.types import NodeId

if TYPE_CHECKING:
    from poetkb.knowledge import Knowledge

#: bump when the model's layout or the analyzer changes, so old caches are ignored
MODEL_VERSION = 6

#: how much of a seed's strength reaches an obligation over each kind of edge
SPREAD = {
    "guards_against": 1.0,  # failure mode -> the obligation guarding it
    "exercised_by": 0.8,  # recipe -> the obligation it exercises
    "related_to": 0.3,  # obligation -> a related obligation
}
#: paths weaker than this are not kept
MIN_SPREAD = 0.2


@dataclass(frozen=True, slots=True)
class ObligationEntry:
    """What ranking keeps of an obligation: enough to score it and say what it is, without the catalog."""

    title: str
    risk: str
    domain: str
    applies_to: list[str]
    related: list[str]


@dataclass(frozen=True, slots=True)
class RuleEntry:
    """What ranking keeps of a mapping rule (not a test-pattern rule): how it matches and what it says."""

    id: str
    kind: str
    terms: list[str]
    regex: str | None
    component: str | None
    weight: float
    why: str

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> RuleEntry:
        """The entry of a rule's stored data (a :class:`~poetkb.models.MappingRule` as a dict)."""
        return cls(id=data["id"], kind=data["kind"], terms=list(data.get("terms") or []), regex=data.get("regex"),
                   component=data.get("component"), weight=float(data.get("weight", 1.0)), why=data.get("why") or "")

@dataclass
class RankModel:
    """Everything ranking needs from a knowledge base, as plain data.

    Graph nodes are interned in ``nodes`` (kind-prefixed ids); documents and
    spread paths refer to them by index. Postings live in two flat arrays
    (document index, weight) sliced per term by ``offsets``, so a model with
    10,000 learned patterns loads in a fraction of a second.
    """

    digest: str
    nodes: list[str] = field(default_factory=list)
    docs: list[int] = field(default_factory=list)  # document index -> node index
    terms: list[str] = field(default_factory=list)
    idf: array[float] = field(default_factory=lambda: array("d"))  # aligned with terms
    offsets: array[int] = field(default_factory=lambda: array("i", [0]))  # term i: post_*[offsets[i]:offsets[i+1]]
    post_docs: array[int] = field(default_factory=lambda: array("i"))
    post_weights: array[float] = field(default_factory=lambda: array("f"))
    surface: dict[str, str] = field(default_factory=dict)
    obligations: dict[str, ObligationEntry] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    spread: dict[int, list[tuple[int, float, list[int]]]] = field(default_factory=dict)  # seed -> reached
    rules: list[RuleEntry] = field(default_factory=list)
    coverage: dict[str, int] = field(default_factory=dict)  # obligation -> learned patterns mapped to it
    _term_index: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _node_index: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.reindex()

    def reindex(self) -> None:
        self._term_index = {t: i for i, t in enumerate(self.terms)}
        self._node_index = {n: i for i, n in enumerate(self.nodes)}

    def node(self, node_id: str) -> int:
        """The index of a node, adding it when new (used while building)."""
        index = self._node_index.get(node_id)
        if index is None:
            index = self._node_index[node_id] = len(self.nodes)
            self.nodes.append(node_id)
        return index

    def doc(self, index: int) -> tuple[str, str]:
        """(kind, id) of a document."""
        kind, _, key = self.nodes[self.docs[index]].partition(":")
        return kind, key

    def idf_of(self, term: str) -> float | None:
        index = self._term_index.get(term)
        return None if index is None else self.idf[index]

    def postings(self, term: str) -> tuple[array[int], array[float]]:
        """The documents containing ``term`` and the term's weight in each."""
        index = self._term_index.get(term)
        if index is None:
            return array("i"), array("f")
        start, end = self.offsets[index], self.offsets[index + 1]
        return self.post_docs[start:end], self.post_weights[start:end]

    def reach(self, node_id: str) -> list[tuple[str, float, list[str]]]:
        """The obligations a node spreads to: (obligation id, strength, path of node ids)."""
        index = self._node_index.get(node_id)
        if index is None:
            return []
        nodes = self.nodes
        return [(nodes[target].partition(":")[2], factor, [nodes[n] for n in path])
                for target, factor, path in self.spread.get(index, [])]

    def to_json(self) -> str:
        data = {
            "version": MODEL_VERSION, "byteorder": sys.byteorder, "digest": self.digest, "nodes": self.nodes,
            "docs": self.docs, "terms": self.terms, "surface": self.surface,
            "obligations": {key: asdict(entry) for key, entry in self.obligations.items()},
            "labels": self.labels, "rules": [asdict(rule) for rule in self.rules], "coverage": self.coverage,
            "spread": {str(k): v for k, v in self.spread.items()},
            "arrays": {name: [getattr(self, name).typecode, getattr(self, name).itemsize,
                              base64.b64encode(getattr(self, name).tobytes()).decode("ascii")]
                       for name in _ARRAYS},
        }
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RankModel | None:
        """Rebuild a model; None when the data is from another model version, machine layout, or unreadable."""
        collecting = gc.isenabled()
        gc.disable()  # tens of thousands of new lists and strings: collecting them midway only costs time
        try:
            return cls._from_json(text)
        finally:
            if collecting:
                gc.enable()

    @classmethod
    def _from_json(cls, text: str) -> RankModel | None:
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("version") != MODEL_VERSION:
                return None
            if data.get("byteorder") != sys.byteorder:
                return None
            arrays = {}
            for name in _ARRAYS:
                typecode, itemsize, encoded = data["arrays"][name]
                values = array(typecode)
                if values.itemsize != itemsize:
                    return None
                values.frombytes(base64.b64decode(encoded))
                arrays[name] = values
            spread = {int(k): [(t, f, p) for t, f, p in v] for k, v in data["spread"].items()}
            return cls(digest=data["digest"], nodes=data["nodes"], docs=data["docs"], terms=data["terms"],
                       surface=data["surface"],
                       obligations={k: ObligationEntry(**v) for k, v in data["obligations"].items()},
                       labels=data["labels"], rules=[RuleEntry(**r) for r in data["rules"]],
                       coverage=data["coverage"], spread=spread, **arrays)
        except (ValueError, KeyError, TypeError):
            return None

    def vectorize(self, text: str) -> dict[str, float]:
        """The TF-IDF vector of ``text`` (sublinear tf, l2-normalised), as the fitted vectorizer computes it."""
        return weigh(Counter(analyze(text)), self.idf_of)


_ARRAYS = ("idf", "offsets", "post_docs", "post_weights")


def _join(*parts: Any) -> str:
    out: list[str] = []
    for part in parts:
        if isinstance(part, list | tuple):
            out.extend(str(p) for p in part if p)
        elif part:
            out.append(str(part))
    return " \n ".join(out)


def obligation_text(data: dict[str, Any]) -> str:
    """The words an obligation is found by: id, title, statement, rationale, keywords, tags, criteria."""
    return _join(data["id"].replace(".", " "), data["title"], data["title"], data["statement"], data["rationale"],
                 data.get("keywords", []), data.get("keywords", []), data.get("tags", []),
                 data.get("pass_criteria", []))


def failure_mode_text(data: dict[str, Any]) -> str:
    return _join(data["title"], data["title"], data["description"], data.get("triggers", []),
                 data.get("symptoms", []), data.get("keywords", []), data.get("keywords", []))


def recipe_text(data: dict[str, Any]) -> str:
    directives = [f"{d['name']} {d.get('note', '')}" for d in data.get("directives", [])]
    return _join(data["title"], data.get("description", ""), data.get("steps", []), directives)


def pattern_text(data: dict[str, Any]) -> str:
    file_stem = data.get("file", "").rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return _join(data.get("test") or "", data.get("summary", ""), data.get("terms", []), file_stem)


def _rows(kb: Knowledge, table: Literal["obligations", "failure_modes", "recipes", "rules", "patterns"]
          ) -> list[dict[str, Any]]:
    return kb.item_data(table)


def build_model(kb: Knowledge, digest: str) -> RankModel:
    """Fit the text index and compute the graph spread table for ``kb`` (seconds on 10,000 patterns)."""
    model = RankModel(digest=digest)
    texts: list[str] = []
    obligations = _rows(kb, "obligations")
    for data in obligations:
        model.docs.append(model.node(NodeId.of("obligation", data['id'])))
        texts.append(obligation_text(data))
        model.obligations[data["id"]] = ObligationEntry(
            title=data["title"], risk=data["risk"], domain=data["domain"],
            applies_to=list(data.get("applies_to", [])), related=list(data.get("related", [])))
    for data in _rows(kb, "failure_modes"):
        model.docs.append(model.node(NodeId.of("failure_mode", data['id'])))
        texts.append(failure_mode_text(data))
        model.labels[NodeId.of("failure_mode", data['id'])] = data["title"]
    for data in _rows(kb, "recipes"):
        model.docs.append(model.node(NodeId.of("recipe", data['id'])))
        texts.append(recipe_text(data))
        model.labels[NodeId.of("recipe", data['id'])] = data["title"]
    for data in _rows(kb, "patterns"):
        model.docs.append(model.node(NodeId.of("pattern", data['id'])))
        texts.append(pattern_text(data))
    for data in _rows(kb, "rules"):
        if data["kind"] != "test_pattern":
            model.rules.append(RuleEntry.from_data(data))
            model.labels[NodeId.of("rule", data['id'])] = data.get("why") or data["id"]
    analyzed = [analyze_with_surface(text) for text in texts]
    index = TfidfIndex.fit([term for term, _ in pairs] for pairs in analyzed)
    for term, idf, posting in zip(index.terms, index.idf, index.postings(), strict=True):
        model.terms.append(term)
        model.idf.append(idf)
        model.post_docs.extend(doc for doc, _ in posting)
        model.post_weights.extend(weight for _, weight in posting)
        model.offsets.append(len(model.post_docs))
    if model.terms:  # no document with a single word: rank by rules alone
        model.surface = _surface_forms(analyzed, set(model.terms))
    model.coverage.update(kb.learned_counts())
    for seed, reached in spread_table(kb).items():
        model.spread[model.node(seed)] = [
            (model.node(NodeId.of("obligation", target)), factor, [model.node(n) for n in path])
            for target, factor, path in reached
        ]
    model.reindex()
    return model


def _surface_forms(analyzed: list[list[tuple[str, str]]], vocabulary: set[str]) -> dict[str, str]:
    """For each term, the way it is most often written in the catalog (for explanations)."""
    seen: dict[str, Counter[str]] = defaultdict(Counter)
    for pairs in analyzed:
        for term, surface in pairs:
            if term in vocabulary:
                seen[term][surface.lower() if "_" not in term else surface] += 1
    out = {}
    for term, forms in seen.items():
        best = sorted(forms.items(), key=lambda kv: (-kv[1], len(kv[0]), kv[0]))[0][0]
        if best != term:
            out[term] = best
    return out


def spread_table(kb: Knowledge) -> dict[str, list[tuple[str, float, list[str]]]]:
    """From each failure mode, pattern, rule and recipe node: the obligations it reaches, how strongly, and how.

    Uses networkx on a directed view of the knowledge graph whose edges point
    the way evidence travels (failure mode -> guarding obligation, rule ->
    mapped obligation or failure mode, pattern -> obligation, recipe ->
    exercised obligation, obligation <-> related obligation). An edge of
    strength s costs -log(s), so the cheapest path is the strongest product.
    """
    import networkx as nx

    graph = kb.graph()
    view = nx.DiGraph()
    for src, dst, data in graph.edges(data=True):
        kind = data.get("kind")
        weight = float(data.get("weight") or 1.0)
        if kind == "guards_against":
            links = [(dst, src, SPREAD["guards_against"])]
        elif kind == "exercised_by":
            links = [(dst, src, SPREAD["exercised_by"])]
        elif kind == "related_to":
            links = [(src, dst, SPREAD["related_to"]), (dst, src, SPREAD["related_to"])]
        elif kind in ("mapped_by", "learned_from"):
            links = [(src, dst, min(max(weight, 1e-3), 1.0))]
        else:
            continue
        for a, b, strength in links:
            cost = -math.log(strength)
            if not view.has_edge(a, b) or view[a][b]["cost"] > cost:
                view.add_edge(a, b, cost=cost)
    cutoff = -math.log(MIN_SPREAD)
    table: dict[str, list[tuple[str, float, list[str]]]] = {}
    for node in sorted(view.nodes):
        kind = NodeId(node).kind
        if kind not in ("failure_mode", "pattern", "rule", "recipe"):
            continue
        costs, paths = nx.single_source_dijkstra(view, node, cutoff=cutoff + 1e-9, weight="cost")
        reached = []
        for target in sorted(costs):
            if target.startswith("obligation:"):
                reached.append((NodeId(target).key, round(math.exp(-costs[target]), 6), paths[target]))
        if reached:
            table[node] = reached
    return table

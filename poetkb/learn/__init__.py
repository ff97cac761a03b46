"""Learn from legacy test suites: which tests exercise which obligations, and which nothing tests.

The pipeline is static: test files are read and parsed, never imported or run.

- :mod:`~poetkb.learn.discover` finds test files and skips unsafe ones with a reason;
- :mod:`~poetkb.learn.extract` parses one file (``ast`` as a guard and for line
  ranges, libcst for the features) into test units;
- :mod:`~poetkb.learn.features` turns identifiers and text into the words the
  mapping compares;
- :mod:`~poetkb.learn.mapping` maps units to obligations with rules and TF-IDF
  similarity, keeping the reasons;
- :mod:`~poetkb.learn.memo` and :mod:`~poetkb.learn.review` keep state in the
  knowledge base (the mining memo and review decisions);
- :mod:`~poetkb.learn.runner` runs it all over processes and writes the result
  atomically; :mod:`~poetkb.learn.results` holds its public result models;
- :mod:`~poetkb.learn.training` trains the learned combiner's model from
  labelled suites (``poet learn train-model``).

Nothing heavy is imported here: libcst and scikit-learn load inside the functions that use them.
"""

from __future__ import annotations

"""visrec: do better ImageNet models give better image recommendations?

The package of the study notebooks, in layers (each imports only its own layer or lower ones):

- ``core``: the artefact store, the output folder's layout, logging, skipped parts, names, backends;
- ``catalogue``: layouts and readers, the prepared catalogue, splits and evaluation protocols;
- ``features``: the backbone registry, offline weights, extraction and its runtimes, embedding sets;
- ``evaluation``: recommenders and baselines, metrics, statistics, experiments (never imports features);
- ``tuning``: fine-tuning strategies (registry), BPR projection, stage fine-tuning;
- ``reports``: the transfer analysis, figures, galleries, the HTML index;
- ``pipeline``: the stages (one function per notebook), notebook execution, the runner; the CLI is
  ``python -m visrec_utils``.

Heavy libraries (torch, timm, numba) are imported where they are used, so ``import visrec_utils``
and the light modules (core, catalogue, evaluation statistics, the pipeline's runner) are fast.
"""

__version__ = "0.1.0"

"""visrec: do better ImageNet models give better image recommendations?

Helper package of the study notebooks, one module per concern: ``data`` (catalogue),
``splits`` (protocols), ``readers`` (layouts, validation), ``demo``, ``images`` (robust
decoding), ``models`` (registry), ``controls``, ``extract``, ``runtime`` and ``embeddings`` (pooled features,
runtimes, cache), ``finetune`` and ``stage_tuning``, ``recommenders``, ``metrics``, ``stats``,
``experiment``, ``analysis``, ``plots`` and ``gallery`` (figures), ``scaleout`` (Ray),
``retrieval`` (FAISS), ``report`` (index page) and ``runner`` (papermill).
Heavy libraries (torch, timm) are imported inside functions, so ``import visrec_utils`` is fast.
"""

__version__ = "0.1.0"

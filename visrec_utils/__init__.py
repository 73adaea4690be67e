"""visrec: do better ImageNet models give better image recommendations?

Helper package of the study notebooks, one module per concern: ``data`` (catalogue, split),
``readers`` (layouts, validation), ``demo``, ``images`` (robust decoding), ``models`` (registry),
``extract`` and ``embeddings`` (pooled features, cache), ``finetune``, ``recommenders``,
``metrics``, ``stats``, ``experiment``, ``analysis``, ``plots`` and ``runner`` (papermill).
Heavy libraries (torch, timm) are imported inside functions, so ``import visrec_utils`` is fast.
"""

__version__ = "0.1.0"

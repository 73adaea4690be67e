"""One cheap check before notebook 01: can this study compute anything at all?

Parts that cannot run on a given input are skipped inside the notebooks, each with one sentence
(:class:`visrec_utils.core.skips.PartSkipped`). Some inputs leave nothing to compute: no model and no
embeddings shipped with the catalogue, no recommender and no baseline, or a catalogue (or slice)
of fewer than 2 items. :func:`check_study` finds those in about a second (it reads and slices the
catalogue and builds the main split; it runs no model) and stops the study with one line saying
what is missing and what to do. A main protocol without any test user is a warning: the data,
embeddings and maps are still made, and the evaluation parts are skipped with their sentences.
"""
from __future__ import annotations

import ast

#: The notebook that declares each parameter :func:`check_study` reads (its default comes from there).
_DECLARED_IN = {"data_dir": "01_data_prep", "out_dir": "01_data_prep", "max_users": "01_data_prep",
                "max_items": "01_data_prep", "seed": "01_data_prep", "reader_options": "01_data_prep",
                "models": "02_embedding_extraction", "protocol": "04_recommendation_eval",
                "availability": "04_recommendation_eval", "one_of_a_kind": "04_recommendation_eval",
                "temporal_cut": "04_recommendation_eval", "recommenders": "04_recommendation_eval",
                "baselines": "04_recommendation_eval"}


class StudyInfeasible(ValueError):
    """Nothing at all could be computed with these parameters; the message says what to change."""


def _with_defaults(params: dict) -> dict:
    """``params`` completed with the notebooks' defaults for the names :func:`check_study` reads."""
    from .execution import notebook_parameters

    declared = {nb: notebook_parameters(nb) for nb in sorted(set(_DECLARED_IN.values()))}
    out = {}
    for name, nb in _DECLARED_IN.items():
        if name in params:
            out[name] = params[name]
        else:
            out[name] = ast.literal_eval(declared[nb][name]["default"])
    return out


def check_study(params: dict) -> list[str]:
    """Stop a study that could compute nothing, before notebook 01 runs; warn of one that can
    compute its data, embeddings and maps but not evaluate recommendations.

    Reads the catalogue (the full H&M sample: under a second), takes the seeded slice and builds
    the main protocol's split exactly as notebooks 01 and 04 do; runs no model.

    Args:
        params: the study's parameters as :func:`visrec_utils.pipeline.runner.run_study` gets them
            (``-p`` values included); names not given take the notebooks' defaults.

    Returns:
        warnings, one line each: the main protocol has no test user (the study still prepares the
        data, embeds the images and draws what it can; the evaluation parts are skipped, each
        with its sentence).

    Raises:
        StudyInfeasible: (a ``ValueError``) with one line naming what is missing and what to do:
            ``models`` is empty and the catalogue ships no embeddings; ``recommenders`` and
            ``baselines`` are both empty; the catalogue or slice has fewer than 2 items.
        DataError: the catalogue cannot be read (as notebook 01 would say).
    """
    from ..catalogue import data, layouts, protocols

    p = _with_defaults(params)
    if not len(p["recommenders"]) and not len(p["baselines"]):
        raise StudyInfeasible("recommenders and baselines are both empty: nothing would be evaluated; keep at least "
                              "one of them (e.g. -p baselines '[random]')")
    cat = layouts.open_catalogue(p["data_dir"], p["out_dir"], **(p["reader_options"] or {}))
    if not len(p["models"]) and not cat.precomputed:
        raise StudyInfeasible("models is empty and the catalogue ships no embeddings: there is no model to embed "
                              "the images with; name at least one (e.g. --models offline)")
    sliced = p["max_users"] is not None or p["max_items"] is not None
    cat = data.slice_catalogue(cat, p["max_users"], p["max_items"], p["seed"])
    what = f"the catalogue slice (max_users={p['max_users']}, max_items={p['max_items']})" if sliced else "the catalogue"
    if cat.n_items < 2:
        raise StudyInfeasible(f"{what} has {cat.n_items} item(s): a recommendation ranks at least 2; "
                              "raise --max-items (or leave it out)")
    protocol = p["protocol"]
    protocols.get_protocol(protocol)  # an unknown name is its own error, not "no test user"
    kwargs = protocols.study_params(protocol, availability=p["availability"], one_of_a_kind=p["one_of_a_kind"],
                                 seed=p["seed"], cut=p["temporal_cut"])
    try:
        split = protocols.make_split(cat, protocol, **kwargs)
        described = split.describe() if split.n_users == 0 else ""
    except ValueError as e:  # e.g. a temporal cut with nobody on both sides
        split, described = None, str(e)
    if split is None or split.n_users == 0:
        return [f"{what} has no test user under the main protocol {protocol} ({described}): the study prepares the "
                "data and embeds the images, and skips the evaluation parts; for results use more users or items "
                "(--max-users, --max-items) or another protocol (-p protocol)"]
    return []

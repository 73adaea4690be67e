"""Why an item was recommended (issue 19, item 3): the explanation table against a hand computation,
the explore stage on the demo catalogue, the ipywidgets explorer, and notebook 06 executed with its widgets."""
import nbformat
import numpy as np
import pandas as pd
import pytest

from demo_study import MODELS, demo_study
from visrec_utils.catalogue.splits import Split
from visrec_utils.reports import explorer

C = 1 / np.sqrt(2)
COS_D0 = 2 / np.sqrt(4 + 0.16)  # item d = (2, 0.4) against a = (1, 0)
COS_D1 = 0.4 / np.sqrt(4 + 0.16)  # ... against b = (0, 1)


def _hand_split():
    """Five items a..e at easy angles; user u0 bought a, b before and d at the test point; u1 bought e, then b."""
    inter = pd.DataFrame(columns=["user_id", "item_idx", "timestamp"])
    split = Split(users=np.array(["u0", "u1"], dtype=object), profiles=[np.array([0, 1]), np.array([4])],
                  truth=[np.array([3]), np.array([1])], test_day=np.array(["2020-01-02"] * 2, dtype="datetime64[ns]"),
                  train=inter, n_items=5, interactions=inter)
    emb = np.array([[1, 0], [0, 1], [1, 1], [2, 0.4], [-1, 0]], dtype=np.float32)  # not unit length: normalised
    return split, emb


def test_visrank_max_explanation_matches_a_hand_computation():
    split, emb = _hand_split()
    t = explorer.explain(split, emb, [0, 1], "visrank_max", k=2, item_ids=list("abcde"), model="m", strategy="frozen")
    assert list(t.columns) == explorer.EXPLANATION_COLUMNS
    # u0: candidates c, d, e (a, b are the profile). max cosines: d 0.981 (to a), c 0.707 (a and b tie: a, first)
    # u1: candidates a..d; cosines to e: b 0, c -0.707, d -0.981, a -1
    assert t[["point", "user", "rank", "item_id", "bought", "closest_profile_item", "profile_size"]].values.tolist() == [
        [0, "u0", 1, "d", True, "a", 2], [0, "u0", 2, "c", False, "a", 2],
        [1, "u1", 1, "b", True, "e", 1], [1, "u1", 2, "c", False, "e", 1]]
    assert t["similarity"].tolist() == pytest.approx([COS_D0, C, 0.0, -C], abs=1e-6)
    assert (t["score"] == t["similarity"]).all()  # VisRank-max: the score is the closest item's cosine, exactly
    assert set(t["model"]) == {"m"} and set(t["recommender"]) == {"visrank_max"}


def test_visrank_mean_explanation_keeps_the_closest_item_and_its_own_score():
    split, emb = _hand_split()
    t = explorer.explain(split, emb, [0], "visrank_mean", k=3, item_ids=list("abcde"))
    # means over a, b: c 0.707, d (0.981 + 0.196) / 2 = 0.588, e (-1 + 0) / 2 = -0.5
    assert t["item_id"].tolist() == ["c", "d", "e"]
    assert t["score"].tolist() == pytest.approx([C, (COS_D0 + COS_D1) / 2, -0.5], abs=1e-6)
    assert t["closest_profile_item"].tolist() == ["a", "a", "b"]
    assert t["similarity"].tolist() == pytest.approx([C, COS_D0, 0.0], abs=1e-6)


def test_top_k_stops_at_the_candidates_and_bad_input_is_named():
    split, emb = _hand_split()
    items, scores = explorer.top_k(split, emb, [0], "visrank_max", k=5)  # 3 candidates
    assert items.tolist() == [[3, 2, 4, -1, -1]] and np.isinf(scores[0, 3:]).all()
    assert len(explorer.explain(split, emb, [0], k=5)) == 3
    with pytest.raises(ValueError, match=r"^recommender 'itemknn' is not a VisRank variant: the explanation is the "
                                         r"profile item closest to each recommendation; choose visrank_max"):
        explorer.explain(split, emb, [0], "itemknn")
    with pytest.raises(ValueError, match=r"^k=0: ask for at least 1 recommendation$"):
        explorer.top_k(split, emb, [0], k=0)
    with pytest.raises(ValueError, match=r"^test points \[2\] are not all in the split's 0..1$"):
        explorer.top_k(split, emb, [2])
    with pytest.raises(ValueError, match=r"^4 item ids for a split of 5 items$"):
        explorer.explain(split, emb, [0], item_ids=list("abcd"))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return demo_study(tmp_path_factory.mktemp("explorer_study"))


def test_explore_stage_explains_sample_users_with_the_study_split(study):
    from visrec_utils.catalogue import data, protocols
    from visrec_utils.core.linalg import l2_normalize
    from visrec_utils.features.embedding_sets import load_embedding_sets
    from visrec_utils.pipeline import stages

    result = stages.explore(study, explorer_users=2, explorer_k=5)
    t = result.explanations
    assert len(t) == 2 * len(MODELS) * 5 and set(t["model"]) == set(MODELS) and set(t["strategy"]) == {"frozen"}
    assert pd.read_csv(study / "results" / "explanations.csv", dtype={"item_id": str}).shape == t.shape
    assert (study / "figures" / "explanations.png").stat().st_size > 5000
    # every row by brute force: the split notebook 04 builds, cosines of unit vectors, profile items excluded
    cat = data.load_study_catalogue(study)
    split = protocols.make_split(cat, "leave_last_basket_out", **protocols.study_params(
        "leave_last_basket_out", availability="auto", one_of_a_kind=False, seed=0, cut=0.8))
    ids = cat.items["item_id"].astype(str).tolist()
    for (model, _), emb in load_embedding_sets(study).items():
        unit = l2_normalize(emb).astype(np.float64)
        for point, rows in t[t["model"] == model].groupby("point"):
            profile = split.profiles[point]
            best = (unit @ unit[profile].T).max(axis=1)
            best[~split.candidate_mask(point)] = -np.inf
            assert rows["item_id"].tolist() == [ids[i] for i in np.argsort(-best, kind="stable")[:5]]
            assert rows["similarity"].to_numpy() == pytest.approx(np.sort(best)[::-1][:5], abs=1e-5)
            assert set(rows["closest_profile_item"]) <= {ids[i] for i in profile}
            assert rows["bought"].tolist() == [ids.index(i) in set(split.truth[point]) for i in rows["item_id"]]
    # the explorer offers every set and every test user
    users = result.explorer.users()
    assert len(users) == split.n_users and list(result.explorer.sets) == [(m, "frozen") for m in sorted(MODELS)]


def test_the_widget_redraws_for_the_chosen_user_set_and_recommender(study):
    pytest.importorskip("ipywidgets")
    from visrec_utils.pipeline import stages
    from visrec_utils.reports.explorer_widget import explorer_widget

    ex = stages.explore(study, explorer_users=0).explorer
    box = explorer_widget(ex, k=4)
    c = box.controls
    assert len(box.explain_table) == 4 and box.explain_table["point"].unique().tolist() == [0]
    c["user"].value = 7
    c["embeddings"].value = 1
    c["recommender"].value = "visrank_mean"
    c["k"].value = 6
    t = box.explain_table
    assert t["point"].unique().tolist() == [7] and t["recommender"].unique().tolist() == ["visrank_mean"]
    assert len(t) == 6 and t["model"].unique().tolist() == [list(ex.sets)[1][0]]
    assert t.equals(ex.explain(7, list(ex.sets)[1], "visrank_mean", 6))
    page = box.children[-1].value
    assert page.count("data:image/jpeg;base64,") >= 6 + 6 and page.count("closest in history") == 6
    assert f"Test user {ex.split.users[7]}: history" in page


def test_notebook_06_runs_with_its_widgets(study):
    """Notebook 06 under papermill (as make study and JupyterLab run it): no error, the explorer
    widget constructed and displayed, the explanations in the report."""
    pytest.importorskip("ipywidgets")
    from visrec_utils.pipeline import execution, runner

    assert runner.NOTEBOOKS[-1] == "06_explorer"
    execution.run_notebook("06_explorer", {"out_dir": str(study), "explorer_users": 2, "explorer_k": 4}, study)
    nb = nbformat.read(str(study / "reports" / "06_explorer.ipynb"), 4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    widget = [o for o in outputs if execution.WIDGET_MIME in o.get("data", {})]
    assert len(widget) == 1 and widget[0]["data"]["text/plain"].startswith("VBox(children=(HBox(children=(Dropdown(")
    assert widget[0]["data"][execution.WIDGET_MIME]["model_id"]
    t = pd.read_csv(study / "results" / "explanations.csv")
    assert len(t) == 2 * len(MODELS) * 4 and (t["score"] == t["similarity"]).all()
    shared = (study / "reports" / "06_explorer.html").read_text()
    assert "Why was it recommended?" in shared and "data:image/png;base64" in shared
    # the page without a kernel says where the controls work instead of printing the widget's repr
    assert execution.CONTROLS_NOTE in shared and "VBox(children" not in shared and "progress bar" not in shared

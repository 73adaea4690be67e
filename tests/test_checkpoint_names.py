"""A local checkpoint named by its path (docs/models.md: ``arch=/path/to/weights.pth``) through notebooks 01-02."""
import numpy as np
import pandas as pd
import pytest

from visrec_utils.catalogue import data
from visrec_utils.features import embedding_sets, models
from visrec_utils.pipeline import runner
from visrec_utils.core.naming import safe_name


@pytest.mark.slow
def test_local_checkpoint_with_path_in_its_name_runs_through_notebooks_01_02(tmp_path, hm_dir, imagenet_dir,
                                                                             _isolated_cache):
    import torch

    registry = models.load_model("tf_efficientnet_lite0")
    ckpt = tmp_path / "my weights" / "w: v1.pth"  # a space, a colon and a folder in the model's name
    ckpt.parent.mkdir()
    torch.save(registry.model.state_dict(), ckpt)
    name = f"tf_efficientnet_lite0={ckpt}"
    out = tmp_path / "study"
    runner.run_study({"models": [name, "tf_efficientnet_lite0"], "max_users": 20, "max_items": 40,
                      "imagenet_limit": 50, "imagenet_dir": str(imagenet_dir), "data_dir": str(hm_dir),
                      "umap_points": 0}, out, notebooks=runner.NOTEBOOKS[:2])

    table = pd.read_csv(out / "results" / "models.csv").set_index("model")
    assert list(table.index) == [name, "tf_efficientnet_lite0"]  # the name as given, path and all
    assert (table["status"] == "ok").all() and (table["n_imagenet"] == 50).all()
    assert table.loc[name, "weights_sha256"] == registry.weights_sha256
    # the same weights on the same 50 images: the same measured top-1 (computed twice, once per name)
    assert table.loc[name, "measured_top1"] == table.loc["tf_efficientnet_lite0", "measured_top1"]
    assert 40 <= table.loc[name, "measured_top1"] <= 100

    sets = embedding_sets.load_embedding_sets(out)
    assert set(sets) == {(name, "frozen"), ("tf_efficientnet_lite0", "frozen")}
    study_ids = data.load_study_catalogue(out).items["item_id"].tolist()  # without unreadable images, if any
    n_items = len(study_ids)
    assert sets[(name, "frozen")].shape == (n_items, 1280) and np.isfinite(sets[(name, "frozen")]).all()
    np.testing.assert_allclose(sets[(name, "frozen")], sets[("tf_efficientnet_lite0", "frozen")], atol=1e-5)
    # every file sits directly in its folder under a safe name; the path in the name made no folders
    files = sorted(p.name for p in (out / "embeddings").iterdir())
    rows = embedding_sets.read_manifest(out)
    assert rows["items"].nunique() == 1  # both sets name the same items: one item-id list
    assert files == sorted([f"{stem}__frozen.{ext}" for stem in ("tf_efficientnet_lite0", safe_name(name))
                            for ext in ("npy", "json")] + [rows["items"].iloc[0]])
    assert embedding_sets.load_item_ids(out, rows.iloc[0]) == study_ids
    for sub in ("embeddings", "top1", "openvino"):
        for p in (_isolated_cache / sub).iterdir() if (_isolated_cache / sub).is_dir() else []:
            assert p.is_file() and "=" not in p.name and " " not in p.name, p
    assert any(p.name.startswith(safe_name(name)) for p in (_isolated_cache / "top1").iterdir())
    html = (out / "reports" / "02_embedding_extraction.html").read_text()
    assert "w: v1.pth" in html

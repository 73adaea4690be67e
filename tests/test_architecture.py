"""The package's layering (issue 15): no import circle, no import from a lower layer to a higher
one, no private name imported across modules, light modules without torch or numba."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _architecture():
    spec = importlib.util.spec_from_file_location("architecture", ROOT / "benchmarks" / "architecture.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_import_graph_is_layered_without_circles_or_private_names():
    arch = _architecture()
    found = arch.analyse(arch.read_tree(None))
    assert found["circles"] == []
    assert found["upward"] == []
    assert found["private"] == []
    layers = {arch.layer(m) for m in found["lines"]}
    assert layers == {"core", "catalogue", "features", "evaluation", "tuning", "reports", "pipeline", "cli"}
    # evaluation reads embeddings as arrays and never imports extraction
    assert not [t for m, ts in found["graph"].items() if m.startswith("evaluation.") for t in ts
                if t.startswith(("features.", "tuning."))]


def test_the_checker_finds_a_circle_and_an_upward_import():
    arch = _architecture()
    tree = {"visrec_utils/core/a.py": "from ..pipeline import b\n", "visrec_utils/pipeline/b.py": "from ..core.a import _x\n"}
    found = arch.analyse(tree)
    assert found["circles"] == [["core.a", "pipeline.b"]]
    assert found["upward"] == ["core.a (core) -> pipeline.b (pipeline)"]
    assert found["private"] == ["pipeline.b <- core.a._x"]


@pytest.mark.parametrize("module", ["visrec_utils.core.store", "visrec_utils.core.layout", "visrec_utils.catalogue.layouts",
                                    "visrec_utils.catalogue.protocols", "visrec_utils.evaluation.stats",
                                    "visrec_utils.evaluation.experiment", "visrec_utils.pipeline.runner",
                                    "visrec_utils.pipeline.stages"])
def test_light_modules_import_neither_torch_nor_numba(module):
    code = f"import sys, {module}; print(sorted({{'torch', 'numba'}} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"

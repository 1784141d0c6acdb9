import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "readme_quickstart.py"


def _script():
    spec = importlib.util.spec_from_file_location("readme_quickstart", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_block_is_replaced_from_the_run_and_the_rest_kept(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "quickstart.json").write_text(json.dumps({"wall_seconds": 600}))
    (run / "quickstart.md").write_text(
        "| model |\n|---|\n\n## Does distillation pay?\n\n### Against\n"
    )
    readme = tmp_path / "README.md"
    readme.write_text(
        "intro\n<!-- quickstart:begin -->\nold numbers\n<!-- quickstart:end -->\ntail\n"
    )
    monkeypatch.setattr("sys.argv", ["x", str(run), "--readme", str(readme)])
    _script().main()
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("tail\n")
    assert "old numbers" not in text and "10.0 min" in text
    assert "### Does distillation pay?" in text and "#### Against" in text


def test_a_readme_without_markers_is_refused(tmp_path, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text("no block here\n")
    monkeypatch.setattr("sys.argv", ["x", str(tmp_path), "--readme", str(readme)])
    with pytest.raises(SystemExit, match="no <!-- quickstart:begin -->"):
        _script().main()

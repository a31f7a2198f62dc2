"""The README's Python examples run as printed (on a tenth of the data, one epoch)."""
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run(tmp_path, monkeypatch):
    if not README.is_file():  # the wheel's test run copies tests/ without the README
        pytest.skip(f"no README.md beside {README.parent / 'tests'}")
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 2, "the README lost its examples"
    source = "\n".join(blocks).replace("6000", "600").replace("epochs=5", "epochs=1")
    monkeypatch.chdir(tmp_path)  # the examples write model.safetensors
    namespace = {}
    exec(compile(source, str(README), "exec"), namespace)
    assert (tmp_path / "model.safetensors").is_file()
    assert namespace["opt"].steps > 0  # the optimizer state came back from the file

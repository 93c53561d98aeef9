"""The README's Python examples run, in order, in a fresh folder, as one script."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_examples() -> str:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as handle:
        return "\n".join(re.findall(r"```python\n(.*?)```", handle.read(), flags=re.DOTALL))


def test_readme_examples_run(tmp_path):
    script = tmp_path / "readme_examples.py"
    script.write_text(readme_examples())
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert (tmp_path / "data" / "news" / "dataset_dict.json").exists()

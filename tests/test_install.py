"""An install without the repository (``pip install .``, not editable): the sample photos come with the
package, and a command with no run at hand says where the shipped one is."""

import json
import os
import shutil
import subprocess
import sys

from conftest import REPO

# Run in the installed copy's interpreter: the page's samples, and predict with and without --model.
CHECKS = r"""
import json, sys
from click.testing import CliRunner
import fruitkeras
from fruitkeras.cli import main
from fruitkeras.page_service import SAMPLES_DIR
runner = CliRunner()
photo = str(sorted(SAMPLES_DIR.glob("*.jpg"))[0])
without = runner.invoke(main, ["predict", photo])
given = runner.invoke(main, ["predict", photo, "--model", sys.argv[1], "--format", "json"])
print(json.dumps({"package": fruitkeras.__file__, "samples": str(SAMPLES_DIR),
                  "photos": len(list(SAMPLES_DIR.glob("*.jpg"))), "without": [without.exit_code, without.output],
                  "given": [given.exit_code, given.stdout]}))
"""


def test_an_installed_copy_has_the_samples_and_points_to_the_shipped_run(tmp_path):
    source = tmp_path / "source"
    # The tracked files alone (no runs/, no build leftovers): what a clean checkout hands to pip.
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in tracked.decode().split("\0"):
        if name and not name.startswith(("runs/", "docs/", "benchmarks/", "tests/")) and (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    target = tmp_path / "installed"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"  # a folder with no runs/
    elsewhere.mkdir()
    environment = dict(os.environ, PYTHONPATH=str(target), PYTHONSAFEPATH="1")
    shipped = REPO / "runs" / "fruits77-vgg_small"
    result = subprocess.run([sys.executable, "-c", CHECKS, str(shipped)], cwd=elsewhere, env=environment,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["package"].startswith(str(target)), found["package"]  # the installed copy, not the checkout
    assert found["samples"].startswith(str(target)) and found["photos"] == len(list((REPO / "samples").glob("*.jpg")))
    code, output = found["without"]
    assert code == 1 and "runs/fruits77-vgg_small" in output and "Traceback" not in output, output
    assert str(elsewhere / "runs") in output  # it says where it looked
    code, output = found["given"]
    assert code == 0, output
    [answer] = json.loads(output)
    assert answer["verdict"] and answer["top"]

"""Committed files must not name the machine they were made on."""
import os
import re
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Absolute paths of a home, temp or work directory, as they appear in JSON, Markdown or code.
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:home|root|tmp|work|Users|var/folders)/[\w.-]+")
TEXT_SUFFIXES = (".py", ".md", ".json", ".txt", ".csv", ".cfg", ".ini", ".toml", ".yml", ".yaml",
                 ".ipynb", ".sh", "")


def _project_files():
    """Tracked files, or (outside a git checkout) every file but build output and caches."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
        return listed.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        skipped = {".git", ".venv", "runs", "build", "dist", "__pycache__", ".pytest_cache"}
        files = []
        for root, folders, names in os.walk(REPO):
            folders[:] = [folder for folder in folders if folder not in skipped]
            files += [os.path.relpath(os.path.join(root, name), REPO) for name in names]
        return files


def _tracked_text_files():
    return [name for name in _project_files()
            if name and os.path.splitext(name)[1].lower() in TEXT_SUFFIXES and name != "tests/test_portability.py"]


def test_machine_path_pattern():
    assert MACHINE_PATH.search('"data_dir": "/work/shared/datasets/camvid"')
    assert MACHINE_PATH.search("saved to /tmp/pytest-of-root/x")
    assert MACHINE_PATH.search("/home/alice/reseg/runs")
    assert not MACHINE_PATH.search('"data_dir": "../shared/datasets/camvid"')
    assert not MACHINE_PATH.search("runs/camvid/model.keras and saved_models/camvid/tmp/x")


def test_no_tracked_file_names_a_machine_path():
    offenders = []
    for name in _tracked_text_files():
        path = os.path.join(REPO, name)
        if not os.path.isfile(path):
            continue  # deleted in the working tree
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                match = MACHINE_PATH.search(line)
                if match:
                    offenders.append(f"{name}:{number}: {match.group(0)}")
    assert not offenders, "absolute machine paths in tracked files:\n" + "\n".join(offenders[:20])

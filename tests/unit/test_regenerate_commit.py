"""regenerate.py stamps each block with the commit and "dirty" only when code differs from it:
the doc it is writing does not count (it once did, whenever the doc was the first changed file)."""

import subprocess

import pytest

from benchmarks import regenerate


@pytest.fixture
def repo(tmp_path, monkeypatch):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "BENCHMARKS.md").write_text("doc\n")
    (tmp_path / "bench.py").write_text("code\n")
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base")
    monkeypatch.setattr(regenerate, "ROOT", tmp_path)
    return tmp_path


def test_the_doc_being_written_is_not_dirt(repo):
    (repo / "docs" / "BENCHMARKS.md").write_text("a block rewritten\n")
    assert not regenerate.commit(repo / "docs" / "BENCHMARKS.md").endswith("dirty")


def test_changed_code_is(repo):
    (repo / "docs" / "BENCHMARKS.md").write_text("a block rewritten\n")
    (repo / "bench.py").write_text("changed\n")
    assert regenerate.commit(repo / "docs" / "BENCHMARKS.md").endswith(" dirty")

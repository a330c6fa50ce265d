"""r2scp_pipeline.provenance: the commit and changed files that benchmarks record."""

from __future__ import annotations

import subprocess

from r2scp_pipeline.provenance import checkout


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout  # fmt: skip


def test_checkout_names_the_commit_and_every_changed_file_whole(tmp_path):
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    git(repo, "init", "-q")
    (repo / "bench.py").write_text("a\n")
    (repo / "src" / "model.py").write_text("b\n")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    head = git(repo, "rev-parse", "HEAD").strip()
    assert checkout(repo) == {"commit": head, "dirty_files": []}
    (repo / "bench.py").write_text("changed\n")  # " M bench.py": the name keeps its first letter
    (repo / "src" / "new.py").write_text("c\n")
    assert checkout(repo) == {"commit": head, "dirty_files": ["bench.py", "src/new.py"]}
    assert checkout(repo / "src") == {"commit": head, "dirty_files": ["src/new.py"]}  # below path
    outside = tmp_path / "plain"
    outside.mkdir()
    assert checkout(outside) == {"commit": None, "dirty_files": []}

"""tools.sandbox: a project snapshot holds the working tree as it is, symbolic links as links."""

from __future__ import annotations

from conftest import ROOT
from repos import commit_all, git
from tools import sandbox


def test_a_snapshot_keeps_a_link_to_a_folder_as_a_link(tmp_path):
    # A .venv shared between clones is a link to a folder; '.venv/' in .gitignore matches folders only,
    # so git lists the link, and copying it as a file failed with IsADirectoryError.
    repo, shared = tmp_path / "repo", tmp_path / "shared-venv"
    (shared / "bin").mkdir(parents=True)
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / ".gitignore").write_text(".venv/\n")
    (repo / "MLproject").write_text("name: x\n")
    commit_all(repo, "project")
    (repo / ".venv").symlink_to(shared)

    copy = sandbox.snapshot(tmp_path / "copy", root=repo)

    assert (copy / ".venv").is_symlink() and (copy / ".venv").readlink() == shared
    assert (copy / "MLproject").read_text() == "name: x\n"


def test_the_projects_gitignore_ignores_a_venv_that_is_a_link(tmp_path):
    # Otherwise git lists the link and every run of such a clone is tagged git.dirty=true.
    repo, shared = tmp_path / "repo", tmp_path / "shared-venv"
    shared.mkdir()
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / ".gitignore").write_text((ROOT / ".gitignore").read_text())
    commit_all(repo, "project")
    (repo / ".venv").symlink_to(shared)

    assert git(repo, "status", "--porcelain") == ""

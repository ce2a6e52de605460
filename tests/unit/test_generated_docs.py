"""The README's support matrix and the docs' tables are generated from the targets, never edited by hand."""

from __future__ import annotations

from tests.helpers import docs


def test_the_readme_support_matrix_matches_the_capability_tables():
    assert (docs.ROOT / "README.md").read_text(encoding="utf-8") == docs.expected_readme(), \
        "the README's support matrix is out of date: run `make docs`"


def test_every_settings_table_in_the_docs_matches_its_settings_class():
    for path, text in docs.expected_pages().items():
        assert path.read_text(encoding="utf-8") == text, \
            f"{path.name}: the settings table is out of date: run `make docs`"


def test_targets_prints_a_targets_settings():
    from click.testing import CliRunner

    from pipecast.cli import main

    result = CliRunner().invoke(main, ["targets", "--settings", "argo"])
    assert result.exit_code == 0 and "Settings of 'argo'" in result.output and "gpu_node_label" in result.output
    result = CliRunner().invoke(main, ["targets", "--settings", "argoo"])
    assert result.exit_code == 2 and "Did you mean 'argo'?" in result.output

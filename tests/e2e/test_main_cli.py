"""``lookalike`` itself: its version and the help of every command."""

from helpers import run_cli as run


def test_version_is_the_installed_distribution_version():
    from importlib.metadata import version

    assert run("--version").stdout == f"lookalike {version('lookalike')}\n"


def test_help_has_no_placeholders_and_documents_every_search_option():
    for command in (["index"], ["query"], ["show"], ["dedup"], ["evaluate"], ["train"], ["tune"], ["serve"],
                    ["ann", "check"]):
        text = run(*command, "--help").stdout
        assert "{" not in text and "<list[" not in text and " range>" not in text, command
    usage = run("query", "--help").stdout
    assert "query [OPTIONS] IMAGE..." in usage
    for option in ("--mode", "--metric", "--exclude-self"):
        described = usage.split(option, 1)[1].split("\n  -")[0]
        assert len(described.split()) > 4, option  # the option's type and a sentence, not only a default
    assert "Softmax temperature" in run("train", "--help").stdout

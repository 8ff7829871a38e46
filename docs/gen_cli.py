"""MkDocs hook: the command-line reference (reference/cli.md), generated at build time from the
--help texts that `tfkd.cli.help_text` derives from the flag declarations (no TensorFlow)."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = "reference/cli.md"


def markdown():
    """The reference page: every command with its summary and its full --help."""
    sys.path.insert(0, ROOT)
    try:
        from tfkd.cli import help_text
    finally:
        sys.path.remove(ROOT)
    lines = ["# Command-line reference", "",
             "Every flag of every `tfkd` command, as `tfkd <command> --help` prints it "
             "(generated from the flag declarations; `bin/<command>` in a checkout is the same "
             "command). `distill`, `tune` and `ladder` also take `--config=NAME` (a packaged "
             "recipe) and `--list_configs`.", ""]
    lines += [f"- [`tfkd {tool}`](#tfkd-{tool}): {summary}"
              for tool, (_, summary) in help_text.TOOLS.items()]
    for tool, (_, summary) in help_text.TOOLS.items():
        lines += ["", f"## tfkd {tool}", "", summary, "", "```text",
                  help_text.read(tool).rstrip("\n"), "```"]
    return "\n".join(lines) + "\n"


def on_files(files, config):
    from mkdocs.structure.files import File
    files.append(File.generated(config, PAGE, content=markdown()))
    return files

"""MkDocs hook: the command-line reference (reference/cli.md), generated at build time from the
--help texts that `tfkd.cli.help_text` derives from the flag declarations (no TensorFlow)."""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = "reference/cli.md"
FLAG = re.compile(r"^  --(\[no\])?([\w.-]+):(?: (.*))?$")
GROUP = re.compile(r"^bin/(\w+)( [\w ]+)?:$")
DEFAULT = re.compile(r"^\(default: (.*)\)$")
KIND = re.compile(r"^\((an? [\w -]+|an? [\w ]+ in the range .*)\)$")
ENUM = re.compile(r"^<([^>]+)>: ")


def _help_text():
    sys.path.insert(0, ROOT)
    try:
        from tfkd.cli import help_text
    finally:
        sys.path.remove(ROOT)
    return help_text


def _cell(text):
    text = " ".join(text.split()).replace("|", "\\|")
    return text.replace("<", "&lt;").replace(">", "&gt;")


def parse(text):
    """absl --help text -> (summary, [(group, [(flag, default, kind, help)])], rest), or None
    when a line is not in absl's format."""
    lines = text.rstrip("\n").split("\n")
    summary, groups, rest, flag = lines[0], [], [], None
    for line in lines[1:]:
        if not line.strip():
            continue
        if match := GROUP.match(line):
            groups.append(((match.group(2) or "").strip() or "flags", []))
        elif (match := FLAG.match(line)) and groups:
            name = f"--[no]{match.group(2)}" if match.group(1) else f"--{match.group(2)}"
            flag = {"name": name, "default": "", "kind": "", "help": [match.group(3) or ""]}
            groups[-1][1].append(flag)
        elif line.startswith("    ") and flag is not None:
            part = line.strip()
            if match := DEFAULT.match(part):
                flag["default"] = match.group(1)
            elif KIND.match(part):
                flag["kind"] = part[1:-1]
            else:
                flag["help"].append(part)
        elif line.startswith("--"):
            rest.append(line)
            flag = None
        else:
            return None
    return summary, groups, rest


def tool_markdown(tool, summary, text):
    parsed = parse(text)
    if parsed is None:
        return [summary, "", "```text", text.rstrip("\n"), "```"]
    usage, groups, rest = parsed
    lines = [summary, "", f"`{usage}`"]
    for group, flags in groups:
        lines += [
            "",
            f"### {tool}: {group}",
            "",
            "| flag | default | what it sets |",
            "|---|---|---|",
        ]
        for flag in flags:
            help_text = " ".join(part for part in flag["help"] if part)
            match = ENUM.match(help_text)
            if match:
                help_text = (
                    f"One of {', '.join(match.group(1).split('|'))}. " + help_text[match.end() :]
                )
            if flag["kind"]:
                help_text += f" ({flag['kind']})"
            lines.append(f"| `{flag['name']}` | {_cell(flag['default'])} | {_cell(help_text)} |")
    lines += [""] + rest
    return lines


def markdown():
    """The reference page: every command with its summary and every flag it declares."""
    help_text = _help_text()
    lines = [
        "# Command-line reference",
        "",
        "Every flag of every `tfkd` command, as `tfkd <command> --help` prints it "
        "(generated from the flag declarations; `bin/<command>` in a checkout is the same "
        "command). `distill`, `tune` and `ladder` also take `--config=NAME` (a packaged "
        "recipe) and `--list_configs`.",
        "",
    ]
    lines += [
        f"- [`tfkd {tool}`](#tfkd-{tool}): {summary}"
        for tool, (_, summary) in help_text.TOOLS.items()
    ]
    for tool, (_, summary) in help_text.TOOLS.items():
        lines += ["", f"## tfkd {tool}", ""]
        lines += tool_markdown(tool, summary, help_text.read(tool))
    return "\n".join(lines) + "\n"


def on_files(files, config):
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=markdown()))
    return files

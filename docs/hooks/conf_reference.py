"""The reference of every config group, option and key, generated from conf/.

The configs page (docs/configs.md) holds a marker that this MkDocs hook replaces with the
reference, so the page is made from the YAML files each time the manual is built: a key
added to conf/ appears in it with its default and its description. A key's description
is its YAML comment: on its line after the value, or the comment lines right above it.
A key without one takes the description of the same key in another option of its group
(`dropout` of model=cnn is described in model=mlp); `name` is described by itself.
tests/test_docs.py fails on a key that has no description, naming it and its file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MARKER = "<!-- conf-reference -->"
CONF = Path(__file__).resolve().parents[2] / "conf"
# groups whose options set other groups' keys (sweeps), not keys of their own
PRESET_GROUPS = ("ablation", "hpo")
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[+A-Za-z_/][\w./-]*)\s*:(?:\s+|$)(?P<rest>.*)$")
NAME_DESCRIPTION = "the option's name, as `{group}=NAME` selects it"


@dataclass
class Key:
    path: str  # dotted, from the file's root
    value: Any
    description: str
    line: int


@dataclass
class ConfigFile:
    path: Path
    header: list[str]  # the file's first comment block, line by line
    keys: list[Key] = field(default_factory=list)  # the leaves, in the file's order
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def option(self) -> str:
        return self.path.stem

    def get(self, path: str) -> Key | None:
        return next((k for k in self.keys if k.path == path), None)


def _split_comment(text: str) -> tuple[str, str]:
    """`value  # comment` -> (value, comment); a # inside quotes is the value's."""
    quote = None
    for i, char in enumerate(text):
        if char in "\"'":
            quote = None if quote == char else (quote or char)
        elif char == "#" and quote is None and (i == 0 or text[i - 1] in " \t"):
            return text[:i].strip(), text[i + 1 :].strip()
    return text.strip(), ""


def _is_leaf(value: Any, description: str, children: list[str]) -> bool:
    """A mapping is one key (e.g. benchmark.strengths, {ewc: 300}) when it is described and
    none of its own keys is; otherwise its keys are the keys."""
    return not isinstance(value, dict) or not value or (bool(description) and not any(children))


def _lookup(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def parse(path: Path) -> ConfigFile:
    """The file's header and its keys with their comments (the YAML's values by PyYAML)."""
    lines = path.read_text().splitlines()
    data = yaml.safe_load("\n".join(lines)) or {}
    header, start = [], 0
    for start, line in enumerate(lines):  # noqa: B007 - start is used after the loop
        if not line.startswith("#"):
            break
        if "@package" not in line:
            header.append(line[1:].removeprefix(" ").rstrip())
    else:
        start = len(lines)
    found: list[tuple[tuple[str, ...], str, int]] = []  # (path, description, line number)
    stack: list[tuple[int, str]] = []
    above: list[str] = []
    for number, line in enumerate(lines[start:], start + 1):
        stripped = line.strip()
        if not stripped:
            above = []
            continue
        if stripped.startswith("#"):
            above.append(stripped.lstrip("#").strip())
            continue
        match = KEY_LINE.match(line)
        if match is None:  # a list item, or a value's continuation
            above = []
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = (*(k for _, k in stack), match["key"])
        _, comment = _split_comment(match["rest"])
        found.append((key, comment or " ".join(above), number))
        stack.append((indent, match["key"]))
        above = []
    config = ConfigFile(path, header, data=data)
    leaves: list[tuple[str, ...]] = []
    for key, text, number in found:
        if key[0] == "defaults" or any(key[: len(leaf)] == leaf for leaf in leaves):
            continue  # Hydra's defaults list, or inside a mapping that is one key
        value = _lookup(data, key)
        children = [t for k, t, _ in found if len(k) > len(key) and k[: len(key)] == key]
        if _is_leaf(value, text, children):
            leaves.append(key)
            config.keys.append(Key(".".join(key), value, text, number))
    _check_against_yaml(config)
    return config


def _leaves(data: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    if not isinstance(data, dict) or not data:
        return {prefix}
    return set().union(*(_leaves(v, (*prefix, str(k))) for k, v in data.items()))


def _check_against_yaml(config: ConfigFile) -> None:
    """Every key PyYAML reads is one the comment parser found (or inside one it found)."""
    data = {k: v for k, v in config.data.items() if k != "defaults"}
    found = [tuple(k.path.split(".")) for k in config.keys]
    missed = [
        ".".join(leaf)
        for leaf in _leaves(data)
        if leaf and not any(".".join(leaf).startswith(".".join(f)) for f in found)
    ]
    if missed:
        raise ValueError(f"{config.path}: keys not parsed: {', '.join(sorted(missed))}")


@dataclass
class Group:
    name: str  # e.g. "benchmark", "hydra/launcher"
    options: list[ConfigFile]
    default: str | None

    @property
    def is_preset(self) -> bool:
        return self.name in PRESET_GROUPS

    @property
    def package(self) -> str:
        """Where the option's keys land in the config: hydra/launcher -> hydra.launcher."""
        return self.name.replace("/", ".")


def load(conf: Path = CONF) -> tuple[ConfigFile, list[Group]]:
    """conf/config.yaml and every config group under conf/ (the default option first)."""
    root = parse(conf / "config.yaml")
    defaults = {}
    for entry in root.data.get("defaults", []):
        if isinstance(entry, dict):
            defaults.update(entry)
    groups = []
    for folder in sorted({p.parent for p in conf.rglob("*.yaml")} - {conf}):
        name = folder.relative_to(conf).as_posix()
        options = [parse(p) for p in sorted(folder.glob("*.yaml"))]
        default = defaults.get(name)
        options.sort(key=lambda o: (o.option != default, o.option))
        groups.append(Group(name, options, default))
    order = [g for g in defaults if g != "hydra"]  # then the presets, then Hydra's own
    groups.sort(
        key=lambda g: (
            g.name.startswith("hydra"),
            order.index(g.name) if g.name in order else len(order),
            g.name,
        )
    )
    return root, groups


def description(group: Group, option: ConfigFile, key: Key) -> str:
    """The key's own comment, else that of the same key in another option of the group."""
    if key.description:
        return key.description
    if key.path == "name":
        return NAME_DESCRIPTION.format(group=group.name)
    for other in group.options:
        same = other.get(key.path)
        if same is not None and same.description:
            return same.description
    return ""


def missing_descriptions(conf: Path = CONF) -> list[str]:
    """`file:line: key` of each key that has no description."""
    root, groups = load(conf)
    missing = [f"{root.path}:{k.line}: {k.path}" for k in root.keys if not k.description]
    for group in groups:
        if group.is_preset:
            continue
        for option in group.options:
            for key in option.keys:
                if not description(group, option, key):
                    missing.append(f"{option.path}:{key.line}: {group.package}.{key.path}")
    return missing


def documented_keys(conf: Path = CONF) -> set[str]:
    """Every dotted key a config can set: `train.epochs`, `strategy.lambda`, ..."""
    root, groups = load(conf)
    keys = {k.path for k in root.keys} | {g.name for g in groups}
    for group in groups:
        if not group.is_preset:
            keys |= {f"{group.package}.{k.path}" for o in group.options for k in o.keys}
    return keys


def _text(text: str) -> str:
    """A comment as markdown: literal * and <, the rest (`code`) as written."""
    return text.replace("*", "\\*").replace("<", "&lt;")


def _header(lines: list[str]) -> list[str]:
    """A file's header: its prose as a paragraph, its indented lines (commands) as code."""
    prose = [_text(line) for line in lines if not line.startswith(" ")]
    code = [line.strip() for line in lines if line.startswith(" ")]
    out = [" ".join(prose), ""] if prose else []
    return [*out, "```bash", *code, "```", ""] if code else out


def _value(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip()
    text = text.removesuffix("...").strip()
    return "`" + text.replace("|", "\\|") + "`"


def _cell(text: str) -> str:
    return _text(text).replace("|", "\\|") or "-"


def _key_table(rows: list[tuple[str, Any, str]]) -> list[str]:
    lines = ["| key | default | description |", "|---|---|---|"]
    lines += [f"| `{key}` | {_value(value)} | {_cell(text)} |" for key, value, text in rows]
    return [*lines, ""]


def _anchor(group: str, option: str = "") -> str:
    return "conf-" + re.sub(r"[^a-z0-9_]+", "-", f"{group} {option}".strip().lower())


def _preset(option: ConfigFile) -> list[str]:
    data = option.data
    sweeper = data.get("hydra", {}).get("sweeper", {}).get("params", {})
    sweep_dir = data.get("hydra", {}).get("sweep", {}).get("dir")
    lines = _header(option.header)
    rows = [f"| `{k}` | `{v}` |" for k, v in sweeper.items()]
    for entry in data.get("defaults", []):
        if isinstance(entry, dict):
            for k, v in entry.items():
                rows.append(f"| `{k.replace('override ', '').lstrip('/')}` | `{v}` |")
    rows += [
        f"| `{k.path}` | {_value(k.value)} |"
        for k in option.keys
        if not k.path.startswith("hydra.")
    ]
    lines += ["| sets | to |", "|---|---|", *rows, ""]
    if sweep_dir:
        lines += [f"Sweep directory: `{sweep_dir}`.", ""]
    return lines


def reference(conf: Path = CONF) -> str:
    """The markdown of the reference: the groups, then the top-level keys, then each
    group's options and their keys."""
    root, groups = load(conf)
    lines = [
        "## Config groups",
        "",
        "Choose an option with `GROUP=OPTION` on the command line (a preset with "
        "`+ablation=NAME`); the default is in bold.",
        "",
        "| group | options |",
        "|---|---|",
    ]
    for group in groups:
        names = [
            f"[**`{o.option}`**](#{_anchor(group.name, o.option)})"
            if o.option == group.default
            else f"[`{o.option}`](#{_anchor(group.name, o.option)})"
            for o in group.options
        ]
        lines.append(f"| [`{group.name}`](#{_anchor(group.name)}) | {', '.join(names)} |")
    lines += ["", "## Top-level keys", "", "From `conf/config.yaml`:", "", *_header(root.header)]
    lines += _key_table([(k.path, k.value, k.description) for k in root.keys])
    for group in groups:
        lines += [f"## `{group.name}` {{#{_anchor(group.name)}}}", ""]
        for option in group.options:
            chosen = f"+{group.name}" if group.is_preset else group.name
            title = f"`{chosen}={option.option}`"
            lines += [f"### {title} {{#{_anchor(group.name, option.option)}}}", ""]
            lines += [f"`conf/{group.name}/{option.path.name}`", ""]
            if group.is_preset:
                lines += _preset(option)
                continue
            lines += _header(option.header)
            rows = [
                (f"{group.package}.{k.path}", k.value, description(group, option, k))
                for k in option.keys
            ]
            lines += _key_table(rows) if rows else ["No keys of its own.", ""]
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - MkDocs' hook
    if MARKER in markdown:
        return markdown.replace(MARKER, reference())
    return markdown

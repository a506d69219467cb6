"""The manual cannot go stale: its config reference covers conf/, its figures name the
script that remakes them, the notebook is stored without outputs, and the worked examples
of "Extending the lab" run exactly as the page shows them.

(`make docs` builds the site strictly and `make notebook` executes the notebook; CI runs
both.)
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import REPO, compose_config
from omegaconf import OmegaConf

DOCS = REPO / "docs"


def load_module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


conf_reference = load_module(DOCS / "hooks" / "conf_reference.py")
docs_figures = load_module(REPO / "scripts" / "docs_figures.py")


# ------------------------------------------------------------------- the config reference


def test_every_config_key_has_a_description():
    missing = conf_reference.missing_descriptions()
    assert not missing, (
        "config keys without a description (write one as a YAML comment after the value, "
        "or on the line above the key; the configs page is generated from them):\n  "
        + "\n  ".join(missing)
    )


def _leaves(node, prefix=""):
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix


def _composed_keys(overrides: list[str]) -> set[str]:
    cfg = compose_config(overrides)
    container = OmegaConf.to_container(cfg, resolve=False)
    container.pop("hydra", None)
    return set(_leaves(container))


def _selectable_options():
    _, groups = conf_reference.load()
    for group in groups:
        if group.is_preset or group.name.startswith("hydra"):
            continue
        for option in group.options:
            yield f"{group.name}={option.option}"


@pytest.mark.parametrize("override", [None, *_selectable_options()])
def test_the_reference_documents_every_key_hydra_composes(override):
    """What Hydra composes (the default config, or with one option chosen) is what the
    reference lists: its parser of conf/ misses no key."""
    documented = conf_reference.documented_keys()
    composed = _composed_keys([override] if override else [])
    undocumented = [
        key for key in composed if not any(key == d or key.startswith(d + ".") for d in documented)
    ]
    assert not undocumented, f"composed with {override}, not in the reference: {undocumented}"


def test_the_reference_is_the_configs_page():
    reference = conf_reference.reference()
    page = (DOCS / "configs.md").read_text()
    assert conf_reference.MARKER in page
    assert "docs/hooks/conf_reference.py" in (REPO / "mkdocs.yml").read_text()
    for path in sorted((REPO / "conf").rglob("*.yaml")):
        group = path.parent.relative_to(REPO / "conf").as_posix()
        if group != ".":
            assert f"{group}={path.stem}`" in reference, f"{path} is not in the reference"


def test_the_presets_set_documented_keys():
    documented = conf_reference.documented_keys()
    _, groups = conf_reference.load()
    presets = [option for g in groups if g.is_preset for option in g.options]
    assert {p.path.parent.name for p in presets} == {"ablation", "hpo"}
    for preset in presets:
        params = preset.data.get("hydra", {}).get("sweeper", {}).get("params", {})
        # hpo.*: a search's own settings, which its preset brings (docs/hpo.md lists them)
        own = ("hydra.", "hpo.")
        keys = [*params, *(k.path for k in preset.keys if not k.path.startswith(own))]
        unknown = [k for k in keys if not _documented(k, documented)]
        assert not unknown, f"{preset.path} sets keys no config has: {unknown}"
        searched = {".".join(k.path.split(".")[:2]) for k in preset.keys}
        searched = {k for k in searched if k.startswith("hpo.")}
        undescribed = [k for k in searched if f"`{k}`" not in (DOCS / "hpo.md").read_text()]
        assert not undescribed, f"{preset.path}: not in docs/hpo.md's table: {undescribed}"


def _documented(key: str, documented: set[str]) -> bool:
    """A documented key; a node whose keys are documented (a sweep merging a dict into
    it, e.g. finetune={mode:lora,per_task:true}); or pretrain.optimizer's own keys, which
    are the optimizer group's."""
    if key in documented or any(d.startswith(key + ".") for d in documented):
        return True
    inner = key.removeprefix("pretrain.optimizer.")
    return inner != key and f"optimizer.{inner}" in documented


def test_a_key_without_a_comment_is_named(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(REPO / "conf", conf)
    with (conf / "model" / "mlp.yaml").open("a") as file:
        file.write("width_multiplier: 2\n")
    (missing,) = conf_reference.missing_descriptions(conf)
    assert missing.endswith("model/mlp.yaml:7: model.width_multiplier"), missing


# ------------------------------------------------------------------- figures and notebook

IMAGE = re.compile(r"!\[[^\]]*\]\((?:docs/)?img/(?P<name>[\w-]+)\.png\)")


@pytest.mark.parametrize(
    "page", [REPO / "README.md", *sorted(DOCS.rglob("*.md"))], ids=lambda p: p.name
)
def test_each_figure_names_the_script_that_remakes_it(page):
    lines = page.read_text().splitlines()
    for number, line in enumerate(lines):
        for match in IMAGE.finditer(line):
            name = match["name"]
            assert name in docs_figures.FIGURES, f"{page.name}:{number + 1}: {name} has no recipe"
            below = "\n".join(lines[number + 1 : number + 4])
            assert f"python scripts/docs_figures.py {name}" in below, (
                f"{page.name}:{number + 1}: the caption under {name}.png must name "
                f"`python scripts/docs_figures.py {name}`"
            )


def test_every_image_has_a_recipe():
    images = {p.stem for p in (DOCS / "img").glob("*.png")}
    assert images == set(docs_figures.FIGURES)


def test_the_notebook_is_stored_without_outputs():
    notebook = nbformat.read(REPO / "examples" / "quickstart.ipynb", as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


def test_the_readme_is_a_front_page():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    assert "make run" in readme and "make test" in readme
    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (REPO / target).exists(), target


# ------------------------------------------------------------------- Extending the lab

BLOCK = re.compile(
    r'^```(?P<lang>\w+)(?: title="(?P<title>[^"]+)")?\n(?P<body>.*?)^```$', re.M | re.S
)


def sections(page: Path) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", page.read_text(), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def run_block(lang: str, body: str, where: Path, env: dict[str, str], number: int) -> None:
    if lang == "python":
        script = where / f"block_{number}.py"
        script.write_text(body)
        commands = [[sys.executable, script.name]]
    elif lang == "bash":
        lines = body.replace("\\\n", " ").splitlines()
        commands = [shlex.split(line, comments=True) for line in lines]
        commands = [c for c in commands if c]
        assert all(c[0] == "lab-run" for c in commands), f"untested command in: {body}"
        commands = [[sys.executable, "-m", "lab.run", *c[1:]] for c in commands]
    else:
        raise AssertionError(f"an untitled {lang} block: title it with the file it is")
    for command in commands:
        done = subprocess.run(command, cwd=where, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{shlex.join(command)}:\n{done.stdout}\n{done.stderr}"


EXAMPLES = ["A strategy", "A benchmark", "A model"]


@pytest.mark.parametrize("section", EXAMPLES)
def test_extending_the_lab_runs_as_written(section, tmp_path):
    """Every titled block is a file (a new one, or a diff of one); every other block runs,
    in order, in a copy of lab/ and conf/."""
    text = sections(DOCS / "extending.md")[section]
    ignore = shutil.ignore_patterns("__pycache__")
    for folder in ("lab", "conf"):
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=ignore)
    env = {k: v for k, v in os.environ.items() if k not in ("LAB_DATA_ROOT", "PYTHONPATH")}
    env.update(PYTHONPATH=str(tmp_path), WANDB_MODE="disabled")
    env.setdefault("OMP_NUM_THREADS", "1")  # tiny models; a loaded machine's cores shared
    blocks = list(BLOCK.finditer(text))
    assert blocks, f"no code in {section}"
    for number, block in enumerate(blocks):
        lang, title, body = block["lang"], block["title"], block["body"]
        if lang == "diff":
            patch = tmp_path / f"block_{number}.diff"
            patch.write_text(body)
            done = subprocess.run(
                ["git", "apply", "-C1", "--recount", "--verbose", patch.name],
                cwd=tmp_path,
                capture_output=True,
                text=True,
            )
            assert done.returncode == 0, (
                f"{section}: the diff of {title} no longer applies:\n{done.stderr}"
            )
        elif title is not None:
            assert not (tmp_path / title).exists(), f"{title} exists already"
            (tmp_path / title).write_text(body)
        else:
            run_block(lang, body, tmp_path, env, number)
    # the new config keys are described, so the generated reference documents them
    assert conf_reference.missing_descriptions(tmp_path / "conf") == []

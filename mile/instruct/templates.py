"""Instruction templates as data: a YAML/JSON file per template set, validated on load.

The MILE authors turned each VQA question into several prompts from six fixed templates (DESIGN.md section 4).
Keeping the templates in a file (the bundled `mile/resources/templates/mile.yaml`) rather than in code lets users
add their own sets without touching the builder, and lets a run record exactly which strings it trained on.

File format (YAML or JSON):

    name: mile                      # required, non-empty
    description: ...                # optional
    options:                        # optional; these are the defaults
      format: "($letter)$text"      # must use $letter and $text
      separator: "; "
      letters: abcdefghijklmnopqrstuvwxyz
      max_distractors: 3            # 0..len(letters)-1
    templates:                      # required, non-empty
      - id: 1                       # positive integer, unique in the file
        text: '<image>Question:{$question}Option:{$options} Answer:'
        closed_only: false          # optional: use the template for CLOSED questions only

Placeholders use `string.Template` syntax, `$question` (required) and `$options` (optional), so that literal curly
braces, which the authors' prompts contain around the question and the options, need no escaping; `$$` is a
literal dollar. Any other placeholder, a missing `$question` or a malformed `$` is a `TemplateError` naming the
file, the template and the valid choices.
"""

from __future__ import annotations

import json
import os
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mile.data.errors import DataError
from mile.safe_yaml import YAMLError, parse_yaml

PLACEHOLDERS = ("question", "options")
OPTION_PLACEHOLDERS = ("letter", "text")
BUILTIN_SETS = ("mile",)
_TOP_KEYS = {"name", "description", "options", "templates"}
_OPTION_KEYS = {"format", "separator", "letters", "max_distractors"}
_TEMPLATE_KEYS = {"id", "text", "closed_only"}


class TemplateError(DataError):
    """A template file is malformed: the message names the file, the entry and what was expected."""


def _identifiers(text: str, where: str, allowed: Sequence[str]) -> list[str]:
    """The placeholders of a `string.Template` text, refusing malformed `$` and unknown names."""
    names = []
    for match in string.Template.pattern.finditer(text):
        if match.group("invalid") is not None:
            raise TemplateError(
                f"{where}: malformed placeholder at character {match.start('invalid')} of {text!r}; "
                f"write ${{name}} or $name with name in {list(allowed)}, and $$ for a literal dollar"
            )
        name = match.group("named") or match.group("braced")
        if name is None:
            continue
        if name not in allowed:
            raise TemplateError(f"{where}: unknown placeholder ${name} in {text!r}; valid: {list(allowed)}")
        names.append(name)
    return names


@dataclass(frozen=True)
class Template:
    """One prompt template. `closed_only` templates (the authors' "judgmental answer") skip OPEN questions."""

    id: int
    text: str
    closed_only: bool = False

    @property
    def needs_options(self) -> bool:
        return "options" in _identifiers(self.text, f"template {self.id}", PLACEHOLDERS)

    def render(self, question: str, options: str) -> str:
        """The prompt for `question`; `options` is the rendered option list (ignored if not used)."""
        return string.Template(self.text).substitute(question=question, options=options)

    def pattern(self) -> re.Pattern[str]:
        """A regex matching this template's prompts, capturing the question (and options) back out.

        Used to read the authors' release, whose records carry only prompts: the plain question is needed for
        evaluation-style prompts and for the leak guard.
        """
        parts, seen = [], set()
        last = 0
        for match in string.Template.pattern.finditer(self.text):
            literal = self.text[last : match.start()]
            name = match.group("named") or match.group("braced")
            parts.append(re.escape(literal + ("$" if match.group("escaped") is not None else "")))
            if name is not None:
                parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>.*?)")
                seen.add(name)
            last = match.end()
        parts.append(re.escape(self.text[last:]))
        return re.compile("".join(parts), re.DOTALL)

    @property
    def literal_length(self) -> int:
        """Characters of fixed text: when several templates match a prompt, the longest is the right one."""
        return len(string.Template.pattern.sub("", self.text))


@dataclass(frozen=True)
class OptionStyle:
    """How options are written into a prompt, e.g. `(a)yes; (b)no`, and how many distractors to draw."""

    format: str = "($letter)$text"
    separator: str = "; "
    letters: str = "abcdefghijklmnopqrstuvwxyz"
    max_distractors: int = 3

    def render(self, options: Sequence[str]) -> str:
        """Join `options` as `(a)X; (b)Y; ...` (in the given order)."""
        if len(options) > len(self.letters):
            raise ValueError(f"{len(options)} options but only {len(self.letters)} letters {self.letters!r}")
        item = string.Template(self.format)
        return self.separator.join(
            item.substitute(letter=letter, text=text)
            for letter, text in zip(self.letters, options, strict=False)
        )


@dataclass(frozen=True)
class TemplateSet:
    """A named, validated list of templates plus the option style they share."""

    name: str
    templates: tuple[Template, ...]
    options: OptionStyle = OptionStyle()
    description: str = ""
    file: str = ""

    def for_answer_type(self, answer_type: str) -> tuple[Template, ...]:
        """The templates a question of `answer_type` (OPEN / CLOSED) gets: closed-only ones skip OPEN."""
        closed = answer_type.strip().upper() == "CLOSED"
        return tuple(t for t in self.templates if closed or not t.closed_only)

    def by_id(self, template_id: int) -> Template:
        for template in self.templates:
            if template.id == template_id:
                return template
        raise KeyError(f"template set {self.name!r} has no template {template_id}; ids: {self.ids}")

    @property
    def ids(self) -> list[int]:
        return [t.id for t in self.templates]

    def match(self, prompt: str) -> tuple[Template, str] | None:
        """(template, question) for the template that produced `prompt`, or None if none fits."""
        best: tuple[Template, str] | None = None
        for template in self.templates:
            found = template.pattern().fullmatch(prompt)
            if found and (best is None or template.literal_length > best[0].literal_length):
                best = (template, found.group("question"))
        return best


# ---- loading and validation -----------------------------------------------------------------------------------


def load_templates(source: str | os.PathLike[str] | None = None) -> TemplateSet:
    """Load and validate a template set: None or a built-in name (`mile`) or a `.yaml`/`.yml`/`.json` path."""
    if source is None or (isinstance(source, str) and source in BUILTIN_SETS):
        path = Path(str(resources.files("mile") / "resources" / "templates" / f"{source or 'mile'}.yaml"))
    else:
        path = Path(source).expanduser()
    if path.suffix not in (".yaml", ".yml", ".json"):
        raise TemplateError(
            f"{path}: not a template file (.yaml, .yml or .json) nor a built-in set name {list(BUILTIN_SETS)}"
        )
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else parse_yaml(text)
    except FileNotFoundError as exc:
        raise TemplateError(f"{path}: template file not found") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError, YAMLError) as exc:
        raise TemplateError(f"{path}: cannot read template file ({exc})") from exc
    return parse_template_set(data, str(path))


def _check_keys(data: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TemplateError(
            f"{where}: expected a mapping with keys {sorted(allowed)}, got {type(data).__name__}"
        )
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise TemplateError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(allowed)}")
    return data


def _parse_options(data: Any, where: str) -> OptionStyle:
    data = _check_keys({} if data is None else data, _OPTION_KEYS, f"{where}: options")
    style = OptionStyle(**data)
    for key in ("format", "separator", "letters"):
        if not isinstance(getattr(style, key), str):
            raise TemplateError(f"{where}: options.{key} must be a string, got {getattr(style, key)!r}")
    names = _identifiers(style.format, f"{where}: options.format", OPTION_PLACEHOLDERS)
    if sorted(set(names)) != sorted(OPTION_PLACEHOLDERS):
        raise TemplateError(f"{where}: options.format {style.format!r} must use both $letter and $text")
    if not style.letters or len(set(style.letters)) != len(style.letters):
        raise TemplateError(f"{where}: options.letters {style.letters!r} must be non-empty, without repeats")
    n = style.max_distractors
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < len(style.letters):
        raise TemplateError(
            f"{where}: options.max_distractors must be an integer in [0, {len(style.letters) - 1}], got {n!r}"
        )
    return style


def _parse_template(entry: Any, index: int, where: str) -> Template:
    here = f"{where}: templates[{index}]"
    entry = _check_keys(entry, _TEMPLATE_KEYS, here)
    template_id, text = entry.get("id"), entry.get("text")
    closed_only = entry.get("closed_only", False)
    if isinstance(template_id, bool) or not isinstance(template_id, int) or template_id < 1:
        raise TemplateError(f"{here}: id must be a positive integer, got {template_id!r}")
    if not isinstance(text, str) or not text.strip():
        raise TemplateError(f"{here} (id {template_id}): text must be a non-empty string, got {text!r}")
    if not isinstance(closed_only, bool):
        raise TemplateError(
            f"{here} (id {template_id}): closed_only must be true or false, got {closed_only!r}"
        )
    if "question" not in _identifiers(text, f"{here} (id {template_id})", PLACEHOLDERS):
        raise TemplateError(f"{here} (id {template_id}): text {text!r} must contain $question")
    return Template(id=template_id, text=text, closed_only=closed_only)


def parse_template_set(data: Any, where: str = "<templates>") -> TemplateSet:
    """Validate parsed YAML/JSON `data` into a TemplateSet; `where` names the file in errors."""
    data = _check_keys(data, _TOP_KEYS, where)
    name, description = data.get("name"), data.get("description", "")
    if not isinstance(name, str) or not name.strip():
        raise TemplateError(f"{where}: name must be a non-empty string, got {name!r}")
    if not isinstance(description, str):
        raise TemplateError(f"{where}: description must be a string, got {description!r}")
    entries = data.get("templates")
    if not isinstance(entries, list) or not entries:
        raise TemplateError(
            f"{where}: templates must be a non-empty list of {{id, text, closed_only}} entries"
        )
    templates = tuple(_parse_template(entry, i, where) for i, entry in enumerate(entries))
    ids = [t.id for t in templates]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise TemplateError(f"{where}: template ids must be unique; repeated: {duplicates}")
    if all(t.closed_only for t in templates):
        raise TemplateError(f"{where}: every template is closed_only, so OPEN questions would get no prompt")
    return TemplateSet(
        name.strip(), templates, _parse_options(data.get("options"), where), description, where
    )

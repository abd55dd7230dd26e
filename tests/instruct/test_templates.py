"""Template sets: the bundled authors' six verbatim, validation errors, user files, matching prompts back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mile.instruct.templates import OptionStyle, TemplateError, load_templates, parse_template_set

# DESIGN.md section 4, verbatim: {Q} / {OPTS} stand for the question / options inside literal braces.
DESIGN_TEMPLATES = {
    1: "<image>Question:{Q}Option:{OPTS} The answer to the question is:",
    2: "<image>Question:{Q}Option:{OPTS} Answer:",
    3: "<image>Question:{Q} Based on the image, give a judgmental answer to the question",
    4: "<image>Question:{Q}Option:{OPTS} Short answer:",
    5: "<image>Used the provided image to answer the question:{Q}Option:{OPTS} Provide your ansewer based on the option",
    6: '<image>What is the answer to the following question?"{Q}"',
}


def test_bundled_set_reproduces_the_design_templates_verbatim() -> None:
    templates = load_templates()
    assert templates.name == "mile" and templates.ids == [1, 2, 3, 4, 5, 6]
    question, options = "Is this a CT?", "(a)yes; (b)no"
    for template in templates.templates:
        expected = DESIGN_TEMPLATES[template.id].replace("{Q}", "{" + question + "}")
        expected = expected.replace("{OPTS}", "{" + options + "}")
        assert template.render(question, options) == expected
    assert [t.id for t in templates.templates if t.closed_only] == [3]
    assert [t.id for t in templates.for_answer_type("OPEN")] == [1, 2, 4, 5, 6]
    assert [t.id for t in templates.for_answer_type("CLOSED")] == [1, 2, 3, 4, 5, 6]
    assert load_templates("mile") == templates


def test_option_style_renders_the_authors_format() -> None:
    assert OptionStyle().render(["Liver", "Lung", "Heart"]) == "(a)Liver; (b)Lung; (c)Heart"
    with pytest.raises(ValueError, match="letters"):
        OptionStyle(letters="ab").render(["x", "y", "z"])


def test_match_recovers_template_and_question() -> None:
    templates = load_templates()
    question = 'Is the "mass" {left} or $right?'
    for template in templates.templates:
        prompt = template.render(question, "(a)left; (b)right")
        found = templates.match(prompt)
        assert found is not None and found[0].id == template.id and found[1] == question
    assert templates.match("What is this?") is None


def _valid() -> dict:
    return {"name": "mine", "templates": [{"id": 1, "text": "Q: $question Options: $options"}]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(extra=1), r"unknown key\(s\) \['extra'\]"),
        (lambda d: d.update(name=""), "name must be a non-empty string"),
        (lambda d: d.update(templates=[]), "templates must be a non-empty list"),
        (
            lambda d: d["templates"][0].update(text="Q: $q"),
            r"unknown placeholder \$q .*valid: \['question', 'options'\]",
        ),
        (lambda d: d["templates"][0].update(text="no question here $options"), r"must contain \$question"),
        (lambda d: d["templates"][0].update(text="cost $5 $question"), "malformed placeholder"),
        (lambda d: d["templates"][0].update(id=0), "id must be a positive integer"),
        (lambda d: d["templates"][0].update(closed_only="yes"), "closed_only must be true or false"),
        (lambda d: d["templates"].append({"id": 1, "text": "$question"}), r"repeated: \[1\]"),
        (lambda d: d["templates"][0].update(closed_only=True), "OPEN questions would get no prompt"),
        (lambda d: d.update(options={"format": "$text"}), r"must use both \$letter and \$text"),
        (
            lambda d: d.update(options={"max_distractors": 30}),
            r"max_distractors must be an integer in \[0, 25\]",
        ),
        (lambda d: d.update(options={"letters": "aab"}), "without repeats"),
        (lambda d: d.update(options={"sep": "; "}), r"unknown key\(s\) \['sep'\]"),
    ],
)
def test_validation_names_the_problem(change, message: str) -> None:
    data = _valid()
    change(data)
    with pytest.raises(TemplateError, match=message):
        parse_template_set(data, "mine.yaml")


def test_user_template_file(tmp_path: Path) -> None:
    path = tmp_path / "short.json"
    data = {
        "name": "short",
        "options": {"format": "$letter) $text", "separator": " | ", "letters": "ABC", "max_distractors": 2},
        "templates": [
            {"id": 7, "text": "$question Choices: $options"},
            {"id": 8, "text": "Yes or no: $question", "closed_only": True},
        ],
    }
    path.write_text(json.dumps(data))
    templates = load_templates(path)
    assert templates.file == str(path) and templates.ids == [7, 8]
    assert templates.options.render(["x", "y"]) == "A) x | B) y"
    assert templates.by_id(7).needs_options and not templates.by_id(8).needs_options


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("t.txt", "name: x", r"not a template file \(.yaml, .yml or .json\)"),
        ("missing.yaml", None, "not found"),
        ("broken.yaml", "name: [", "cannot read template file"),
        ("list.yaml", "- 1", "expected a mapping"),
    ],
)
def test_bad_template_files(tmp_path: Path, name: str, content: str | None, message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(TemplateError, match=message):
        load_templates(path)


def test_unknown_builtin_name() -> None:
    with pytest.raises(TemplateError, match=r"nor a built-in set name \['mile'\]"):
        load_templates("nonexistent")

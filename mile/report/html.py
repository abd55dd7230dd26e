"""`mile report --html`: the report as one self-contained HTML file that opens offline, with no server.

It holds the sortable paper table (report.md's cells), the Pareto plots (the report's PNGs, base64), a question
browser per run (thumbnail, truth, prediction; filters: closed / open, question type, right / wrong, text) and a
two-run comparison listing the discordant questions, with `mile compare`'s counts. A Content-Security-Policy
allows only the page's own script and style (by hash) and data: images, so the file can request nothing.

The state lives in the URL hash, so a link (or a headless browser) opens a filtered view:

    report.html#run=<run>&filter=wrong&type=closed&qtype=<type>&q=<text>    report.html#sort=-global
    report.html#compare=<run A>,<run B>                                     (&show=questions / compare)

Questions are untrusted text: they travel as JSON in a script block that never runs (`<`, `>`, `&` escaped as
\\u003c...) and the page's script writes them with textContent only; table cells are HTML-escaped here.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mile.atomic import atomic_write_text
from mile.config import INFERENCES
from mile.errors import MileError
from mile.report import Report

from .collect import RunRecord, relative
from .compare import QUESTION_FIELDS, CompareError, MissingPredictions, is_closed, read_predictions
from .table import RULES, ReportError, Row, caption, markdown_table

IMAGE_MODES = ("embed", "none")
THUMB_PX = 128
HTML_PLOTS = ("acc_vs_params.png", "acc_vs_memory.png", "acc_vs_time.png")  # loss curves stay in report.md
LEFT_OUT = (
    "thumbnails left out: built with --images none (a page kept in a repository must not copy dataset "
    "images such as SLAKE's)"
)


@dataclass
class PredictionSet:
    """One run's predictions on one split under one inference mode: a choice in the question browser."""

    key: str  # the run's directory under the report root, + `@rank` / `@generate` for the other mode
    label: str
    run: RunRecord
    split: str  # the dataset split the questions come from
    rows: dict[str, dict[str, Any]]  # predictions.jsonl by question id


@dataclass
class QuestionSet:
    """Questions answered by one or more prediction sets, stored once in the page."""

    split: str
    run: RunRecord  # the first run that answered them: its config says where their images are
    ids: list[str]
    rows: list[dict[str, Any]]  # the first run's predictions.jsonl records
    images: list[int] = field(default_factory=list)  # each question's thumbnail (index), -1 for none


@dataclass
class HtmlReport:
    file: Path
    n_questions: int  # distinct questions over all question sets
    n_no_image: int
    notes: list[str]  # what the page says about missing images and predictions


def write_html(
    report: Report, root: Path, file: Path, rule: str = "yesno", images: str = "embed"
) -> HtmlReport:
    """The HTML page of `report` (mile.report.Report) over the runs under `root`, written to `file` (a folder:
    file/report.html)."""
    check_images(images)
    file = Path(file) / "report.html" if Path(file).is_dir() else Path(file)
    sets, notes = prediction_sets(report.rows, root)
    qsets, set_qset = question_sets(sets)
    pictures, image_notes, n_missing = thumbnails(qsets, images)
    payload = _payload(sets, qsets, set_qset, pictures, rule)
    notes = image_notes + notes
    runs = sum(len(r.runs) for r in report.rows)
    # reference rows that train nothing (the majority answer, ...) come first, as in report.md
    table = [*getattr(report, "baselines", []), *report.rows]
    parts = {
        "title": html.escape(f"Report: {root}"),
        "summary": html.escape(f"{len(report.rows)} row(s) from {runs} finished run(s); closed rule {rule}."),
        "notes": "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes),
        "table": table_html(table, root, rule) if table else "<p>No finished runs.</p>",
        "caption": _code(html.escape(caption(table, rule))) if table else "",
        "left_out": _left_out(report.left_out, root),
        "plots": _plots(report.files),
        "rule": _code(html.escape(RULES[rule])),
        "data": _script_json(payload),
    }
    atomic_write_text(file, fill_template(parts))
    file.chmod(0o644)  # a page to share (the atomic write's temp file is private)
    return HtmlReport(file, sum(len(q.ids) for q in qsets), n_missing, notes)


def check_images(images: str) -> None:
    if images not in IMAGE_MODES:
        raise ReportError(f"unknown --images mode {images!r}; valid modes: {list(IMAGE_MODES)}")


def prediction_sets(rows: list[Row], root: Path) -> tuple[list[PredictionSet], list[str]]:
    """Every table run's predictions on its row's split (and under the other inference mode, when evaluated so),
    with a note for each run the browser cannot show."""
    sets, notes = [], []
    for row in rows:
        for run in row.runs:
            name, main = relative(run.path, root), run.config.eval.inference
            for mode in (main, *[m for m in INFERENCES if m != main]):
                sub = row.split if mode == main else f"{mode}/{row.split}"
                try:
                    found = read_predictions(run.path, sub)
                except MissingPredictions:
                    if mode == main:
                        notes.append(
                            f"{name}: no eval/{sub}/predictions.jsonl, so its questions are not shown"
                        )
                    continue
                except CompareError as exc:
                    notes.append(f"{name}: {exc}")
                    continue
                key = name if mode == main else f"{name}@{mode}"
                label = f"{key}: {row.label}, seed {run.config.train.seed}, {mode}"
                sets.append(PredictionSet(key, label, run, row.split, found))
    return sets, notes


def question_sets(sets: list[PredictionSet]) -> tuple[list[QuestionSet], list[int]]:
    """The distinct question lists (what `mile compare` requires two runs to share: the ids, each with the same
    question, image, answer and types), each stored once; and which one each prediction set answered."""
    qsets: list[QuestionSet] = []
    index: dict[tuple, int] = {}
    set_qset = []
    for s in sets:
        key = (s.split, *sorted((k, *_normal_fields(r)) for k, r in s.rows.items()))
        if key not in index:
            index[key] = len(qsets)
            qsets.append(QuestionSet(s.split, s.run, list(s.rows), list(s.rows.values())))
        set_qset.append(index[key])
    return qsets, set_qset


def _normal_fields(row: dict[str, Any]) -> tuple:
    return tuple(norm(row[f]) if f in row else None for f, norm in QUESTION_FIELDS.items())


def thumbnails(qsets: list[QuestionSet], mode: str) -> tuple[list[str], list[str], int]:
    """Set each question's thumbnail; returns (the distinct thumbnails as data URIs, notes on the questions
    without one, how many those are). Images come from each set's dataset, read by the run's config through the
    loaders `mile eval` uses."""
    total = sum(len(q.ids) for q in qsets)
    if mode == "none":
        for q in qsets:
            q.images = [-1] * len(q.ids)
        return [], [f"{LEFT_OUT}: {total} questions have no image."], total
    pictures: list[str] = []
    seen: dict[Path, int] = {}  # each image file is embedded once
    loaded: dict[str, dict[str, Path] | str] = {}
    why: Counter[str] = Counter()
    for q in qsets:
        where = f"{q.run.config.data.dataset} {q.split}"
        paths = _image_paths(q, loaded)
        q.images = []
        for qid in q.ids:
            path = paths.get(qid) if isinstance(paths, dict) else None
            if path is not None and path not in seen:
                seen[path] = _thumbnail(path, pictures)
            number = -1 if path is None else seen[path]
            if number < 0 and isinstance(paths, str):
                why[paths] += 1
            elif number < 0:
                why[
                    f"{where}: "
                    + ("the image does not decode" if path else "not among the dataset's usable records")
                ] += 1
            q.images.append(number)
    missing = sum(why.values())
    detail = "; ".join(f"{n} ({w})" for w, n in why.items())
    return pictures, [f"{missing} of {total} questions have no image: {detail}"] if missing else [], missing


def _image_paths(q: QuestionSet, loaded: dict[str, dict[str, Path] | str]) -> dict[str, Path] | str:
    """Question id -> image file for the split the set's run evaluated (its data section), or why there are
    none (the dataset is not there, ...); `loaded` keeps what was read for the next set."""
    from mile.engine.datasets import load_split  # loads torch: only when images are wanted

    cfg = q.run.config
    source = cfg.data.model_dump_json() + "\n" + q.split
    if source not in loaded:
        try:
            loaded[source] = {s.id: s.image for s in load_split(cfg, q.split).samples}
        except (MileError, OSError) as exc:
            loaded[source] = f"{cfg.data.dataset} {q.split}: {str(exc).splitlines()[0]}"
    return loaded[source]


def _thumbnail(path: Path, pictures: list[str]) -> int:
    """Append the JPEG thumbnail of `path` to `pictures`: its index, or -1 if the file does not decode."""
    from mile.data.images import open_image

    try:
        image = open_image(path)
    except MileError:
        return -1
    image.thumbnail((THUMB_PX, THUMB_PX))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=75, optimize=True)
    pictures.append("data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"))
    return len(pictures) - 1


def _payload(
    sets: list[PredictionSet], qsets: list[QuestionSet], set_qset: list[int], pictures: list[str], rule: str
) -> dict[str, Any]:
    """The JSON the page's script reads. Predictions are indices into one string table; `norm` gives each string
    the id of its normal form (two answers differ, as `mile compare` counts, when their ids differ)."""
    from mile.data.answers import normalize_answer

    strings: dict[str, int] = {}
    norms: dict[str, int] = {}
    norm_of: list[int] = []

    def intern(text: str) -> int:
        if text not in strings:
            strings[text] = len(strings)
            norm_of.append(norms.setdefault(normalize_answer(text), len(norms)))
        return strings[text]

    questions = [
        {
            "split": q.split,
            "ids": q.ids,
            "q": [str(r.get("question", "")) for r in q.rows],
            "a": [str(r["answer"]) for r in q.rows],
            "qtype": [str(r.get("question_type", "")) for r in q.rows],
            "closed": "".join("1" if is_closed(r, rule) else "0" for r in q.rows),  # as mile compare groups
            "img": q.images,
        }
        for q in qsets
    ]
    runs = []
    for s, number in zip(sets, set_qset, strict=True):
        rows = [s.rows[k] for k in qsets[number].ids]
        right = "".join("1" if r["correct"] else "0" for r in rows)
        pred = [intern(str(r["prediction"])) for r in rows]
        runs.append({"key": s.key, "label": s.label, "qset": number, "pred": pred, "right": right})
    return {"images": pictures, "strings": list(strings), "norm": norm_of, "qsets": questions, "sets": runs}


def table_html(rows: list[Row], root: Path, rule: str) -> str:
    """report.md's table (its very cells) as HTML, sortable by its headers, plus links to each row's runs."""
    lines = markdown_table(rows).splitlines()
    header, body = _cells(lines[0]), [_cells(line) for line in lines[2:]]
    heads = []
    for h in header:
        note = f' <span class="rule">({rule})</span>' if h == "Closed" else ""
        heads.append(f'<th data-key="{slug(h)}" title="sort">{html.escape(h)}{note}</th>')
    heads.append('<th data-key="runs" title="sort">Runs</th>')
    out = ['<div class="wide"><table id="results"><thead><tr>' + "".join(heads) + "</tr></thead><tbody>"]
    for number, (row, cells) in enumerate(zip(rows, body, strict=True)):
        if len(cells) != len(header):  # the Markdown table is broken too
            raise ReportError(f"a table cell of row {row.label!r} holds ' | ', which the table cannot show")
        links = " ".join(
            f'<a href="#run={quote(relative(r.path, root), safe="")}&amp;show=questions">s{r.config.train.seed}</a>'
            for r in row.runs
        )
        tds = "".join(f"<td>{html.escape(c)}</td>" for c in cells)
        out.append(f'<tr data-order="{number}">{tds}<td>{links}</td></tr>')
    return "\n".join([*out, "</tbody></table></div>"])


def _code(text: str) -> str:
    """Markdown's `code` spans as <code> (in text already escaped)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)


def _cells(line: str) -> list[str]:
    return line.strip()[2:-2].split(" | ")


def slug(header: str) -> str:
    """A header as a sort key: `#Params` -> params, `Image gap (closed)` -> image-gap-closed."""
    return re.sub(r"[^a-z0-9]+", "-", header.lower()).strip("-")


def _left_out(left_out: list[tuple[RunRecord, str]], root: Path) -> str:
    if not left_out:
        return ""
    items = "".join(
        f"<li><code>{html.escape(relative(r.path, root))}</code>: {html.escape(why)}</li>"
        for r, why in left_out
    )
    return f"<h3>Not in the table</h3><ul>{items}</ul>"


def _plots(files: list[Path]) -> str:
    figures = []
    for file in files:
        if file.name in HTML_PLOTS:
            data = base64.b64encode(file.read_bytes()).decode("ascii")
            figures.append(
                f'<figure><img alt="{file.name}" src="data:image/png;base64,{data}">'
                f"<figcaption>{file.name}</figcaption></figure>"
            )
    return "".join(figures)


def _script_json(payload: dict[str, Any]) -> str:
    """JSON that cannot end its script block or open a tag or comment (`</script>`, `<!--`)."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def fill_template(parts: dict[str, str]) -> str:
    """mile/resources/report.html with its {{name}}s filled in one pass (filled text is not scanned again), the
    CSS and script inlined and allowed by their hashes."""
    folder = resources.files("mile") / "resources"
    css = (folder / "report.css").read_text(encoding="utf-8")
    js = (folder / "report.js").read_text(encoding="utf-8")
    csp = (
        f"default-src 'none'; img-src data:; style-src '{_sha(css)}'; script-src '{_sha(js)}'; "
        "base-uri 'none'; form-action 'none'"
    )
    parts = {**parts, "css": css, "js": js, "csp": csp}
    template = (folder / "report.html").read_text(encoding="utf-8")
    return re.sub(r"\{\{(\w+)\}\}", lambda m: parts[m.group(1)], template)


def _sha(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")

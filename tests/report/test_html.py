"""`mile report --html`: one self-contained page. Checks on the file itself (offline, complete, escaped, images
embedded once and the missing ones counted), then in headless Chromium: filters, sort and the two-run comparison
opened from the URL hash (--dump-dom, after the page's script ran), and a screenshot that is not blank."""

import base64
import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest
from PIL import Image, ImageStat
from report_helpers import metrics

from mile.config import Config
from mile.engine.datasets import demo_root
from mile.engine.rundir import RunDir
from mile.report import write_report
from mile.report.compare import compare_runs, is_closed
from mile.report.html import table_html, write_html
from mile.tuning import parse_plan_notation

EVIL = (
    "</script><script>document.title='pwned'</script><img src=x onerror=\"document.body.dataset.pwned=1\">?"
)
N_DEMO = 12  # demo questions per run, plus the one with EVIL as its text (an id the dataset does not have)


def demo_questions() -> list[dict]:
    """Six closed and six open questions of the bundled demo test split, as predictions.jsonl holds them."""
    records = json.loads((demo_root() / "testset.json").read_text())
    closed = [r for r in records if r["answer_type"] == "CLOSED"][:6]
    chosen = closed + [r for r in records if r["answer_type"] == "OPEN"][:6]
    rows = [
        {"id": str(r["qid"]), "question": r["question"], "answer": r["answer"], "answer_type": r["answer_type"],
         "question_type": r["question_type"], "image": r["image_name"]}
        for r in chosen
    ]  # fmt: skip
    # labelled OPEN, closed by the report's rule (its truth is yes): the filters follow the rule
    evil = {"id": "evil", "question": EVIL, "answer": "yes", "answer_type": "OPEN", "question_type": "PRES"}
    return [*rows, evil]


def predictions(questions: list[dict], right: list[bool], wrong: str) -> list[dict]:
    """Each question answered right (the truth) or wrong (`wrong`, or the other of yes / no)."""
    out = []
    for q, ok in zip(questions, right, strict=True):
        truth = q["answer"].lower()
        guess = q["answer"] if ok else {"yes": "no", "no": "yes"}.get(truth, wrong)
        row = {k: q[k] for k in ("id", "question", "answer", "answer_type", "question_type")}
        out.append({**row, "prediction": guess, "correct": ok})
    return out


def make_run(root, name, plan, seed, pct, rows, data=None, rank_rows=None):
    """A done run directory by hand: config (demo data unless `data`), params, stats, predictions, metrics."""
    cfg = Config(plan=parse_plan_notation(plan))
    cfg.train.seed = seed
    if data:
        cfg.data.dataset, cfg.data.root = data
    run = RunDir(root / name).create(cfg)
    run.set_status("done")
    run.write_json("params.json", {"towers": {}, "total": 1000, "trainable": 10 * pct, "trainable_pct": pct})
    run.write_json("train_stats.json", {"wall_s": 10.0 * seed, "samples_per_s": 5.0, "peak_rss_mb": 900.0})
    for split, found in (("test", rows), ("rank/test", rank_rows)):
        if found is None:
            continue
        folder = run.path / "eval" / split
        folder.mkdir(parents=True)
        (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in found))
        groups = [[r["correct"] for r in found if is_closed(r, "yesno") == c] for c in (False, True)]
        acc = [sum(g) / len(g) if g else None for g in groups]
        every = [r["correct"] for r in found]
        n = (len(groups[0]), len(groups[1]), len(every))
        (folder / "metrics.json").write_text(json.dumps(metrics(*acc, sum(every) / len(every), n=n)))
    return run.path


RIGHT = {
    "a": [i % 2 == 0 for i in range(N_DEMO + 1)],
    "b": [i % 3 == 0 for i in range(N_DEMO + 1)],
    "c": [i % 4 != 2 for i in range(N_DEMO + 1)],
    "c@rank": [i < 4 for i in range(N_DEMO + 1)],
    "d": [True, False, False, False, True],
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Four runs: a and b (two seeds of one row), c (with rank-inference predictions too) on the same demo
    questions, and d on five of them from a dataset root that is not there; the report and its page."""
    root = tmp_path_factory.mktemp("html")
    runs, qs = root / "runs", demo_questions()
    make_run(runs, "a", "T-T-T", 1, 1.0, predictions(qs, RIGHT["a"], "kidney"))
    make_run(runs, "b", "T-T-T", 2, 1.0, predictions(qs, RIGHT["b"], "KIDNEY!"))  # the same, normalised
    rank = predictions(qs, RIGHT["c@rank"], "lung")
    make_run(runs, "c", "F-T-T", 3, 20.0, predictions(qs, RIGHT["c"], "liver"), rank_rows=rank)
    d_data = ("vqa_rad", "/no/such/vqa_rad")
    make_run(runs, "d", "F-F-T", 4, 3.0, predictions(qs[:5], RIGHT["d"], "lung"), d_data)
    report = write_report(runs, out=root / "out")
    page = write_html(report, runs, root / "out" / "report.html")
    return SimpleNamespace(runs=runs, report=report, page=page, text=page.file.read_text(), questions=qs)


def payload(text: str) -> dict:
    (data,) = re.findall(r'<script type="application/json" id="mile-data">(.*?)</script>', text, flags=re.S)
    return json.loads(data)


# --- the file --------------------------------------------------------------------------------------------------
def test_the_page_is_self_contained(study):
    text = study.text
    assert "http://" not in text and "https://" not in text
    for attribute in re.findall(r'\b(?:src|href)="([^"]*)"', text):
        assert attribute.startswith(("data:", "#")), attribute  # embedded, or a link within the page
    for request in (
        "<link",
        "<iframe",
        "fetch(",
        "XMLHttpRequest",
        "import(",
        "url(",
        "@import",
        "WebSocket",
    ):
        assert request not in text, request
    (csp,) = re.findall(r'http-equiv="Content-Security-Policy" content="([^"]*)"', text)
    assert csp.startswith("default-src 'none'; img-src data:;")


def test_every_run_question_and_table_row_is_in_the_page(study):
    data = payload(study.text)
    assert [s["key"] for s in data["sets"]] == ["a", "b", "c", "c@rank", "d"]
    assert data["qsets"][0]["ids"] == [q["id"] for q in study.questions]
    for s in data["sets"]:
        assert s["right"] == "".join("1" if r else "0" for r in RIGHT[s["key"]])
        ids = data["qsets"][s["qset"]]["ids"]
        assert len(s["pred"]) == len(ids) and len(ids) == (5 if s["key"] == "d" else N_DEMO + 1)
    table = re.search(r'<table id="results">.*?</table>', study.text, flags=re.S).group(0)
    lines = study.report.markdown.split("\n\n")[2].splitlines()  # report.md's table: header, rule, rows
    rows = re.findall(r"<tr data-order.*?</tr>", table)
    assert len(rows) == len(study.report.rows) == len(lines) - 2 == 3
    assert 'Closed <span class="rule">(yesno)</span>' in table  # the rule beside the closed numbers
    for row, line in zip(rows, lines[2:], strict=True):
        cells = [c.replace("&#x27;", "'") for c in re.findall(r"<td>(.*?)</td>", row)]
        assert cells[:-1] == line.strip("| ").split(" | ")  # report.md's cells, then the runs' links


def test_question_text_is_escaped(study):
    assert EVIL not in study.text and "<script>document" not in study.text and "<img src=x" not in study.text
    assert study.text.count("<script") == 2 and study.text.count("</script>") == 2  # the data and the script
    assert payload(study.text)["qsets"][0]["q"][-1] == EVIL  # and it comes back whole
    row = dataclasses.replace(study.report.rows[0], setting="<b>x</b> & 'y'")  # a run directory's name, say
    table = table_html([row], study.runs, "yesno")
    assert "<td>&lt;b&gt;x&lt;/b&gt; &amp; &#x27;y&#x27;</td>" in table and "<b>" not in table


def test_each_image_embedded_once_and_the_missing_ones_counted(study):
    names = {q["image"] for q in study.questions if "image" in q}
    assert study.text.count("data:image/jpeg;base64,") == len(names) >= 5
    data = payload(study.text)
    first = data["qsets"][0]["img"]
    assert [n >= 0 for n in first] == [True] * N_DEMO + [False]  # the evil question's id is no demo record
    assert data["qsets"][1]["img"] == [-1] * 5  # run d: its dataset root is not there
    assert (study.page.n_questions, study.page.n_no_image) == (N_DEMO + 1 + 5, 6)
    assert "6 of 18 questions have no image" in study.text and "/no/such/vqa_rad" in study.text
    with Image.open(io.BytesIO(base64.b64decode(data["images"][0].split(",")[1]))) as image:
        assert max(image.size) <= 128


def test_images_none_leaves_them_out_and_says_why(study, tmp_path):
    page = write_html(study.report, study.runs, tmp_path, images="none")
    text = page.file.read_text()
    assert page.file == tmp_path / "report.html" and "data:image/jpeg" not in text
    assert "built with --images none" in text and "18 questions have no image" in text


def test_the_command_writes_the_page_and_refuses_bad_modes(study, tmp_path, mile_cli):
    code, out, err = mile_cli("report", study.runs, "--out", tmp_path, "--html", tmp_path / "p.html")
    assert code == 0, err
    assert f"wrote {tmp_path / 'p.html'} (" in out and "html: 6 of 18 questions have no image" in out
    code, out, err = mile_cli(
        "report", study.runs, "--out", tmp_path / "x", "--html", tmp_path, "--images", "no"
    )
    assert code == 2 and "unknown --images mode 'no'; valid modes: ['embed', 'none']" in err
    assert not (tmp_path / "x").exists()  # refused before anything was written


# --- in a browser ----------------------------------------------------------------------------------------------
VOID = {"img", "br", "input", "meta", "link", "hr", "source", "wbr"}


class Dom(HTMLParser):
    """The elements of a page: tag, attributes, what it is within (the ids and data-groups of the elements
    around it), and its text."""

    def __init__(self, text: str):
        super().__init__()
        self.items, self._open = [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        within = {o.attrs.get("id") or o.attrs.get("data-group") for o in self._open}
        item = SimpleNamespace(tag=tag, attrs=dict(attrs), within=within, parts=[])
        self.items.append(item)
        if tag not in VOID:
            self._open.append(item)

    def handle_endtag(self, tag):
        while self._open and self._open.pop().tag != tag:
            pass

    def handle_data(self, data):
        for item in self._open:
            item.parts.append(data)

    def find(self, tag, within=(), **attrs):
        """Elements `tag` inside everything `within` names (one id, or several ids / groups), with `attrs`."""
        inside = {within} if isinstance(within, str) else set(within)
        return [
            SimpleNamespace(**vars(i), text="".join(i.parts))
            for i in self.items
            if i.tag == tag and inside <= i.within and all(i.attrs.get(k) == v for k, v in attrs.items())
        ]

    def text_of(self, element_id):
        (item,) = [i for i in self.items if i.attrs.get("id") == element_id]
        return "".join(item.parts)


def question_rows(dom):
    return [tr for tr in dom.find("tr", within="question-table") if "data-id" in tr.attrs]


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    """Run headless Chromium on a file (+ URL hash); returns its stdout. Missing: a failure under CI (.ci/run
    installs it), else a skip."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        why = "headless Chromium not found (Debian: apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    profile = tmp_path_factory.mktemp("chromium-profile")

    def run(file, hash_="", *options):
        command = [found, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                   f"--user-data-dir={profile}", *options, file.as_uri() + hash_]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    return run


def expected_ids(study, key, filter_="all", type_="all", qtype="", needle=""):
    """The questions the page should show for run `key` under these filters, computed here from its files."""
    folder = "c/eval/rank/test" if key == "c@rank" else f"{key}/eval/test"
    rows = [json.loads(line) for line in (study.runs / folder / "predictions.jsonl").read_text().splitlines()]
    keep = []
    for r in rows:
        closed = is_closed(r, "yesno")
        text = f"{r['question']}\n{r['answer']}\n{r['prediction']}".lower()
        if filter_ != "all" and r["correct"] != (filter_ == "right"):
            continue
        if (type_ == "closed" and not closed) or (type_ == "open" and closed):
            continue
        if (qtype and r["question_type"] != qtype) or needle.lower() not in text:
            continue
        keep.append(r["id"])
    return keep, len(rows)


@pytest.mark.parametrize(
    "hash_, key, filters",
    [
        ("#run=a&filter=wrong&type=closed", "a", ("wrong", "closed", "", "")),
        ("#run=b&filter=right", "b", ("right", "all", "", "")),
        ("#run=c%40rank&type=open&qtype=PRES", "c@rank", ("all", "open", "PRES", "")),
        ("#run=d&q=NO", "d", ("all", "all", "", "no")),
    ],
)
def test_filters_from_the_hash(study, chromium, hash_, key, filters):
    dom = Dom(chromium(study.page.file, hash_, "--dump-dom"))
    shown, total = expected_ids(study, key, *filters)
    assert 0 < len(shown) < total  # each filter keeps some questions and drops others
    assert [tr.attrs["data-id"] for tr in question_rows(dom)] == shown
    assert (dom.text_of("shown"), dom.text_of("total")) == (str(len(shown)), str(total))
    assert dom.find("option", within="run", value=key)[0].attrs.get("value") == key


def test_sort_from_the_hash(study, chromium):
    rows = study.report.rows
    orders = {
        "#sort=-global": sorted(range(3), key=lambda i: -rows[i].acc["global"][0]),
        "#sort=params": sorted(range(3), key=lambda i: rows[i].params_pct),  # 1, 3, 20: not as text
        "#sort=seeds": sorted(range(3), key=lambda i: len(rows[i].runs)),  # ties keep the table's order
    }
    assert len({tuple(o) for o in orders.values()} | {(0, 1, 2)}) == 4  # each differs from the others
    for hash_, expected in orders.items():
        dom = Dom(chromium(study.page.file, hash_, "--dump-dom"))
        order = [
            int(tr.attrs["data-order"]) for tr in dom.find("tr", within="results") if "data-order" in tr.attrs
        ]
        assert order == expected, hash_


def test_compare_from_the_hash_gives_mile_compares_counts(study, chromium):
    for a, b in (("a", "b"), ("a", "c")):
        dom = Dom(chromium(study.page.file, f"#compare={a},{b}", "--dump-dom"))
        for paired in compare_runs(study.runs / a, study.runs / b, "test", "yesno"):
            tds = dom.find("td", within=("compare-counts", paired.group))
            cells = {td.attrs["data-k"]: td.attrs["data-v"] for td in tds}
            assert [int(cells[k]) for k in ("n", "only_a", "only_b", "answers_differ")] == [
                paired.n, paired.only_a, paired.only_b, paired.answers_differ
            ]  # fmt: skip
            assert float(cells["acc_a"]) == pytest.approx(paired.acc_a)
            assert float(cells["acc_b"]) == pytest.approx(paired.acc_b)
            assert float(cells["p_mcnemar"]) == pytest.approx(paired.p_value, rel=1e-9)
        right = {k: dict(zip([q["id"] for q in study.questions], RIGHT[k], strict=True)) for k in (a, b)}
        only_a = [q for q, ok in right[a].items() if ok and not right[b][q]]
        only_b = [q for q, ok in right[b].items() if ok and not right[a][q]]
        assert [tr.attrs["data-id"] for tr in dom.find("tr", within="only-a")] == only_a
        assert [tr.attrs["data-id"] for tr in dom.find("tr", within="only-b")] == only_b
        assert (dom.text_of("only-a-count"), dom.text_of("only-b-count")) == (
            str(len(only_a)),
            str(len(only_b)),
        )
    dom = Dom(chromium(study.page.file, "#compare=a,d", "--dump-dom"))
    assert "did not answer the same questions" in dom.text_of("compare-message")
    assert len(dom.find("tr", within="compare-counts")) == 1  # the header only


def test_a_question_holding_html_renders_as_text(study, chromium):
    dom = Dom(chromium(study.page.file, "#run=a&q=pwned", "--dump-dom"))
    (row,) = question_rows(dom)
    assert row.attrs["data-id"] == "evil"
    assert [td.text for td in dom.find("td", within="question-table", **{"class": "question"})] == [EVIL]
    assert not dom.find("img", within="question-table", src="x") and not dom.find(
        "script", within="questions"
    )
    assert dom.find("title")[0].text == f"Report: {study.runs}"
    assert "data-pwned" not in dom.find("body")[0].attrs


def test_a_screenshot_shows_the_page(study, chromium, tmp_path):
    shot = tmp_path / "page.png"
    chromium(study.page.file, "#run=a&show=questions", f"--screenshot={shot}", "--window-size=1280,900")
    with Image.open(shot) as image:
        assert image.size == (1280, 900)
        grey = image.convert("L")
        assert ImageStat.Stat(grey).stddev[0] > 20  # not blank
        assert len(grey.getcolors(256 * 256) or []) > 64  # text, table lines and the thumbnails' grey levels

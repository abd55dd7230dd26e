"""`mile app RUNS_DIR`: a local Gradio app over a directory of trained runs (the optional `app` extra).

Ask: pick a run, upload or choose an image, ask a question; it shows every answer the beam search kept, with
its score, and the candidate answers ranked by likelihood. Results: the self-contained HTML report of the runs
(`mile report --html`), in a frame. Everything runs in this process, on the CPU, with the engine's own
inference functions (the answers are those `mile predict` gives).
"""

from __future__ import annotations

import html
import os
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

from mile.engine.build import Session
from mile.engine.inference import beam_answers, load_trained, ranked_answers
from mile.engine.rundir import RunDir
from mile.errors import MileError
from mile.report.collect import collect, relative

SESSIONS_KEPT = 2  # loaded runs held in memory (a mile-small run is about 300 MB)


class AppError(MileError):
    pass


def usable_runs(root: Path) -> dict[str, Path]:
    """Finished runs under `root` that hold their weights (kept records without weights cannot answer), by
    their path relative to `root`."""
    done, _ = collect(root)
    return {relative(r.path, root): r.path for r in done if (r.path / "weights" / "manifest.json").is_file()}


class Sessions:
    """Loaded runs, the most recently used kept."""

    def __init__(self, runs: dict[str, Path]):
        self.runs, self.loaded = runs, OrderedDict()

    def get(self, name: str) -> Session:
        if name not in self.runs:
            raise AppError(f"no run {name!r}; pick one of {sorted(self.runs)}")
        if name not in self.loaded:
            self.loaded[name] = load_trained(RunDir(self.runs[name]))
            while len(self.loaded) > SESSIONS_KEPT:
                self.loaded.popitem(last=False)
        self.loaded.move_to_end(name)
        return self.loaded[name]


def ask(
    sessions: Sessions, run: str, image: str | None, question: str, beams: int, top: int
) -> tuple[list, list]:
    """(beam answers as [answer, score] rows, ranked candidates as [answer, log-likelihood] rows)."""
    if not image:
        raise AppError("upload or choose an image first")
    session = sessions.get(run)
    beam = beam_answers(session, image, [question], int(beams))[0]
    ranked = ranked_answers(session, image, [question], int(top))[0] if top else []
    return [[a, round(s, 4)] for a, s in beam], [[a, round(s, 4)] for a, s in ranked]


def report_page(root: Path, report: Path | None) -> Path:
    """The HTML report to show: `report` when given, else one written for the runs under `root` into a
    temporary folder (the runs directory is not written to)."""
    if report is not None:
        if not report.is_file():
            raise AppError(f"--report {report}: no such file (write one with mile report RUNS --html FILE)")
        return report
    from mile.report import write_report
    from mile.report.html import write_html

    out = Path(tempfile.mkdtemp(prefix="mile-app-"))
    return write_html(write_report(root, out), root, out / "report.html").file


def report_frame(page: Path) -> str:
    """The HTML report in an iframe (its scripts run there, as in a browser)."""
    text = html.escape(page.read_text(encoding="utf-8"), quote=True)
    return f'<iframe srcdoc="{text}" style="width:100%;height:80vh;border:0"></iframe>'


def build_app(root: Path, report: Path | None = None) -> Any:
    """The Gradio Blocks app over the runs under `root` (`report`: an HTML report to show under Results;
    default: one made for these runs)."""
    # Gradio reports usage to its makers unless told not to; a tool for medical images should send nothing
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio as gr
    except ImportError:
        raise AppError('mile app needs Gradio: pip install -e ".[app]"') from None
    runs = usable_runs(root)
    if not runs:
        raise AppError(f"{root} holds no finished run with its weights (weights/manifest.json)")
    sessions = Sessions(runs)
    names = sorted(runs)
    page = report_page(root, report)

    def answer_fn(run: str, image: str | None, question: str, beams: float, top: float):
        try:
            return ask(sessions, run, image, question, int(beams), int(top))
        except MileError as exc:  # bad input: say what is wrong in the app, not as a traceback
            raise gr.Error(str(exc)) from None

    with gr.Blocks(title="mile-vqa") as app:
        gr.Markdown(f"# mile-vqa\n{len(names)} run(s) under `{root}`")
        with gr.Tab("Ask"):
            with gr.Row():
                with gr.Column():
                    run = gr.Dropdown(names, value=names[0], label="run")
                    image = gr.Image(type="filepath", label="image", sources=["upload", "clipboard"])
                    question = gr.Textbox(label="question", placeholder="Is there a fracture?")
                    with gr.Row():
                        beams = gr.Slider(1, 8, value=3, step=1, label="beams")
                        top = gr.Slider(0, 20, value=5, step=1, label="ranked candidates")
                    go = gr.Button("Answer", variant="primary")
                with gr.Column():
                    beam_table = gr.Dataframe(headers=["answer", "score (nats / token)"], label="beam search")
                    rank_table = gr.Dataframe(headers=["answer", "log-likelihood (nats)"], label="ranked")
            go.click(
                answer_fn, [run, image, question, beams, top], [beam_table, rank_table], api_name="answer"
            )
            question.submit(answer_fn, [run, image, question, beams, top], [beam_table, rank_table])
        with gr.Tab("Results"):
            gr.HTML(report_frame(page))
    return app


def launch(root: Path, host: str, port: int, report: Path | None = None) -> None:
    build_app(root, report).launch(server_name=host, server_port=port, share=False)

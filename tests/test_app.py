"""`mile app`: the Gradio app answers through its HTTP API exactly as the engine does, refuses what it cannot use,
and renders in a headless browser."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

gradio = pytest.importorskip("gradio")  # part of the test extra; an install without it has no app
from gradio_client import Client, handle_file  # noqa: E402

from mile.app import AppError, build_app, report_frame, report_page, usable_runs  # noqa: E402
from mile.engine.inference import beam_answers, load_trained, ranked_answers  # noqa: E402
from mile.engine.rundir import RunDir  # noqa: E402

CONFIG = """
model: {size: tiny, image_size: 32}
plan: {vision: frozen, text_encoder: full, text_decoder: full}
data: {dataset: demo, limit: 96}
train: {epochs: 1, batch_size: 8, lr: 0.003, seed: 0}
eval: {batch_size: 32, num_beams: 3, max_new_tokens: 4}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    cfg = root / "c.yaml"
    cfg.write_text(CONFIG)
    cmd = [sys.executable, "-m", "mile", "train", str(cfg), f"run.output_dir={root}", "run.name=tiny"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    record = root / "record"  # a kept record: a done run without weights, which cannot answer
    shutil.copytree(root / "tiny", record, ignore=shutil.ignore_patterns("weights", "checkpoints", "tb"))
    return root


@pytest.fixture(scope="module")
def served(runs):
    port = _free_port()
    app = build_app(runs)
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    app.close()


def _image() -> str:
    images = Path(__file__).parents[1] / "mile" / "resources" / "demo" / "vqa_rad" / "images"
    return str(sorted(images.iterdir())[0])


def test_only_runs_with_weights_are_offered(runs):
    assert list(usable_runs(runs)) == ["tiny"]
    with pytest.raises(AppError, match="no finished run with its weights"):
        build_app(runs / "record")


def test_results_show_a_report_of_the_runs_written_elsewhere(runs):
    before = sorted(p.name for p in runs.iterdir())
    page = report_page(runs, None)
    assert runs not in page.parents and sorted(p.name for p in runs.iterdir()) == before
    text = page.read_text()
    assert "tiny" in text and "data:image/jpeg;base64," in text  # the run's questions, with thumbnails
    frame = report_frame(page)
    assert frame.startswith('<iframe srcdoc="') and frame.count('"') == 4  # the page's own quotes escaped
    with pytest.raises(AppError, match="no such file"):
        report_page(runs, runs / "missing.html")


def test_the_api_answers_as_the_engine_does(runs, served):
    question = "Is there a fracture?"
    beams, ranked = Client(served, verbose=False).predict(
        "tiny", handle_file(_image()), question, 3, 4, api_name="/answer"
    )
    session = load_trained(RunDir(runs / "tiny"))
    want_beams = beam_answers(session, _image(), [question], 3)[0]
    want_ranked = ranked_answers(session, _image(), [question], 4)[0]
    rows = [[r[0], float(r[1])] for r in beams["data"]]
    assert [r[0] for r in rows] == [a for a, _ in want_beams] and len(rows) >= 2
    assert [r[1] for r in rows] == pytest.approx([s for _, s in want_beams], abs=1e-4)
    got = [[r[0], float(r[1])] for r in ranked["data"]]
    assert [r[0] for r in got] == [a for a, _ in want_ranked] and len(got) == 4
    assert [r[1] for r in got] == pytest.approx([s for _, s in want_ranked], abs=1e-4)


def test_bad_input_is_an_error_message_not_a_crash(served):
    client = Client(served, verbose=False)
    with pytest.raises(Exception, match="blank"):
        client.predict("tiny", handle_file(_image()), "   ", 3, 0, api_name="/answer")
    with pytest.raises(Exception, match="upload or choose an image"):
        client.predict("tiny", None, "Is there a mass?", 3, 0, api_name="/answer")


def test_renders_in_a_headless_browser(served, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs Debian's chromium package")
        pytest.skip("chromium not installed")
    shot = tmp_path / "app.png"
    cmd = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--virtual-time-budget=15000", "--window-size=1280,900", f"--screenshot={shot}", served]  # fmt: skip
    subprocess.run(cmd, capture_output=True, timeout=120, check=True)
    dom = subprocess.run(
        [*cmd[:5], "--dump-dom", served], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert "Answer" in dom and "ranked candidates" in dom and "beam search" in dom  # rendered by the app's JS
    from PIL import Image, ImageStat

    with Image.open(shot) as img:
        assert img.size == (1280, 900)
        assert max(ImageStat.Stat(img.convert("L")).stddev) > 5  # not a blank page

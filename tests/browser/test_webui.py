"""`tuneforge webui` in a real headless chromium, as a user meets it: the page in English and Chinese,
mistakes worded as the CLI words them, a run started (once), watched, found again after a reload and
after a server restart, stopped with a checkpoint; a run to completion; two runs compared; a chat
with the result; a benchmark; an export; a wrong password. The tests follow one user's session in
order (one server, one browser page); a screenshot of each tab lands in tests/browser/artifacts/.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from browser.harness import ARGS, ARTIFACTS, CHROMIUM, Server, kill_runs, timings

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SLOW = 240_000  # ms: a `tuneforge train` process imports torch and transformers first (2 shared cores)


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.is_file():
        message = f"{CHROMIUM} is missing: `make browser` installs it (apt-get install chromium fonts-wqy-microhei)"
        if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def session(chromium, tmp_path_factory, tiny_path):
    """One server on a fresh output root, one page; every run killed at the end."""
    folder = tmp_path_factory.mktemp("webui")
    server = Server(folder, folder / "saves").start()
    timings("server start to page answering (s)", server.seconds)
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.set_default_timeout(60_000)
    state = {"server": server, "page": page, "requests": requests, "folder": folder, "started": time.perf_counter()}
    yield state
    timings("browser suite (s)", time.perf_counter() - state["started"])
    page.close()
    state["server"].stop()
    kill_runs(folder / "saves")


def open_page(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#tab-train-button")
    page.wait_for_timeout(1500)  # the load event fills the language, the watched run and the output folders


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def tab(page, name: str) -> None:
    page.click(f"#tab-{name}-button")
    page.wait_for_timeout(300)


def pick(page, elem_id: str, value: str) -> None:
    """Type into a dropdown (custom values allowed) and confirm, as a user does."""
    box = page.locator(f"#{elem_id} input").first
    box.click()
    box.fill(value)
    box.press("Enter")
    page.wait_for_timeout(300)


def fill(page, elem_id: str, value: str) -> None:
    box = page.locator(f"#{elem_id} input, #{elem_id} textarea").first
    box.fill(value)
    box.press("Tab")


def clear_dropdown(page, elem_id: str) -> None:
    remove = page.locator(f"#{elem_id} .token-remove, #{elem_id} [aria-label='Remove']")
    while remove.count():
        remove.first.click()
        page.wait_for_timeout(100)


def message(page, elem_id: str = "train-message") -> str:
    return page.locator(f"#{elem_id}").inner_text()


def wait_text(page, elem_id: str, pattern: str, timeout: int = 60_000) -> str:
    """Wait until the element's text matches; return it."""
    page.wait_for_function("([id, pattern]) => new RegExp(pattern).test(document.getElementById(id)?.innerText || '')",
                           arg=[elem_id, pattern], timeout=timeout)
    return page.locator(f"#{elem_id}").inner_text()


def runs_under(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("webui_run.json"))


def run_info(folder: Path) -> dict:
    return json.loads((folder / "webui_run.json").read_text())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.is_file() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def choose_tiny(page) -> None:
    """Pick the tiny model; wait for the page to fill its template (and a fresh output folder)."""
    pick(page, "top-model_name_or_path", "tuneforge/tiny")
    page.wait_for_function("() => document.querySelector('#top-template input')?.value === 'qwen3_nothink'")


def set_run(page, output_dir: Path, steps: int, **keys: str) -> None:
    """The tiny model and the identity dataset (named 小锻), `steps` steps logged each step."""
    choose_tiny(page)
    clear_dropdown(page, "train-dataset")
    pick(page, "train-dataset", "identity")
    fill(page, "train-identity_name", "小锻")
    fill(page, "train-identity_author", "Tuneforge Lab")
    fill(page, "train-max_steps", str(steps))
    fill(page, "train-logging_steps", "1")
    fill(page, "train-cutoff_len", "128")
    for key, value in keys.items():
        fill(page, f"train-{key}", value)
    fill(page, "train-output_dir", str(output_dir))


def test_a_new_user_sees_the_form_in_english_and_nothing_comes_from_the_internet(session):
    page = session["page"]
    open_page(page, session["server"].url)
    assert "Learning rate · learning_rate" in page.locator("#train-learning_rate").inner_text()
    assert "Choose a model" in page.locator("#train-estimate").inner_text()
    shot(page, "1-train-new-user")
    outside = [url for url in session["requests"] if not url.startswith("http://127.0.0.1")]
    assert not outside, outside


def test_switch_to_chinese_and_the_choice_is_remembered(session):
    page = session["page"]
    page.click("#lang label:has-text('中文')")
    wait_text(page, "train-learning_rate", "学习率 · learning_rate")
    assert page.locator("#tab-train-button").inner_text() == "训练"
    assert "AdamW 的峰值学习率" in page.locator("#train-learning_rate").inner_text()
    open_page(page, session["server"].url)
    wait_text(page, "train-learning_rate", "学习率")  # the page remembers the language
    shot(page, "2-train-chinese")
    page.click("#lang label:has-text('English')")
    wait_text(page, "train-learning_rate", "Learning rate")


@pytest.mark.parametrize("mistake,words", [
    ("no model", "'model_name_or_path' is required"),
    ("no dataset", "'dataset' is required for training"),
    ("dataset not in the registry", "dataset 'nope' is not built in"),
    ("output_dir holds another run", "is not empty; set overwrite_output_dir"),
    ("wrong type", "'max_samples': Input should be a valid integer"),
])
def test_a_mistake_shows_the_cli_words_and_starts_nothing(session, mistake, words):
    page, root = session["page"], session["server"].root
    open_page(page, session["server"].url)
    out = session["folder"] / "bad" / mistake.replace(" ", "_")
    if mistake != "no model":
        choose_tiny(page)
    if mistake not in ("no model", "no dataset"):
        pick(page, "train-dataset", "nope" if mistake == "dataset not in the registry" else "identity")
        fill(page, "train-identity_author", "Lab")
    if mistake == "output_dir holds another run":
        out.mkdir(parents=True)
        (out / "trainer_log.jsonl").write_text('{"current_steps": 1, "loss": 1.0}\n')
    if mistake == "wrong type":
        fill(page, "train-max_samples", "abc")
    fill(page, "train-output_dir", str(out))
    page.click("#train-start")
    text = wait_text(page, "train-message", "error")
    assert text.startswith("error: ") and words in text, text
    assert runs_under(root) == [] and not (out / "webui_run.json").exists()


def test_start_twice_gives_one_run_with_progress_and_a_loss_curve(session):
    page, root = session["page"], session["server"].root
    open_page(page, session["server"].url)
    session["long"] = long_run = root / "tiny" / "lora" / "long"
    set_run(page, long_run, 3000, save_steps="100000")
    page.click("#train-preview_data")
    preview = wait_text(page, "train-preview", "dataset identity: 80 examples", SLOW)
    assert "小锻" in preview and "trained tokens" in preview
    wait_text(page, "train-estimate", "predicted peak", SLOW)  # the memory estimate followed the choices
    page.click("#train-preview_command")
    wait_text(page, "train-message", "passes every check", SLOW)
    assert page.locator("#train-command input, #train-command textarea").first.input_value() == (
        f"tuneforge train {long_run}/webui_config.yaml")
    page.locator("#train-start").dblclick()
    wait_text(page, "train-progress", r"loss \d+\.\d+ \(([3-9]|\d\d+) points\)", SLOW)
    assert runs_under(root) == [long_run]  # two clicks, one run
    assert "ETA" in message(page, "train-progress")
    wait_text(page, "train-progress", r"it/s|s/it", SLOW)  # the speed (from the bar, or once a second passed)
    # the views refresh on a timer: wait for the curve to be drawn and the log to show the run's first line
    page.wait_for_function("() => document.querySelectorAll("
                           "'#train-plot-loss svg path, #train-plot-loss canvas').length > 0", timeout=SLOW)
    page.wait_for_function("() => (document.querySelector('#train-log textarea')?.value || '')"
                           ".includes('tuneforge: lora on tuneforge/tiny')", timeout=SLOW)
    wait_text(page, "train-progress", r"\((1[2-9]|[2-9]\d|\d\d\d+) points\)", SLOW)
    shot(page, "3-train-running")  # docs/webui.png is a copy of this one


def test_a_reload_shows_the_same_run(session):
    page = session["page"]
    open_page(page, session["server"].url)
    assert str(session["long"]) in wait_text(page, "train-run", "running")
    wait_text(page, "train-progress", r"\(([2-9]\d|\d\d\d+) points\)", SLOW)  # the curve keeps growing
    shot(page, "3-train-after-reload")


def test_the_run_outlives_a_restart_of_the_server_and_reappears(session):
    page, long_run = session["page"], session["long"]
    pid = run_info(long_run)["pid"]
    session["server"].stop()
    steps = lambda: len((long_run / "trainer_log.jsonl").read_text().splitlines())  # noqa: E731
    seen = steps()
    session["server"] = Server(session["folder"], session["server"].root).start()
    deadline = time.time() + 120
    while steps() <= seen and time.time() < deadline:
        time.sleep(0.5)
    assert alive(pid) and steps() > seen  # it kept training while no server was up
    open_page(page, session["server"].url)
    assert str(long_run) in wait_text(page, "train-run", "running")
    tab(page, "runs")
    wait_text(page, "runs-table", "long", 30_000)


def test_stop_saves_a_checkpoint_and_ends_the_process(session):
    page, long_run = session["page"], session["long"]
    tab(page, "train")
    pid = run_info(long_run)["pid"]
    page.click("#train-stop")
    wait_text(page, "train-message", "Stopping")
    wait_text(page, "train-run", "stopped", SLOW)
    assert not alive(pid)
    assert json.loads((long_run / "webui_exit.json").read_text())["code"] == 75
    checkpoints = [p for p in long_run.glob("checkpoint-*") if p.is_dir()]
    assert checkpoints and (checkpoints[0] / "adapter_model.safetensors").is_file()
    assert "resume with" in page.locator("#train-log textarea").first.input_value()


def test_a_run_to_completion(session):
    page, root = session["page"], session["server"].root
    open_page(page, session["server"].url)
    session["short"] = short = root / "tiny" / "lora" / "short"
    set_run(page, short, 24, learning_rate="0.005", save_steps="100000")
    page.click("#train-start")
    wait_text(page, "train-message", "Started the run")
    wait_text(page, "train-run", "finished", SLOW)
    wait_text(page, "train-progress", "24/24")
    assert (short / "adapter_model.safetensors").is_file()
    assert json.loads((short / "webui_exit.json").read_text())["code"] == 0


def test_compare_two_runs(session):
    page = session["page"]
    tab(page, "runs")
    page.click("#runs-refresh")
    wait_text(page, "runs-table", r"short\s+finished")
    assert re.search(r"long\s+stopped", message(page, "runs-table"))
    for name in ("long", "short"):
        page.locator("#runs-pick label").filter(has_text=re.compile(rf"/{name}$")).click()
    page.click("#runs-compare")
    diff = wait_text(page, "runs-compare-diff", "max_steps")
    assert "max_steps: 3000" in wait_text(page, "runs-config", "max_steps: 24")  # each picked run's YAML
    assert "3000" in diff and "24" in diff and "learning_rate" in diff
    assert page.locator("#runs-compare-plot svg path, #runs-compare-plot canvas").count() > 0
    shot(page, "4-runs-compare")


def test_chat_with_the_result_streams_an_answer(session):
    page = session["page"]
    labels = page.locator("#runs-pick label")
    for index in range(labels.count()):  # only the finished run stays picked
        box = labels.nth(index).locator("input")
        if box.is_checked() != labels.nth(index).inner_text().endswith("/short"):
            labels.nth(index).click()
    page.click("#runs-chat_with")  # one click: the run's adapter in the top bar, the Chat tab, the model loaded
    page.wait_for_selector("#chat-load", state="visible")
    assert page.locator("#top-adapter_name_or_path").inner_text().count("short") >= 1
    wait_text(page, "chat-status", "Loaded tuneforge/tiny", SLOW)
    fill(page, "chat-max_new_tokens", "40")
    page.locator("#chat-do_sample input").uncheck()
    page.evaluate("""() => { window.seen = new Set();
        window.watcher = setInterval(() => { const bot = document.querySelectorAll('#chat-bot .bot');
            if (bot.length) window.seen.add(bot[bot.length - 1].innerText.length); }, 15); }""")
    fill(page, "chat-input", "你是谁？")
    page.click("#chat-send")
    page.wait_for_function("() => document.querySelectorAll('#chat-bot .bot').length > 0", timeout=SLOW)
    answer, steady, deadline = None, time.time(), time.time() + 120
    while time.time() - steady < 3 and time.time() < deadline:  # until the answer stops growing
        text = page.locator("#chat-bot .bot").last.inner_text()
        if text != answer:
            answer, steady = text, time.time()
        page.wait_for_timeout(200)
    lengths = page.evaluate("() => { clearInterval(window.watcher); return Array.from(window.seen); }")
    assert answer.strip(), "no answer"
    assert len([n for n in lengths if n > 0]) >= 2, lengths  # it grew piece by piece: streamed
    shot(page, "5-chat")


def test_benchmark_the_result(session):
    page = session["page"]
    tab(page, "evaluate")
    fill(page, "evaluate-task", "tinybench_test")
    fill(page, "evaluate-n_shot", "0")
    page.click("#evaluate-benchmark")
    table = wait_text(page, "evaluate-result", "Average", SLOW)
    assert "STEM" in table or "Other" in table
    shot(page, "6-evaluate")


def test_export_writes_the_files(session):
    page = session["page"]
    tab(page, "export")
    out = session["folder"] / "导出"
    fill(page, "export-export_dir", str(out))
    page.click("#export-run")
    listing = wait_text(page, "export-result", "model.safetensors", SLOW)
    assert "tokenizer.json" in listing and "config.json" in listing
    assert (out / "model.safetensors").is_file()
    assert "exported" in page.locator("#export-log textarea").first.input_value()
    shot(page, "7-export")


def test_a_wrong_password_gets_no_page(chromium, tmp_path):
    server = Server(tmp_path, tmp_path / "saves", ("--auth", "admin:s3cret:pass")).start()
    try:
        for password, shown in (("wrong", "text=/incorrect/i"), ("s3cret:pass", "#tab-train-button")):
            page = chromium.new_page()
            page.set_default_timeout(90_000)
            page.goto(server.url)
            page.locator("input[type=text]").first.fill("admin")
            page.locator("input[type=password]").fill(password)
            page.locator("button").filter(has_text=re.compile("login", re.I)).click()
            page.wait_for_selector(shown)
            if password == "wrong":
                page.wait_for_timeout(1000)
                assert page.locator("#tab-train-button, #top-bar").count() == 0  # no page behind the login
            page.close()
    finally:
        server.stop()

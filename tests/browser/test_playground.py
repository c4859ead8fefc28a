"""The page at / in headless Chromium, against live Gunicorn with the real Kokoro and tiny analysis models.

The tests run in order on one page and one server (cheap: one Chromium, one Gunicorn); each waits
on conditions in the page (elements, states, values), never on time.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests

from tests.conftest import LiveServer, free_port

API_KEY = "browser-test-key"
ADMIN_KEY = "browser-admin-key"
RENDER_WAIT_S = 600  # one render batch on random weights: ~20 s per frame on 2 loaded cores
WAIT_S = 120  # upper bound for a model build + request on two loaded cores; conditions end waits early


@pytest.fixture(scope="module")
def page_server(whisper_checkpoint, ast_checkpoint, sadtalker_checkpoints, face_model_dir,
                tmp_path_factory) -> Iterator[LiveServer]:
    """Gunicorn with the real packaged Kokoro int8 ONNX, the tiny random Whisper and AST (torch), and our
    SadTalker on random weights (the integration tests' session fixtures: built once per run)."""
    server = LiveServer({"API_KEYS": API_KEY, "ADMIN_API_KEYS": ADMIN_KEY, "MEMORY_BUDGET_MB": "4096", "HF_HUB_OFFLINE": "1",
                         "WHISPER_MODEL": str(whisper_checkpoint), "AI_VOICE_MODEL": str(ast_checkpoint),
                         "LANGUAGE_BACKEND": "torch", "AI_VOICE_BACKEND": "torch",
                         "INFERENCE_THREADS": "1", "TIMEOUT": "300",
                         "TTS_PIECE_TOKENS": "16", "SADTALKER_CHECKPOINT_DIR": str(sadtalker_checkpoints),
                         "FACE_MODEL_DIR": str(face_model_dir), "ANIMATION_BATCH_SIZE": "2",
                         "JOBS_DIR": str(tmp_path_factory.mktemp("jobs"))}, free_port())
    try:
        server.wait_ready("/ready", timeout_s=120)
        yield server
    finally:
        server.stop()


def wait(browser, condition, message: str, timeout_s: float = WAIT_S):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(browser.driver, timeout_s, poll_frequency=0.1).until(lambda d: condition(d), message)


def by_testid(browser, testid: str, within: str = "body"):
    from selenium.webdriver.common.by import By
    return browser.driver.find_element(By.CSS_SELECTOR, f'{within} [data-testid="{testid}"]')


def js(browser, script: str, *args):
    return browser.driver.execute_script(script, *args)


@pytest.fixture(scope="module")
def page(browser, page_server):
    browser.driver.get(page_server.url + "/")
    # Without a key the voice list is refused, and the page says so in a sentence.
    error = by_testid(browser, "error-message", "#speak")
    wait(browser, lambda d: error.is_displayed(), "no error while the voice list was refused", timeout_s=30)
    assert "API key" in error.text
    by_testid(browser, "api-key").send_keys(API_KEY)
    browser.driver.refresh()  # the key stays in the tab's sessionStorage
    wait(browser, lambda d: js(browser, "return document.querySelectorAll('#tts-voice option').length") > 0,
         "the voice list never filled", timeout_s=30)
    return browser


def test_page_is_served_with_a_strict_policy(page_server) -> None:
    response = requests.get(page_server.url + "/", timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "unsafe" not in policy
    for asset in ("/ui/app.js", "/ui/style.css"):
        assert requests.get(page_server.url + asset, timeout=10).status_code == 200


def test_voices_and_formats_come_from_the_api(page, page_server) -> None:
    voices = requests.get(page_server.url + "/v1/audio/voices", headers={"x-api-key": API_KEY}, timeout=10).json()
    values = js(page, "return [...document.querySelectorAll('#tts-voice option')].map(o => o.value)")
    assert set(values) == {v["name"] for v in voices["voices"]} | {a["name"] for a in voices["aliases"]}
    assert js(page, "return document.getElementById('tts-voice').value") == voices["default"]
    formats = js(page, "return [...document.querySelectorAll('#tts-format option')].map(o => o.value)")
    assert "mp3" in formats and "wav" in formats
    assert js(page, "return sessionStorage.getItem('speech-api.api-key')") == API_KEY


def test_memory_panel_changes_after_a_model_loads(page) -> None:
    row = 'tr[data-testid="model-row"][data-model="language"]'
    wait(page, lambda d: js(page, f"return document.querySelector('{row}') !== null"), "no model rows")
    before = wait(page, lambda d: re.fullmatch(r"[\d.]+ MB", by_testid(page, "memory-used").text),
                  "memory-used never showed a number").group(0)
    assert js(page, f"return document.querySelector('{row}').dataset.state") == "not loaded"
    page.screenshot("operator-before-load")

    by_testid(page, "model-load", row).click()  # the admin key field is empty: the inference key is refused
    error = by_testid(page, "error-message", "#operator")
    wait(page, lambda d: error.is_displayed(), "loading with an inference key showed no error")
    assert re.fullmatch(r"[A-Z][^{}]+\.", error.text), error.text
    by_testid(page, "admin-key").send_keys(ADMIN_KEY)
    by_testid(page, "model-load", row).click()
    wait(page, lambda d: js(page, f"return document.querySelector('{row}').dataset.state") == "loaded",
         "the language model never showed as loaded")
    measured = js(page, f"return document.querySelector('{row} td:nth-child(3)').textContent")
    assert float(measured) > 0
    wait(page, lambda d: by_testid(page, "memory-used").text != before, "memory-used did not change after the load")
    wait(page, lambda d: "loaded language" in by_testid(page, "events").text, "the load is not in the events")
    assert js(page, "return document.querySelectorAll('#memory-chart polyline').length") == 1
    page.screenshot("operator-after-load")


def test_speech_plays_from_a_stream_with_a_duration(page) -> None:
    text = by_testid(page, "tts-text")
    text.clear()
    text.send_keys("One short sentence. And a second.")
    by_testid(page, "tts-submit").click()
    audio = '[data-testid="tts-audio"]'
    wait(page, lambda d: js(page, f"const a = document.querySelector('{audio}'); "
                                  "return a.dataset.chunks && a.readyState >= 1 && isFinite(a.duration) && a.duration > 0.5"),
         "the audio element never got a playable source with a duration")  # dataset.chunks: the stream ended
    assert js(page, f"return document.querySelector('{audio}').dataset.mode") == "stream"  # MediaSource, MP3
    # TTS_PIECE_TOKENS=16: three pieces, each sent as soon as it is synthesised. Playback began when the
    # first had arrived, while the server was still synthesising the others.
    wait(page, lambda d: js(page, f"return document.querySelector('{audio}').dataset.playingAfterChunks"),
         "the audio never started playing")
    chunks, playing_after = js(page, f"const a = document.querySelector('{audio}'); "
                                     "return [Number(a.dataset.chunks), Number(a.dataset.playingAfterChunks)]")
    assert chunks >= 2 and playing_after < chunks, (chunks, playing_after)
    link = by_testid(page, "tts-download")
    assert link.get_attribute("href").startswith("blob:") and link.get_attribute("download") == "speech.mp3"
    assert by_testid(page, "error-message", "#speak").get_attribute("hidden") is not None
    page.screenshot("speak-mp3")


def test_whole_wav_speech_plays(page) -> None:
    from selenium.webdriver.support.ui import Select
    Select(by_testid(page, "tts-format")).select_by_value("wav")
    text = by_testid(page, "tts-text")
    text.clear()
    text.send_keys("Whole.")
    js(page, "document.querySelector('[data-testid=tts-audio]').removeAttribute('src')")
    by_testid(page, "tts-submit").click()
    wait(page, lambda d: js(page, "const a = document.querySelector('[data-testid=tts-audio]'); "
                                  "return a.dataset.mode === 'whole' && a.readyState >= 1 && a.duration > 0.3"),  # "Whole." is ~0.5 s of speech
         "the WAV never became playable")
    wait(page, lambda d: by_testid(page, "tts-download").get_attribute("download") == "speech.wav",
         "the download link is not the WAV")


def test_words_are_highlighted_as_they_are_spoken(page) -> None:
    from selenium.webdriver.support.ui import Select
    Select(by_testid(page, "tts-format")).select_by_value("wav")
    wait(page, lambda d: by_testid(page, "tts-captions").is_displayed(), "no captions option (the API has captions)")
    by_testid(page, "tts-captions").click()
    text = by_testid(page, "tts-text")
    text.clear()
    text.send_keys("Come and sit down.")
    by_testid(page, "tts-submit").click()
    words = "return [...document.querySelectorAll('[data-testid=tts-words] span')].map((s) => s.textContent)"
    wait(page, lambda d: js(page, words) == ["Come", "and", "sit", "down"], "the spoken words were not shown")
    wait(page, lambda d: js(page, "return document.querySelector('[data-testid=tts-audio]').readyState") >= 1,
         "the captioned audio never became playable")
    # Seek into the third word (its time from the same answer the page got): that word, and only it, is lit.
    lit = "return [...document.querySelectorAll('[data-testid=tts-words] span.spoken-now')].map((s) => s.textContent)"
    js(page, "const a = document.querySelector('[data-testid=tts-audio]'); a.pause(); "
             "a.currentTime = arguments[0]", float(js(page, "return document.querySelectorAll('[data-testid=tts-words] span')[2].dataset.start")) + 0.01)
    wait(page, lambda d: js(page, lit) == ["sit"], "the word being said is not highlighted")
    by_testid(page, "tts-captions").click()  # the later tests speak without captions


def test_empty_text_shows_the_error_as_a_sentence(page, page_server) -> None:
    by_testid(page, "tts-text").clear()
    by_testid(page, "tts-submit").click()
    error = by_testid(page, "error-message", "#speak")
    wait(page, lambda d: error.is_displayed(), "no error was shown for an empty text")
    message = error.text
    assert re.fullmatch(r"[A-Z][^{}\[\]\"]+[.!?]", message), message  # a sentence, not raw JSON
    envelope = requests.post(page_server.url + "/api/tts", json={"text": ""}, headers={"x-api-key": API_KEY},
                             timeout=10).json()["error"]["message"]
    assert message.rstrip(".").lower() == envelope.rstrip(".").lower()  # the envelope's message, as a sentence
    page.screenshot("speak-error")


def test_uploaded_wav_renders_the_charts(page, speech_wav, tmp_path) -> None:
    path = tmp_path / "speech.wav"
    path.write_bytes(speech_wav)
    by_testid(page, "analysis-file").send_keys(str(path))
    by_testid(page, "analysis-submit").click()
    wait(page, lambda d: js(page, "return document.querySelectorAll('#language-chart rect.bar').length") > 0,
         "no language bars were drawn")
    widths = js(page, "return [...document.querySelectorAll('#language-chart rect.bar')].map(r => r.getBBox().width)")
    assert all(w > 0 for w in widths) and widths == sorted(widths, reverse=True)  # top probabilities first
    assert "German" in by_testid(page, "language-chart").text  # the tiny Whisper favours 'de'
    wait(page, lambda d: js(page, "return document.querySelector('#ai-voice-gauge .gauge-track') !== null"),
         "no AI-voice gauge was drawn")
    assert js(page, "return document.querySelectorAll('#ai-voice-gauge .threshold').length") == 1
    # ~3 s of speech in the tiny AST's 2.56 s windows: two windows, a line chart of their scores.
    assert js(page, "return document.querySelectorAll('#window-chart polyline').length") == 1
    assert by_testid(page, "window-chart").is_displayed()
    assert not js(page, "return [...document.querySelectorAll('#analyse [data-testid=error-message]')]"
                        ".some(e => !e.hidden)")
    page.screenshot("analyse")


def test_a_recording_from_the_microphone_is_analysed(page) -> None:
    """Chromium's fake microphone (a beep): MediaRecorder's WebM is decoded in the page and sent as WAV."""
    js(page, "document.getElementById('language-chart').replaceChildren()")
    record = by_testid(page, "analysis-record")
    record.click()
    wait(page, lambda d: int(record.get_attribute("data-chunks") or 0) >= 4, "the recorder produced no audio")
    record.click()  # about a second recorded: stop
    wait(page, lambda d: "Recorded" in page.driver.find_element("id", "record-status").text, "the recording never ended")
    assert by_testid(page, "analysis-file").get_attribute("value") == ""  # the recording replaces the file
    by_testid(page, "analysis-submit").click()
    wait(page, lambda d: js(page, "return document.querySelectorAll('#language-chart rect.bar').length") > 0,
         "the recording drew no language bars")
    assert not js(page, "return [...document.querySelectorAll('#analyse [data-testid=error-message]')]"
                        ".some(e => !e.hidden)")


def test_animate_panel_is_shown_once_the_server_has_the_endpoint(page, page_server) -> None:
    document = requests.get(page_server.url + "/openapi.json", timeout=10).json()
    operator = requests.get(page_server.url + "/api/operator", timeout=10).json()
    animation = next((m for m in operator["models"] if m["name"] == "animation"), None)
    has_animate = "/api/animate" in document["paths"] and animation is not None and animation["state"] != "disabled"
    wait(page, lambda d: js(page, "return document.getElementById('animate').hidden") is (not has_animate),
         "the Animate panel is not shown exactly when the server animates")
    if not has_animate:
        pytest.skip("this server has no /api/animate: the panel stays hidden")


def _animate(page, image, audio) -> None:
    for testid, path in (("animate-image", image), ("animate-audio", audio)):
        field = by_testid(page, testid)
        field.clear()
        field.send_keys(str(path))
    by_testid(page, "animate-submit").click()


@pytest.fixture
def animation_inputs(test_images, tmp_path):
    import soundfile

    from scripts.checkpoints.sadtalker import speech_like
    paths = {"portrait": tmp_path / "astronaut.png", "cat": tmp_path / "chelsea.png", "speech": tmp_path / "speech.wav"}
    paths["portrait"].write_bytes(test_images["astronaut"])
    paths["cat"].write_bytes(test_images["chelsea"])
    soundfile.write(paths["speech"], speech_like(0.08), 16_000, subtype="PCM_16")  # 2 frames: one render batch
    return paths


def test_animate_panel_says_why_a_job_failed(page, animation_inputs) -> None:
    """A cat (no human face): the job is queued, polled through /api/jobs/<id>, fails in its first stage."""
    if js(page, "return document.getElementById('animate').hidden"):
        pytest.skip("this server has no /api/animate")
    _animate(page, animation_inputs["cat"], animation_inputs["speech"])
    error = by_testid(page, "error-message", "#animate")
    wait(page, lambda d: error.is_displayed(), "the failed job showed no error", timeout_s=RENDER_WAIT_S)
    assert re.fullmatch(r"[A-Z][^{}]+[.!?]", error.text) and "face" in error.text.lower(), error.text


@pytest.mark.slow  # one render on random weights (~90 s on 2 loaded cores); tests/integration renders by HTTP
def test_animate_panel_follows_a_job_to_a_playing_video(page, animation_inputs) -> None:
    """A portrait and 2 frames of speech: progress from /api/jobs/<id>, then the MP4 plays in the page."""
    if js(page, "return document.getElementById('animate').hidden"):
        pytest.skip("this server has no /api/animate")
    _animate(page, animation_inputs["portrait"], animation_inputs["speech"])
    video = '[data-testid="animate-video"]'
    wait(page, lambda d: js(page, f"const v = document.querySelector('{video}'); "
                                  "return !v.hidden && v.readyState >= 1 && v.duration > 0"),
         "the finished job's video never became playable", timeout_s=RENDER_WAIT_S)
    assert js(page, "return document.querySelector('[data-testid=animate-progress]').value") == 100
    assert not by_testid(page, "error-message", "#animate").is_displayed()
    page.screenshot("animate")


def test_every_control_is_labelled_and_reachable_by_keyboard(page) -> None:
    from selenium.webdriver.common.keys import Keys
    unlabelled = js(page, """return [...document.querySelectorAll('input, select, textarea, button')]
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
        .map(e => e.id || e.outerHTML)""")
    assert unlabelled == []
    by_testid(page, "tts-text").send_keys(Keys.TAB)
    assert js(page, "return document.activeElement.dataset.testid") == "tts-voice"


def test_readable_at_360_px(page) -> None:
    # A phone's viewport (headless Chromium will not make a window narrower than 500 px).
    page.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                {"width": 360, "height": 2400, "deviceScaleFactor": 1, "mobile": True})
    try:
        wait(page, lambda d: js(page, "return window.innerWidth") == 360, "the viewport did not narrow")
        overflow = js(page, "return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow} px at 360 px"
        page.screenshot("narrow-360")
    finally:
        page.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_no_request_left_the_origin(page, page_server) -> None:
    page.collect_logs()
    origin = urlsplit(page_server.url)
    # Network requests only (the browser's own chrome:// pages are not the page's); blob: and data:
    # are made in the page.
    network = [u for u in page.requests if urlsplit(u).scheme in ("http", "https", "ws", "wss", "ftp")]
    assert any(urlsplit(u)[:2] == origin[:2] for u in network)
    assert [u for u in network if urlsplit(u)[:2] != origin[:2]] == []
    assert [u for u in page.requests if urlsplit(u).scheme not in ("http", "https", "blob", "data", "chrome")] == []
    blocked = [e["message"] for e in page.console if "Content Security Policy" in e["message"]]
    assert blocked == []  # nothing the page does needs more than its own policy allows

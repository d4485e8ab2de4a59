"""What participants are told: the rules on the instruction page, config text as
paragraphs, the answer labels, and practice feedback that names the right answer."""

from __future__ import annotations

import html
import re

import test_runner
from conftest import write_study_config
from participants import STAIRCASE, answer, join, session

from study_server.db import db
from study_server.instructions import expected_minutes, paragraphs, seconds
from study_server.studies import create_study
from study_server.studyconfig import StudyConfig, load_config

# Text on pages and in replies, not the database: SQLite is enough here.
db_url = test_runner.db_url


def page_text(app, slug: str = "t") -> str:
    """The runner page's instruction screen as plain text (tags dropped, spaces joined)."""
    page = app.test_client().get(f"/s/{slug}").get_data(as_text=True)
    screen = re.search(r'data-screen="instructions".*?</section>', page, re.S).group(0)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", screen)).split())


def test_paragraphs_reflow_lines_and_escape():
    text = "Thank you for\ntaking part.\n\n  \nWe keep <b>nothing</b> & more.\n"
    assert paragraphs(text) == (
        "<p>Thank you for taking part.</p><p>We keep &lt;b&gt;nothing&lt;/b&gt; &amp; more.</p>"
    )
    assert paragraphs("") == "" and paragraphs("\n\n") == ""


def test_seconds_read_as_people_say_them():
    assert [seconds(ms) for ms in (500, 1000, 1500, 250, 2000)] == [
        "0.5 seconds",
        "1 second",
        "1.5 seconds",
        "0.25 seconds",
        "2 seconds",
    ]


def test_fixed_study_states_keys_exposure_tab_rule_and_length(app, make_study):
    extra = (
        "[timing]\nfixation_ms = 500\nexposure_ms = 500\n"
        '[response]\nreal_key = "d"\nfake_key = "k"\nreal_label = "Photo"\nfake_label = "AI-made"\n'
    )
    make_study(extra=extra)
    text = page_text(app)
    assert "Each image is shown for 0.5 seconds" in text
    assert "each after a small cross" in text
    assert "answer Photo or AI-made" in text and "for Photo and" in text
    assert (
        "If you switch to another tab or window, or leave the page, that image does not count "
        "and is shown again at the end" in text
    )
    assert "There are 27 images, the first 4 for practice" in text
    assert "The study takes about 3 minutes" in text
    assert "changes during the study" not in text and "noise" not in text
    # The labels on every control, and in what the runner script is given.
    page = app.test_client().get("/s/t").get_data(as_text=True)
    assert re.search(r'data-choice="real" disabled>Photo<', page)
    assert re.search(r'data-choice="fake" disabled>AI-made<', page)
    assert page.count('<kbd data-key-label="fake"></kbd> AI-made') == 2  # block screen, trial
    assert '"labels": {"fake": "AI-made", "real": "Photo"}' in page


def test_staircase_study_says_the_display_time_changes(app, make_study):
    timing = "[timing]\nfixation_ms = 0\nmask_ms = 100\nrepeat_invalid = false\n"
    make_study(extra=STAIRCASE.replace("[timing]\n", timing))
    text = page_text(app)
    assert "how long it is shown changes during the study, depending on your answers" in text
    assert "shown for" not in text
    assert "cross" not in text  # fixation_ms = 0: no cross is shown, none is promised
    assert "Then noise covers it for a moment" in text
    assert "answer Real or Fake" in text and "that image does not count." in text
    assert "shown again" not in text  # repeat_invalid = false: no repeat is promised


def test_unlimited_study_and_config_text_as_paragraphs(app, demo_stimuli, tmp_path):
    path = write_study_config(tmp_path, demo_stimuli, extra='[timing]\nmode = "unlimited"\n')
    consent = '"""\nYou may stop\nat any time.\n\nWe store <no> names."""'
    instructions = '"""\nLook closely.\n\nTake\nyour time."""'
    config = path.read_text().replace('"I agree."', f"{consent}\ninstructions = {instructions}")
    path.write_text(config)
    with app.app_context():
        create_study(load_config(path))
        db.session.remove()
    text = page_text(app)
    assert "Each image stays on the screen until you answer" in text
    page = app.test_client().get("/s/t").get_data(as_text=True)
    assert "<p>You may stop at any time.</p><p>We store &lt;no&gt; names.</p>" in page
    assert "<p>Look closely.</p><p>Take your time.</p>" in page


def test_length_estimate():
    config = StudyConfig(slug="s", title="t", stimuli="x", models="all", consent="c")
    # 217 trials of 0.5 s cross + 0.5 s image + 1.5 s answer, 10 practice feedbacks of
    # 0.9 s and 90 s of reading: 641.5 s, so 11 minutes.
    assert expected_minutes(config) == 11


def test_practice_feedback_names_the_answer_main_trials_get_none(app, make_study):
    make_study()
    client = app.test_client()
    token = join(client, client_id="c-1").json["token"]
    trials = session(client, token)["trials"]
    practice = [t for t in trials if t["block"] == "practice"]
    answers = set()
    for trial in practice:
        reply = answer(client, token, trial["id"], choice="real").json
        feedback = reply["feedback"]
        assert feedback["answer"] == ("real" if feedback["correct"] else "fake")
        answers.add(feedback["answer"])
        # The same body again: the same reply.
        again = answer(client, token, trial["id"], choice="real").json
        assert again["feedback"] == feedback
    assert answers == {"real", "fake"}  # half real, half fake
    main = next(t for t in trials if t["block"] == "main")
    assert "feedback" not in answer(client, token, main["id"], choice="fake").json

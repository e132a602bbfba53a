"""The rules of webui/auth.py stated exactly: which passwords are refused and in which words, how
long each throttled login waits, and what the password file and `set-password` say."""
from __future__ import annotations

import base64
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.conftest import ADMIN_PASSWORD, Browser
from webui import auth
from webui.auth import (Credentials, PasswordFile, PasswordFileError, Throttle, first_password,
                        password_problem, set_password_from)


@pytest.mark.parametrize("password, problem", [
    ("Shrt-9chr", "Use at least 10 characters."),
    ("Ten-chars!", None),
    (" Leading-space-pw", "No leading or trailing spaces or line breaks."),
    ("Trailing-space-pw ", "No leading or trailing spaces or line breaks."),
    ("Line-one-pw\nline-two", "No leading or trailing spaces or line breaks."),
    ("Nul-in-the\x00middle", "Use printable characters only: no control characters "
                             "(a browser cannot type them)."),
    ("aaaaaaaaaaaa", "Too easy to guess: use more different characters, not a repeat or a run."),
    ("abababababab", "Too easy to guess: use more different characters, not a repeat or a run."),
    ("abcdefghijkl", "Too easy to guess: use more different characters, not a repeat or a run."),
    ("9876543210", "Too easy to guess: use more different characters, not a repeat or a run."),
    ("abcdefghijkm", None),  # a run but for its last step
    ("Password123", "This is one of the most common passwords; choose another."),
    ("OpenWrt123", "This is one of the most common passwords; choose another."),
])
def test_password_rules_in_the_words_the_admin_reads(password, problem):
    assert password_problem(password) == problem


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_an_address_gets_five_free_tries_then_waits_that_double():
    clock = Clock()
    throttle = Throttle(clock=clock)
    assert [throttle.admit("a") for _ in range(5)] == [0] * 5
    assert throttle.admit("a") == 2, "the sixth waits 2 s"
    clock.now += 1.5
    assert throttle.admit("a") == 1, "half a second left is still a second to wait"
    clock.now += 0.5
    assert throttle.admit("a") == 0  # admitted and counted: six failures now
    assert throttle.admit("a") == 4
    clock.now += 4
    assert throttle.admit("a") == 0
    assert throttle.admit("a") == 8
    assert throttle.admit("b") == 0, "another address is not held up"


def test_the_wait_of_one_address_stops_growing_at_five_minutes():
    clock = Clock()
    throttle = Throttle(clock=clock, overall_free=10**6)
    waits = []
    while len(waits) < 11:
        wait = throttle.admit("a")
        if wait:
            waits.append(wait)
            clock.now += wait
    assert waits == [2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]


def test_failures_are_forgotten_after_a_quarter_hour_of_quiet_and_not_before():
    clock = Clock()
    throttle = Throttle(clock=clock)
    for _ in range(5):
        throttle.admit("a")
    clock.now += 900
    assert throttle.admit("a") == 0  # 900 s is not yet "after"; 5 failures, this is the 6th try
    for _ in range(3):
        clock.now += 900.5
        assert throttle.admit("a") == 0, "forgotten: counting starts again"


def test_a_right_password_forgets_the_address_and_uncounts_itself_overall():
    clock = Clock()
    throttle = Throttle(clock=clock, overall_free=6)
    for _ in range(5):
        throttle.admit("192.0.2.10")
    throttle.succeeded("192.0.2.10")
    assert throttle.tracked_addresses() == 0
    assert throttle.admit("192.0.2.10") == 0  # four counted overall, this is the fifth
    assert throttle.admit("192.0.2.11") == 0, "a source's first try is always checked"
    assert throttle.admit("192.0.2.11") == 2, "overall: a source that failed before waits"
    assert throttle.admit("192.0.2.10") == 0, "one that signed in before does not"
    throttle.succeeded("192.0.2.99")  # never below zero, whoever reports a success
    fresh = Throttle(clock=clock)
    fresh.succeeded("192.0.2.10")
    assert fresh.admit("192.0.2.10") == 0


def test_guesses_spread_over_many_addresses_wait_at_most_thirty_seconds():
    clock = Clock()
    throttle = Throttle(clock=clock)
    assert [throttle.admit(f"10.0.0.{i}") for i in range(20)] == [0] * 20
    assert throttle.admit("10.0.0.0") == 2
    assert throttle.admit("10.0.9.9") == 0, "a new source still gets its one check"
    waits, i = [], 0
    while len(waits) < 8:
        wait = throttle.admit(f"10.0.0.{i % 20}")
        if wait:
            waits.append(wait)
            clock.now += wait
        i += 1
    assert max(waits) == 30 and waits[-1] == 30


def test_at_most_max_addresses_are_remembered_the_longest_quiet_first():
    clock = Clock()
    throttle = Throttle(clock=clock, free=1, max_addresses=3, overall_free=100)
    for name in ("a", "b", "c"):
        throttle.admit(name)
    assert throttle.admit("a") == 2  # a waits: a wait is not a failure, a stays the oldest
    throttle.admit("d")
    assert throttle.tracked_addresses() == 3
    assert (throttle.admit("b"), throttle.admit("c"), throttle.admit("a")) == (2, 2, 0)

    throttle = Throttle(clock=clock, free=1, max_addresses=2, overall_free=100)
    throttle.admit("a")
    throttle.admit("b")
    clock.now += 2
    assert throttle.admit("a") == 0  # a fails again: now the most recent
    throttle.admit("c")
    assert throttle.admit("a") == 4 and throttle.admit("b") == 0


def test_at_most_max_known_sources_that_signed_in_are_spared_the_overall_wait_the_latest_kept():
    clock = Clock()
    throttle = Throttle(clock=clock, overall_free=2, max_known=3)
    for source in ("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"):  # the first drops out
        assert throttle.admit(source) == 0
        throttle.succeeded(source)
    for source in ("192.0.2.1", "192.0.2.2", "192.0.2.4"):  # a failure of each one's own
        assert throttle.admit(source) == 0
    assert throttle.admit("198.51.100.7") == 0  # more failures overall than overall_free
    # Four failures overall, two free: 8 s for any source with a failure of its own.
    assert throttle.admit("192.0.2.1") == 8, "forgotten: held back like any source that failed"
    assert throttle.admit("192.0.2.2") == 0, "the oldest of the three kept"
    assert throttle.admit("192.0.2.4") == 0, "the latest to sign in"


def test_failures_are_forgotten_after_exactly_a_quarter_hour_by_default():
    clock = Clock()
    throttle = Throttle(clock=clock)
    for _ in range(5):
        throttle.admit("a")
    clock.now += 900  # not yet "after": this is the sixth failure, and the seventh waits
    assert (throttle.admit("a"), throttle.admit("a")) == (0, 4)
    clock.now += 900.5
    assert [throttle.admit("a") for _ in range(6)] == [0] * 5 + [2], "forgotten: five free again"


def test_sixty_four_sources_that_signed_in_are_remembered_by_default():
    clock = Clock()
    throttle = Throttle(clock=clock, overall_free=1)
    sources = [f"192.0.2.{i}" for i in range(1, 66)]
    for source in sources:
        throttle.admit(source)
        throttle.succeeded(source)
    for source in (sources[0], sources[1], sources[-1]):  # a failure of each one's own
        assert throttle.admit(source) == 0
    assert throttle.admit("198.51.100.7") == 0
    assert throttle.admit(sources[0]) > 0, "the 65th to sign in pushed the first out"
    assert (throttle.admit(sources[1]), throttle.admit(sources[-1])) == (0, 0)


def test_a_throttle_made_just_after_boot_counts_from_zero():
    """time.monotonic() starts near zero at boot: the overall count must not start at one."""
    clock = Clock()
    clock.now = 0.0
    throttle = Throttle(clock=clock, overall_free=3)
    assert [throttle.admit("a") for _ in range(3)] == [0, 0, 0]
    assert throttle.admit("b") == 0, "a source's first try"
    assert throttle.admit("b") == 4, "four failures overall, three free: 2 s doubled once"


def test_a_success_uncounts_only_itself_overall_down_to_zero():
    clock = Clock()
    throttle = Throttle(clock=clock, overall_free=2)
    throttle.admit("a")
    throttle.succeeded("a")  # overall back to zero, not one
    assert [throttle.admit("b") for _ in range(2)] == [0, 0], "one failure overall, two free"
    assert throttle.admit("b") == 2, "two failures overall, two free: 2 s"


# --- The password file ---------------------------------------------------------------------------

def test_a_missing_or_broken_password_file_says_how_to_fix_it(tmp_path):
    missing = PasswordFile(tmp_path / "admin_password.json")
    with pytest.raises(PasswordFileError) as refused:
        missing.load()
    assert str(refused.value) == (f"{tmp_path / 'admin_password.json'} is missing; set a password "
                                  "with `python run.py set-password`.")
    (tmp_path / "admin_password.json").write_text(json.dumps({"algorithm": "md5"}))
    with pytest.raises(PasswordFileError) as refused:
        PasswordFile(tmp_path / "admin_password.json").load()
    assert str(refused.value) == (f"{tmp_path / 'admin_password.json'} is not a password file "
                                  "(unknown algorithm 'md5'); set a new password with "
                                  "`python run.py set-password`.")


def test_a_password_file_this_process_cannot_read_says_whose_it_is_and_what_to_run():
    """`set-password` run as root for a service that runs as its own user: read as that user
    (a child dropped to `nobody` when the tests run as root; root reads any file)."""
    folder = Path(tempfile.mkdtemp())
    try:
        folder.chmod(0o711)
        path = folder / "admin_password.json"
        PasswordFile(path).set("Some-password-123")
        path.chmod(0o600)
        owner = path.stat().st_uid
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: drop to nobody if root, then try to read
            try:
                if os.geteuid() == 0:
                    os.setgid(65534)
                    os.setuid(65534)
                else:
                    path.chmod(0)
                try:
                    PasswordFile(path).load()
                    message = "read"
                except PasswordFileError as e:
                    message = f"{os.geteuid()}\n{e}"
                os.write(write, message.encode())
            finally:
                os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        with os.fdopen(read) as answer:
            reader, message = answer.read().split("\n", 1)
    finally:
        shutil.rmtree(folder)
    assert message == (f"{path} cannot be read by this process (user id {reader}; the file "
                       f"belongs to user id {owner}). Was `set-password` run as another user? "
                       f"Run `chown {reader} {path}`, or set the password again as the UI's user.")


def test_each_new_password_moves_the_generation_on(tmp_path):
    path = tmp_path / "admin_password.json"
    file = PasswordFile(path)
    assert file.set("First-password-1").generation == 1
    assert file.set("Second-password-2").generation == 2
    assert PasswordFile(path).load().generation == 2
    assert file.check("admin", "Second-password-2") and not file.check("admin", "First-password-1")
    assert not file.check("root", "Second-password-2")
    path.write_text("not json")
    broken = PasswordFile(path).set("Third-password-3").generation
    assert broken > 10**15, "after a broken file, a generation no old session can carry"


def test_a_password_file_round_trips_every_field():
    credentials = Credentials(salt=b"s" * 16, hash=b"h" * 32, n=2**12, r=4, p=2, generation=7,
                              must_change=True)
    assert Credentials.from_json(credentials.to_json()) == credentials


def test_a_bad_first_password_from_the_environment_stops_the_start(tmp_path):
    with pytest.raises(PasswordFileError) as refused:
        first_password(PasswordFile(tmp_path / "admin_password.json"), "short")
    assert str(refused.value) == "WEBUI_ADMIN_PASSWORD is not usable: Use at least 10 characters."
    assert not (tmp_path / "admin_password.json").exists()


class Pipe(io.StringIO):
    def isatty(self):
        return False


def test_set_password_says_what_it_did_or_why_not(tmp_path):
    err = io.StringIO()
    assert set_password_from(Pipe("short\n"), err, tmp_path) == 1
    assert err.getvalue() == "error: Use at least 10 characters. Nothing changed.\n"
    assert not (tmp_path / "admin_password.json").exists()
    err = io.StringIO()
    assert set_password_from(Pipe("Good-password-42\r\n"), err, tmp_path) == 0
    assert err.getvalue() == ("Password for admin set (generation 1); every open session is "
                              "signed out.\n")
    assert PasswordFile(tmp_path / "admin_password.json").check("admin", "Good-password-42")


class Terminal(io.StringIO):
    def isatty(self):
        return True


def typed(monkeypatch, *entries):
    """getpass as the admin at a terminal: each prompt shown, each entry typed in turn."""
    prompts, answers = [], list(entries)

    def getpass(prompt):
        prompts.append(prompt)
        return answers.pop(0)
    monkeypatch.setattr("getpass.getpass", getpass)
    return prompts


def test_set_password_at_a_terminal_asks_twice_and_changes_nothing_when_they_differ(
        tmp_path, monkeypatch):
    prompts = typed(monkeypatch, "Good-password-42", "Good-password-43")
    err = io.StringIO()
    assert set_password_from(Terminal(), err, tmp_path) == 1
    assert prompts == ["New admin password: ", "Again: "]
    assert err.getvalue() == "error: the two entries differ; nothing changed\n"
    assert not (tmp_path / "admin_password.json").exists()
    prompts = typed(monkeypatch, "Good-password-42", "Good-password-42")
    err = io.StringIO()
    assert set_password_from(Terminal(), err, tmp_path) == 0
    assert prompts == ["New admin password: ", "Again: "]
    assert PasswordFile(tmp_path / "admin_password.json").check("admin", "Good-password-42")


def test_set_password_takes_only_the_line_break_off(tmp_path):
    assert set_password_from(Pipe("Ends-in-XX-pw-X\n"), io.StringIO(), tmp_path) == 0
    assert PasswordFile(tmp_path / "admin_password.json").check("admin", "Ends-in-XX-pw-X")


def test_set_password_refuses_a_trailing_space_rather_than_dropping_it(tmp_path):
    err = io.StringIO()
    assert set_password_from(Pipe("Good-password-42 \n"), err, tmp_path) == 1
    assert err.getvalue() == ("error: No leading or trailing spaces or line breaks. "
                              "Nothing changed.\n")
    assert not (tmp_path / "admin_password.json").exists()


def test_set_password_makes_a_missing_data_directory_private(tmp_path):
    data_dir = tmp_path / "var" / "lib" / "webui"
    assert set_password_from(Pipe("Good-password-42\n"), io.StringIO(), data_dir) == 0
    assert oct(data_dir.stat().st_mode & 0o777) == oct(0o700)
    assert PasswordFile(data_dir / "admin_password.json").check("admin", "Good-password-42")


def test_set_password_as_root_gives_the_file_to_the_data_directorys_owner(tmp_path):
    """The service runs as its own user and must be able to read the file root wrote."""
    if os.geteuid() != 0:
        pytest.skip("NOT ROOT: handing the file to another user needs root")
    tmp_path.chmod(0o755)
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    for uid, gid in ((4321, 4322), (1, 1)):  # any user but root: 1 is Debian's "daemon"
        os.chown(data_dir, uid, gid)
        assert set_password_from(Pipe("Good-password-42\n"), io.StringIO(), data_dir) == 0
        st = (data_dir / "admin_password.json").stat()
        assert (st.st_uid, st.st_gid) == (uid, gid)
    os.chown(data_dir, 0, 0)  # root's own directory: the file stays root's
    assert set_password_from(Pipe("Good-password-43\n"), io.StringIO(), data_dir) == 0
    st = (data_dir / "admin_password.json").stat()
    assert (st.st_uid, st.st_gid) == (0, 0)


def test_set_password_as_another_user_leaves_ownership_alone(tmp_path, monkeypatch):
    """Not root: the file is the user's own; changing owners is not tried (and would fail)."""
    changed = []
    if os.geteuid() == 0:  # the data directory is the user's own, as it would be
        os.chown(tmp_path, 4321, 4321)
    monkeypatch.setattr("os.geteuid", lambda: 4321)
    monkeypatch.setattr("os.chown", lambda *args: changed.append(args))
    assert set_password_from(Pipe("Good-password-42\n"), io.StringIO(), tmp_path) == 0
    assert changed == []


def test_a_new_password_file_has_a_sixteen_byte_salt_and_says_its_cost(tmp_path):
    credentials = PasswordFile(tmp_path / "admin_password.json").set("Good-password-42")
    doc = json.loads((tmp_path / "admin_password.json").read_text())
    assert len(base64.b64decode(doc["salt"])) == 16 == len(credentials.salt)
    assert (doc["n"], doc["r"], doc["p"]) == (auth.SCRYPT_N, auth.SCRYPT_R, auth.SCRYPT_P)
    assert doc["algorithm"] == "scrypt" and len(base64.b64decode(doc["hash"])) == 32


# --- Answers to a browser without a session ------------------------------------------------------

def test_htmx_without_a_session_is_told_to_sign_in_and_where(anonymous):
    r = anonymous.client.get("/commands/routes", headers={
        "HX-Request": "true", "HX-Current-URL": "http://localhost/peers?page=2&q=br"})
    assert r.status_code == 401
    assert r.headers["HX-Redirect"] == "/login?next=/peers?page%3D2%26q%3Dbr"
    assert r.get_data(as_text=True) == "Please sign in."


def test_a_page_without_a_session_comes_back_to_itself_after_sign_in(anonymous):
    for method in ("GET", "HEAD"):
        r = anonymous.client.open("/peers/new", method=method)
        assert r.status_code == 303 and r.headers["Location"] == "/login?next=/peers/new", method
    r = anonymous.get("/nowhere-X")
    assert r.headers["Location"] == "/login?next=/nowhere-X"
    r = anonymous.client.post("/peers", data={})
    assert r.status_code == 303 and r.headers["Location"] == "/login"


def test_a_broken_password_file_is_said_in_plain_words_and_logged(app, browser, data_dir, caplog):
    good = (data_dir / "admin_password.json").read_bytes()
    # JSON with a "hash" (the run's secret scan reads it), but no password file this UI knows
    (data_dir / "admin_password.json").write_text('{"algorithm": "md5", "hash": ""}')
    r = browser.get("/peers/new")
    (data_dir / "admin_password.json").write_bytes(good)
    assert r.status_code == 500
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    body = r.get_data(as_text=True)
    assert body == (f"The admin password file cannot be used: {data_dir / 'admin_password.json'} "
                    "is not a password file (unknown algorithm 'md5'); set a new password with "
                    "`python run.py set-password`.\n")
    logged = [rec.getMessage() for rec in caplog.records if rec.levelname == "ERROR"]
    assert logged == [body[len("The admin password file cannot be used: "):-1]]


# --- Sessions --------------------------------------------------------------------------------------

def test_signing_in_again_ends_the_session_it_replaces(app, browser):
    before = browser.client.get_cookie("session").value
    assert browser.login().status_code == 303
    old = app.test_client()
    old.set_cookie("session", before)
    assert old.get("/peers/new").status_code == 303
    assert browser.get("/peers/new").status_code == 200


def test_the_thirty_two_latest_sessions_stay_open_and_the_oldest_go(app):
    browsers = [Browser(app.test_client()) for _ in range(40)]
    assert app.extensions["auth"].sessions_open() == 32
    assert [b.get("/peers/new").status_code for b in browsers] == [303] * 8 + [200] * 32


def test_a_session_idle_for_exactly_the_timeout_still_works_and_a_second_more_ends_it(app, browser):
    clock = app.extensions["auth"].clock = Clock()
    browser.get("/")
    clock.now += 15 * 60  # IDLE_TIMEOUT_MINUTES
    assert browser.get("/peers/new").status_code == 200
    clock.now += 15 * 60 + 1
    assert browser.get("/peers/new").status_code == 303


def test_a_new_password_the_same_as_the_current_one_is_refused_in_words(browser):
    r = browser.post("/password", {"current": ADMIN_PASSWORD, "new": ADMIN_PASSWORD,
                                   "confirm": ADMIN_PASSWORD})
    assert r.status_code == 422
    assert ">Choose a password different from the current one.<" in r.get_data(as_text=True)
    r = browser.post("/password", {"current": ADMIN_PASSWORD, "new": "Shrt-9chr",
                                   "confirm": "Shrt-9chr"})
    assert r.status_code == 422 and ">Use at least 10 characters.<" in r.get_data(as_text=True)
    assert PasswordFile(browser.client.application.config["DATA_DIR"] + "/admin_password.json"
                        ).check("admin", ADMIN_PASSWORD)

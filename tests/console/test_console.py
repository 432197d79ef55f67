"""The console in a real browser (Debian's headless Chromium) against the real broker, a worker and the emulator."""

from __future__ import annotations

import asyncio
import re
import uuid

import aiohttp
import orjson
from aiohttp.test_utils import TestClient, TestServer

from dispatcher.console.app import build_console, console_app
from dispatcher.errors import InvalidJob, RejectedByAws
from dispatcher.examples import example_job
from dispatcher.registry import default_registry
from tests.console.conftest import TOKEN, dead_letter, log_in
from tests.integration.support import free_port

M2 = "m2.StartBatchJob"
CLEANROOMS = "cleanrooms.StartProtectedJob"
PROXY_HEADER = "X-Auth-Request-Email"


def new_id() -> str:
    """A fresh job id."""
    return f"job-{uuid.uuid4().hex[:12]}"


def rejected() -> RejectedByAws:
    """What AWS answers to a job it was not allowed to start."""
    return RejectedByAws("AccessDeniedException", "User is not authorized to perform m2:StartBatchJob", http_status=403)


async def test_overview_shows_live_numbers_as_jobs_flow(browser, broker, start_worker):
    """Jobs waiting show as the queue's depth; once a worker ran them, the depth is 0 and they count as settled."""
    for _ in range(3):
        await broker.publish(example_job(M2, new_id()), M2)
    row = f'tr[data-operation="{M2}"]'
    await browser.open("/")
    await browser.wait_for(f"{row} .queued", lambda text: text == "3", reload=True)
    assert await browser.text(f"{row} .consumers") == "0"
    await start_worker()
    await browser.wait_for(f"{row} .settled", lambda text: text == "3", reload=True)
    assert await browser.text(f"{row} .queued") == "0"
    assert int(await browser.text(f"{row} .consumers")) >= 1


async def test_filtering_finds_a_letter_and_its_detail_is_safe(browser, broker):
    """A job id filter finds its one letter; its page redacts sensitive parameters and shows other bytes as base64."""
    wanted, binary = new_id(), new_id()
    for _ in range(3):
        await dead_letter(broker, M2, new_id(), rejected())
    secret_job = example_job(CLEANROOMS, wanted)
    secret_job["params"]["jobParameters"]["parameters"] = {"apiKey": "hunter2-secret"}
    await dead_letter(broker, CLEANROOMS, wanted, InvalidJob("X", "y"), body=orjson.dumps(secret_job))
    await dead_letter(broker, M2, binary, rejected(), body=b"\xff\xfe\x00not utf-8")
    await browser.open("/letters")
    await browser.wait_for("#count", lambda text: text.startswith("5 of 5"))
    await browser.type('input[name="job_id"]', wanted)
    await browser.click("#apply")
    await browser.wait_for("#count", lambda text: text.startswith("1 of 5"))
    assert await browser.texts("#letters a.job") == [wanted]
    await browser.click("#letters a.job")
    body = await browser.wait_for("#body", lambda text: wanted in text)
    assert "hunter2-secret" not in await browser.page_text()
    assert "<redacted value>" in body
    await browser.open(f"/letters?job_id={binary}")
    await browser.click("#letters a.job")
    body = await browser.wait_for("#body", bool)
    assert body == "//4Abm90IHV0Zi04"  # base64 of the bytes


async def test_dry_run_then_replay_moves_the_letter_and_the_job_succeeds(browser, broker, start_worker):
    """The dry run says "would move" and changes nothing; the replay moves it and the worker starts the job."""
    job_id, invalid_id = new_id(), new_id()
    await dead_letter(broker, M2, job_id, rejected())
    bad = example_job(M2, invalid_id, priority="high")  # fails validation again: kept
    await dead_letter(broker, M2, invalid_id, InvalidJob("InvalidJobMessage", "priority"), body=orjson.dumps(bad))
    await start_worker()
    await log_in(browser)
    await browser.open(f"/letters?job_id={job_id},{invalid_id}")
    await browser.wait_for("#count", lambda text: text.startswith("2 of 2"))
    await browser.click("#dry-run")
    await browser.wait_for("#summary", lambda text: "would move 1, would keep 1" in text)
    decisions = await browser.text("#decisions")
    assert f"{job_id} {M2}" in decisions
    assert "would move" in decisions
    assert "kept still fails: invalid" in decisions
    await browser.open(f"/letters?job_id={job_id}")
    await browser.type("#rate", "5")
    await browser.click("#replay")
    await browser.wait_for("#summary", lambda text: text.startswith("Done: moved 1, kept 0, failed 0"))
    results = await broker.collect_ids(broker.results_queue, [job_id])
    assert [message.json()["outcome"] for message in results[job_id]] == ["succeeded"]
    await browser.open("/letters")
    await browser.wait_for("#count", lambda text: text.startswith("1 of 1"))
    assert await browser.texts("#letters a.job") == [invalid_id]


async def test_purge_needs_the_confirmation_and_leaves_an_export(browser, broker, tmp_path):
    """Without the queue's name typed nothing is deleted; with it the letters go, each in the export first."""
    doomed, kept = [new_id(), new_id()], new_id()
    for job_id in doomed:
        await dead_letter(broker, M2, job_id, rejected())
    await dead_letter(broker, M2, kept, InvalidJob("InvalidJobMessage", "priority"))
    await log_in(browser)
    await browser.open("/letters?category=rejected")
    await browser.wait_for("#count", lambda text: text.startswith("2 of 3"))
    await browser.click("#purge")
    await browser.wait_for("#matching", lambda text: text == "2")
    await browser.type("#confirm", "yes")
    await browser.click("#purge-confirm")
    await browser.wait_for("#problem", lambda text: "nothing was deleted" in text)
    await browser.type("#confirm", broker.dead_queue)
    await browser.click("#purge-confirm")
    await browser.wait_for(
        "#summary", lambda text: text.startswith("Done: deleted 2 of 3 dead letters, exported first")
    )
    exports = list(tmp_path.glob("purge-*.jsonl"))
    assert len(exports) == 1
    exported = [orjson.loads(line) for line in exports[0].read_bytes().splitlines()]
    assert sorted(record["body"]["job_id"] for record in exported) == sorted(doomed)
    assert (await browser.text("#export-file")) == f"Download the export {exports[0].name}"
    await browser.open("/letters")
    await browser.wait_for("#count", lambda text: text.startswith("1 of 1"))
    assert await browser.texts("#letters a.job") == [kept]


async def test_without_the_token_every_action_is_refused(browser, broker, console):
    """Read-only visitors see the letters, but dry run, replay, purge and export are refused and change nothing."""
    job_id = new_id()
    await dead_letter(broker, M2, job_id, rejected())
    await browser.open("/letters")
    await browser.wait_for("#count", lambda text: text.startswith("1 of 1"))
    assert await browser.text("#read-only") == "Read-only"
    for button in ("#dry-run", "#replay"):
        await browser.open("/letters")
        await browser.click(button)
        await browser.wait_for("#refused", lambda text: "nothing was changed" in text)
    await browser.open("/purge")
    await browser.type("#confirm", broker.dead_queue)
    await browser.click("#purge-confirm")
    await browser.wait_for("#refused", lambda text: "nothing was changed" in text)
    await browser.open("/letters/export")
    await browser.wait_for("#refused", bool)
    await browser.open("/letters")
    await browser.wait_for("#count", lambda text: text.startswith("1 of 1"))
    async with aiohttp.ClientSession() as session:
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        async with session.get(f"{console}/letters/export", headers=bearer) as response:
            assert response.status == 200  # the token as a bearer token makes an operator
            assert job_id in await response.text()
        async with session.post(f"{console}/actions/replay", data={"mode": "replay"}, headers=bearer) as response:
            assert response.status == 403  # but a POST without the CSRF token is refused
            assert "CSRF" in await response.text()
        async with session.post(f"{console}/login", data={"token": TOKEN, "csrf": "forged"}) as response:
            assert response.status == 403
    await browser.open("/letters")
    await browser.wait_for("#count", lambda text: text.startswith("1 of 1"))


async def test_the_proxy_header_makes_an_operator_only_when_configured(settings_for, declare):
    """An authenticating proxy's header is believed when it is the configured one, and ignored otherwise."""
    await declare()
    for configured, status in ((None, 403), (PROXY_HEADER, 303)):
        settings = settings_for(console_identity_header=configured)
        async with TestClient(TestServer(console_app(build_console(settings, default_registry())))) as client:
            page = await client.get("/letters")  # sets the CSRF cookie
            csrf = re.search(r'name="csrf" value="([^"]+)"', await page.text())
            assert csrf is not None
            response = await client.post(
                "/actions/replay",
                data={"csrf": csrf[1], "mode": "dry-run"},
                headers={PROXY_HEADER: "ops@example.com"},
                allow_redirects=False,
            )
            assert response.status == status
            if status == 303:
                done = await client.get(response.headers["Location"])
                assert "by ops@example.com" in await done.text()


async def test_a_broker_that_does_not_answer_is_said_without_its_password(settings_for):
    """The overview and the list say the broker is unreachable, and no page shows the password or the token."""
    password = "Pw-9f3kZq"  # noqa: S105 - a test password
    url = f"amqp://dispatcher:{password}@127.0.0.1:{free_port()}/jobs"
    settings = settings_for(amqp_url=url, console_token=TOKEN)
    async with TestClient(TestServer(console_app(build_console(settings, default_registry())))) as client:
        for path in ("/", "/letters", "/login"):
            response = await client.get(path)
            text = await response.text()
            assert password not in text
            assert TOKEN not in text
        assert response.status == 200  # the log-in page needs no broker
        overview = await client.get("/")
        assert overview.status == 503
        assert "cannot connect to the broker" in await overview.text()


async def test_a_replay_while_a_dlq_command_holds_the_queue_changes_nothing(settings_for, declare, broker):
    """With the queue's lock taken (a `dispatcher dlq` command running), the console's replay refuses and says why."""
    await declare()
    job_id = new_id()
    await dead_letter(broker, M2, job_id, rejected())
    lock = await broker.connection.channel()
    await lock.declare_queue(f"{broker.dead_queue}.dlq-lock", exclusive=True, auto_delete=True)
    settings = settings_for(console_token=TOKEN)
    async with TestClient(TestServer(console_app(build_console(settings, default_registry())))) as client:
        csrf = re.search(r'name="csrf" value="([^"]+)"', await (await client.get("/login")).text())
        assert csrf is not None
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        started = await client.post(
            "/actions/replay", data={"csrf": csrf[1], "mode": "replay"}, headers=bearer, allow_redirects=False
        )
        assert started.status == 303
        async with asyncio.timeout(20):
            while 'id="summary"' not in (page := await (await client.get(started.headers["Location"])).text()):
                await asyncio.sleep(0.1)
        assert "another `dispatcher dlq` command is running" in page
        assert "nothing was changed" in page
    await lock.close()
    assert [letter.json()["job_id"] for letter in await broker.collect(broker.dead_queue, 1)] == [job_id]

"""Take the console's screenshots for docs/operators.md with Debian's headless Chromium (docs/console/*.png).

    uv run python tools/console_screenshots.py

In a RabbitMQ vhost of its own (created here, deleted at the end): the emulator and a worker run
jobs, a few bad ones become dead letters the way they do in production, and the console is shown
at 1280x800. Needs rabbitmqctl, /usr/bin/chromium and /usr/bin/chromedriver; downloads nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import uuid
from pathlib import Path

import aio_pika
import aiohttp
import orjson
from aio_pika import DeliveryMode, Message
from aiohttp import web
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from dispatcher.console.app import build_console, console_app
from dispatcher.emulator import start_emulator
from dispatcher.errors import RejectedByAws
from dispatcher.examples import example_job
from dispatcher.health import start_health_server
from dispatcher.registry import default_registry
from dispatcher.settings import Settings
from dispatcher.settle import dead_letter_headers
from dispatcher.stamps import Stamper
from dispatcher.wiring import build_worker

OUT = Path(__file__).resolve().parents[1] / "docs" / "console"
TOKEN = "screenshot-token"  # noqa: S105 - this script's own console
EMULATOR_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}
OPERATIONS = [
    "m2.StartBatchJob",
    "datazone.StartDataSourceRun",
    "quicksight.StartAutomationJob",
    "cleanrooms.StartProtectedJob",
]


def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def vhost() -> object:
    """A vhost of this run's own; its AMQP URL."""
    name = f"dispatcher-screens-{uuid.uuid4().hex[:8]}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", name], check=True)
    subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"], check=True)
    try:
        yield f"amqp://guest:guest@127.0.0.1:5672/{name}"
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], check=False)


async def publish_jobs(settings: Settings) -> None:
    """Good jobs, and bad ones the worker dead-letters; and letters AWS refused, stamped as a worker does."""
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        jobs = await channel.get_exchange(settings.jobs_exchange)
        dead = await channel.get_exchange(settings.dead_exchange)
        for number in range(40):
            key = OPERATIONS[number % len(OPERATIONS)]
            job = example_job(key, f"nightly-{key.split('.')[0]}-{number:03d}")
            await jobs.publish(Message(orjson.dumps(job), delivery_mode=DeliveryMode.PERSISTENT), key)
        invalid = example_job("m2.StartBatchJob", "billing-2026-12-04", priority="high")
        await jobs.publish(Message(orjson.dumps(invalid), delivery_mode=DeliveryMode.PERSISTENT), "m2.StartBatchJob")
        secret = example_job("cleanrooms.StartProtectedJob", "cleanrooms-weekly-17")
        secret["params"]["jobParameters"]["parameters"] = {"apiKey": "do-not-show"}
        secret["params"]["bogus"] = 1
        await jobs.publish(
            Message(orjson.dumps(secret), delivery_mode=DeliveryMode.PERSISTENT), "cleanrooms.StartProtectedJob"
        )
        await jobs.publish(
            Message(b"\xff\xfe not JSON", message_id="legacy-export-9", delivery_mode=DeliveryMode.PERSISTENT),
            "datazone.StartDataSourceRun",
        )
        stamper = Stamper.from_settings(settings)
        for number in range(6):
            key = "m2.StartBatchJob" if number % 2 else "datazone.StartDataSourceRun"
            job_id = f"reports-{number:02d}"
            body = orjson.dumps(example_job(key, job_id))
            error = RejectedByAws("AccessDeniedException", f"User is not authorized to perform {key}", http_status=403)
            headers = stamper.sign(dict(dead_letter_headers(error, 1, key)), body, job_id)
            message = Message(body, headers=headers, message_id=job_id, delivery_mode=DeliveryMode.PERSISTENT)
            await dead.publish(message, key)


def chromium() -> webdriver.Chrome:
    """Headless Chromium from Debian at 1280x800."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,800"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(executable_path="/usr/bin/chromedriver"))


def shoot(base: str) -> None:
    """Visit each page and save it."""
    OUT.mkdir(parents=True, exist_ok=True)
    chrome = chromium()
    try:
        chrome.get(base + "/")
        chrome.save_screenshot(str(OUT / "overview.png"))
        chrome.get(base + "/login")
        chrome.find_element(By.ID, "token").send_keys(TOKEN)
        chrome.find_element(By.ID, "login").click()
        chrome.get(base + "/letters")
        chrome.save_screenshot(str(OUT / "letters.png"))
        chrome.get(base + "/letters?job_id=cleanrooms-weekly-17")
        chrome.find_element(By.CSS_SELECTOR, "#letters a.job").click()
        chrome.find_element(By.ID, "body")
        chrome.save_screenshot(str(OUT / "letter.png"))
        chrome.get(base + "/letters?service=m2")
        chrome.find_element(By.ID, "dry-run").click()
        for _ in range(100):
            if chrome.find_elements(By.ID, "summary"):
                break
            chrome.implicitly_wait(0.1)
            chrome.refresh()
        chrome.save_screenshot(str(OUT / "dry-run.png"))
        chrome.get(base + "/purge?category=rejected&error_code=AccessDeniedException")
        chrome.find_element(By.ID, "confirm").send_keys("dispatcher.")
        chrome.save_screenshot(str(OUT / "purge.png"))
    finally:
        chrome.quit()


async def main(amqp_url: str) -> None:
    """Run the emulator, a worker and the console; take the screenshots."""
    registry = default_registry()
    async with start_emulator() as emulator:
        os.environ.update(EMULATOR_ENV, AWS_ENDPOINT_URL=emulator.url)
        metrics_port = free_port()
        metrics = await start_health_server(lambda: True, lambda: True, "127.0.0.1", metrics_port)
        settings = Settings(
            amqp_url=amqp_url,
            default_rate_limit={"rate": 20, "burst": 5},
            console_token=TOKEN,
            console_metrics_urls=[f"http://127.0.0.1:{metrics_port}/metrics"],
        )
        worker = build_worker(settings, registry)
        running = asyncio.create_task(worker.run())
        await worker.consuming.wait()
        runner = web.AppRunner(console_app(build_console(settings, registry)), access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/") as response:
                await response.read()  # the console's first look at the worker's counters
            await publish_jobs(settings)
            await asyncio.sleep(5)  # the jobs run at 20/s per operation
            await asyncio.to_thread(shoot, f"http://127.0.0.1:{port}")
        finally:
            await runner.cleanup()
            worker.stop()
            await running
            await metrics.cleanup()
    print(f"screenshots in {OUT.relative_to(Path.cwd()) if OUT.is_relative_to(Path.cwd()) else OUT}")


if __name__ == "__main__":
    with vhost() as url:
        asyncio.run(main(str(url)))

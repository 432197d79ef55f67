"""Console fixtures: the console and a worker on the test's loop, a headless Chromium from Debian driven by Selenium.

Selenium blocks, so `Browser` runs each of its calls in a thread: the console, the worker and the
emulator go on serving on the loop meanwhile. Nothing downloads a browser: the binaries are
Debian's `chromium` and `chromium-driver` (.ci/run installs them).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from aio_pika import DeliveryMode, Message
from aiohttp import web
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from dispatcher.console.app import build_console, console_app
from dispatcher.examples import example_job
from dispatcher.health import start_health_server
from dispatcher.registry import default_registry
from dispatcher.settings import Settings
from dispatcher.settle import dead_letter_headers
from dispatcher.stamps import Stamper
from tests.integration.conftest import broker, declare, emulator, prefix, settings_for, start_worker  # noqa: F401
from tests.integration.support import free_port

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from dispatcher.errors import JobError

TOKEN = "console-test-token-7Qx"  # noqa: S105 - a test's own token
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
WAIT_S = 20.0
READ_TRIES = 5  # the overview and the letters list refresh themselves (meta refresh)


@pytest.fixture(scope="session")
def driver() -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the session, at 1280x800."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("chromium and chromium-driver are not installed: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,800"):
        options.add_argument(argument)
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    yield chrome
    chrome.quit()


class Browser:
    """The session's Chromium on one console; every call runs in a thread, so the loop keeps serving."""

    def __init__(self, chrome: webdriver.Chrome, base_url: str) -> None:
        self.chrome = chrome
        self.base_url = base_url

    async def call(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(function, *args)

    async def open(self, path: str) -> None:
        await self.call(self.chrome.get, self.base_url + path)

    async def read(self, function: Callable[[], Any]) -> Any:
        """`function`'s reading of the page, taken again when a refresh replaced the page in the middle of it."""
        for _ in range(READ_TRIES - 1):
            try:
                return await self.call(function)
            except StaleElementReferenceException:
                await asyncio.sleep(0.1)
        return await self.call(function)

    async def text(self, css: str) -> str:
        return str(await self.read(lambda: self.chrome.find_element(By.CSS_SELECTOR, css).text))

    async def texts(self, css: str) -> list[str]:
        return await self.read(lambda: [e.text for e in self.chrome.find_elements(By.CSS_SELECTOR, css)])

    async def type(self, css: str, text: str) -> None:
        def typing() -> None:
            element = self.chrome.find_element(By.CSS_SELECTOR, css)
            element.clear()
            element.send_keys(text)

        await self.call(typing)

    async def click(self, css: str) -> None:
        await self.call(lambda: self.chrome.find_element(By.CSS_SELECTOR, css).click())

    async def page_text(self) -> str:
        return str(await self.read(lambda: self.chrome.find_element(By.TAG_NAME, "body").text))

    async def wait_for(self, css: str, check: Callable[[str], bool], *, reload: bool = False) -> str:
        """The element's text once `check` accepts it (reloading the page between looks when asked)."""
        text = ""
        try:
            async with asyncio.timeout(WAIT_S):
                while True:
                    try:
                        text = await self.text(css)
                    except NoSuchElementException:
                        text = ""
                    if check(text):
                        return text
                    await asyncio.sleep(0.25)
                    if reload:
                        await self.call(self.chrome.refresh)
        except TimeoutError:
            pytest.fail(f"{css} never passed the check; last text {text!r}; page: {await self.page_text()}")


@pytest.fixture
async def metrics_url() -> AsyncIterator[str]:
    """The in-process workers' /metrics (one registry per process), as a worker pod serves it."""
    port = free_port()
    runner = await start_health_server(lambda: True, lambda: True, "127.0.0.1", port)
    yield f"http://127.0.0.1:{port}/metrics"
    await runner.cleanup()


@pytest.fixture
async def console(settings_for, metrics_url, tmp_path, declare) -> AsyncIterator[str]:  # noqa: F811
    """A console on the test's names and vhost, with a token; its base URL."""
    await declare()
    settings = settings_for(console_token=TOKEN, console_metrics_urls=[metrics_url], console_export_dir=str(tmp_path))
    runner = web.AppRunner(console_app(build_console(settings, default_registry())), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def browser(driver, console) -> Browser:
    """The session's browser on this test's console, with no cookie of an earlier test."""
    await asyncio.to_thread(driver.delete_all_cookies)
    return Browser(driver, console)


async def log_in(browser: Browser) -> None:
    """Type the token on the log-in page."""
    await browser.open("/login")
    await browser.type("#token", TOKEN)
    await browser.click("#login")
    await browser.wait_for("#operator", lambda text: text == "token holder")


async def dead_letter(broker, routing_key: str, job_id: str, error: JobError, *, body: bytes | None = None) -> None:  # noqa: F811
    """Put a dead letter in the test's DLQ as a worker would have (stamped, confirmed)."""
    exchange = await broker.channel.get_exchange(broker.dead_queue)
    raw = orjson.dumps(example_job(routing_key, job_id)) if body is None else body
    stamper = Stamper.from_settings(Settings(amqp_url=broker.url))
    message = Message(
        raw,
        headers=stamper.sign(dict(dead_letter_headers(error, 1, routing_key)), raw, job_id),
        content_type="application/json",
        delivery_mode=DeliveryMode.PERSISTENT,
        message_id=job_id,
    )
    await exchange.publish(message, routing_key)

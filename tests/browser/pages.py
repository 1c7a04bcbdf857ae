"""What the browser tests do to every page state: screenshot it, run axe-core on it, measure
its tap targets; and how they read the emails that were really sent.

Playwright and axe are imported inside the functions, so that collecting the suite works on
a machine without them (the fixtures in conftest skip there).
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "var" / "test-artifacts" / "screenshots"

# WCAG 2.1 A and AA: the rules the public pages must pass with zero violations.
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
AXE_OPTIONS = {"runOnly": {"type": "tag", "values": WCAG_TAGS}, "resultTypes": ["violations"]}

MIN_TAP_PX = 44  # buttons and other controls people tap on the phone
MIN_TARGET_PX = 24  # WCAG 2.2 target size (minimum), for the small language links

MOBILE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@dataclass(frozen=True)
class Checked:
    """One page state as axe saw it, for the run's summary."""

    state: str
    language: str
    viewport: str
    passes: int
    incomplete: int
    violations: int
    smallest_tap_px: float | None
    screenshot: Path


CHECKED: list[Checked] = []
SCREENSHOTS_TAKEN: list[Path] = []


def screenshot(page: Page, name: str) -> Path:
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    SCREENSHOTS_TAKEN.append(path)
    return path


def check_state(page: Page, *, state: str, language: str, viewport: str = "mobile") -> Checked:
    """Screenshot the page, assert it speaks ``language``, has zero WCAG 2.1 A/AA violations
    and tap targets big enough for a thumb."""
    from axe_playwright_python.sync_playwright import Axe

    shot = screenshot(page, f"{viewport}-{language}-{state}")
    assert page.locator("html").get_attribute("lang") == language
    results = Axe().run(page, options=AXE_OPTIONS)
    assert results.violations_count == 0, f"{state} [{language}]: {results.generate_report()}"
    checked = Checked(
        state=state,
        language=language,
        viewport=viewport,
        passes=len(results.response["passes"]),
        incomplete=len(results.response["incomplete"]),
        violations=results.violations_count,
        smallest_tap_px=assert_tap_targets(page),
        screenshot=shot,
    )
    CHECKED.append(checked)
    return checked


def assert_tap_targets(page: Page) -> float | None:
    """Buttons and disclosures at least 44 px tall, language links at least 24 x 24 px;
    return the height of the smallest one, for the run's summary."""
    heights = []
    for element in page.locator("button, summary").all():
        if element.is_visible():
            box = element.bounding_box()
            assert box and box["height"] >= MIN_TAP_PX, (element.inner_text(), box)
            heights.append(box["height"])
    for element in page.locator("nav a").all():
        box = element.bounding_box()
        assert box and min(box["width"], box["height"]) >= MIN_TARGET_PX, (
            element.inner_text(),
            box,
        )
    return min(heights, default=None)


# --- The outbox: the emails exactly as the sending path wrote them ----------------------


def outbox_messages(outbox: Path) -> list[EmailMessage]:
    return [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for path in sorted(outbox.glob("*.eml"))
    ]


def messages_to(outbox: Path, address: str) -> list[EmailMessage]:
    return [m for m in outbox_messages(outbox) if address in str(m["To"])]


def text_of(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def html_of(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


def link_in(message: EmailMessage, site_url: str, prefix: str) -> str:
    """The one link under ``prefix`` (/n/, /u/, /p/) in the text part, as a reader copies it."""
    found = set(re.findall(rf"{re.escape(site_url)}{prefix}[^/\s]+/", text_of(message)))
    assert len(found) == 1, (prefix, found)
    return found.pop()


def one_click_link(message: EmailMessage) -> str:
    """The RFC 8058 List-Unsubscribe URL, which the HTML footer links to as well."""
    [url] = re.findall(r"<([^>]+)>", str(message["List-Unsubscribe"]))
    assert f'href="{url}"' in html_of(message)
    return url


def sign_in(page: Page, site_url: str, *, username: str, password: str, next_path: str) -> None:
    """Through the console's sign-in form (where the admin's own login page sends too);
    tests run with RENOTIFY_STAFF_2FA=optional, so a staff member without an app goes
    straight on (the two-factor browser tests take the code step themselves)."""
    page.goto(f"{site_url}/console/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{next_path}")

"""Choosing a detector in the form loads its saved playbook, so saving unchanged keeps it."""

import pytest
from playwright.sync_api import expect

from console.roles import Role
from tests import factories
from tests.browser.conftest import login
from traces.incident_models import DetectorConfig
from traces.watchers import detectors

pytestmark = pytest.mark.browser


def test_choosing_a_detector_loads_its_playbook_and_saving_keeps_it(asgi_server, page):
    factories.make_user(Role.ADMIN, username="ada")
    DetectorConfig.objects.create(kind="runaway", agent=None, params={"max_seconds": 900},
                                  actions=["notify", "pause"])
    detectors.invalidate_cache()
    login(page, asgi_server, "ada", factories.PASSWORD)
    page.goto(f"{asgi_server.url}/incidents/detectors/")
    page.select_option("#id_kind", "runaway")
    expect(page.locator("#id_params")).to_have_value('{"max_seconds": 900}')
    expect(page.locator("input[name=actions][value=pause]")).to_be_checked()
    expect(page.locator("input[name=actions][value=notify]")).to_be_checked()
    page.fill("#id_params", '{"max_seconds": 1200}')
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#detectors tr[data-kind=runaway]")).to_contain_text("notify, pause")
    row = DetectorConfig.objects.get(kind="runaway", agent=None)
    assert row.actions == ["notify", "pause"] and row.params == {"max_seconds": 1200}
    assert page.js_errors == []

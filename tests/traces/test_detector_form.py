"""The detector form keeps what the Admin chose when the parameters are refused."""

import re

import pytest

from tests.traces.test_watchers_support import watching  # noqa: F401
from traces.incident_models import DetectorConfig

pytestmark = pytest.mark.django_db


def _form(html: str) -> str:
    return html[html.index('id="detector-form"'):html.index("</form>", html.index('id="detector-form"'))]


def test_a_refused_json_keeps_the_agent_enabled_flag_and_playbook(clients_by_role, agent, watching):
    data = {"kind": "runaway", "agent": str(agent.pk), "params": '{"max_seconds": 60',
            "actions": ["notify", "pause"]}  # enabled left unticked
    response = clients_by_role["admin"].post("/incidents/detectors/", data)
    assert response.status_code == 400
    form = _form(response.content.decode())
    assert re.search(r'<option value="runaway" selected>', form)
    assert f'<option value="{agent.pk}" selected>' in form
    assert not re.search(r'name="enabled"[^>]*checked', form)
    ticked = re.findall(r'name="actions" value="(\w+)" checked', form)
    assert ticked == ["notify", "pause"]
    assert "{&quot;max_seconds&quot;: 60</textarea>" in form


def test_a_fresh_form_shows_the_first_detector_as_it_stands_globally(clients_by_role, watching):
    form = _form(clients_by_role["admin"].get("/incidents/detectors/").content.decode())
    assert re.search(r'name="enabled"[^>]*checked', form)
    assert " selected>" not in form.split('id="id_agent"')[1].split("</select>")[0]
    assert re.findall(r'name="actions" value="(\w+)" checked', form) == ["notify", "pause"]  # loop's defaults


def test_the_form_loads_the_saved_playbook_so_saving_it_unchanged_keeps_it(clients_by_role, agent, watching):
    admin = clients_by_role["admin"]
    saved = {"kind": "runaway", "agent": str(agent.pk), "params": '{"max_seconds": 60}',
             "actions": ["notify", "pause"]}  # enabled left unticked
    assert admin.post("/incidents/detectors/", saved).status_code == 302
    form = _form(admin.get(f"/incidents/detectors/?kind=runaway&agent={agent.pk}").content.decode())
    assert re.search(r'<option value="runaway" selected>', form)
    assert f'<option value="{agent.pk}" selected>' in form
    assert not re.search(r'name="enabled"[^>]*checked', form)
    assert re.findall(r'name="actions" value="(\w+)" checked', form) == ["notify", "pause"]
    assert "{&quot;max_seconds&quot;: 60}</textarea>" in form
    # The global row of the same detector is its own: nothing saved there, the defaults are in force.
    form = _form(admin.get("/incidents/detectors/?kind=runaway").content.decode())
    assert re.search(r'name="enabled"[^>]*checked', form) and "{}</textarea>" in form

    admin.post("/incidents/detectors/", {"kind": "runaway", "agent": str(agent.pk), "params": '{"max_seconds": 60}',
                                        "actions": ["notify", "pause"]})  # resubmitted as loaded
    row = DetectorConfig.objects.get(kind="runaway", agent=agent)
    assert row.actions == ["notify", "pause"] and row.params == {"max_seconds": 60}

"""The stream detectors work from what ingest hands over (run rows, inserted spans, each run's kept
loop window) and still see exactly what is stored: spans another process stored, duplicates, resources."""

import pytest

from tests.traces import helpers
from tests.traces.test_watchers_support import send_committed, tool, watching  # noqa: F401
from traces.incident_models import DetectorKind, Incident, ResourceTouch
from traces.watchers import stream

pytestmark = pytest.mark.django_db

PARENT = b"\x01" * 8


def test_loop_spread_over_a_batch_this_process_never_saw_still_fires(client, agent_key, watching,
                                                                     django_capture_on_commit_callbacks):
    trace = helpers.new_trace_id()
    spans = [tool(trace, "lookup_order", {"order": 42}, parent=PARENT) for _ in range(5)]
    send_committed(client, agent_key, django_capture_on_commit_callbacks, *spans[:2])
    watching.WATCHERS_MODE = "off"  # as if another server process stored the next batch
    send_committed(client, agent_key, django_capture_on_commit_callbacks, *spans[2:4])
    watching.WATCHERS_MODE = "inline"
    assert not Incident.objects.exists()
    send_committed(client, agent_key, django_capture_on_commit_callbacks, spans[4])
    incident = Incident.objects.get()
    assert incident.kind == DetectorKind.LOOP and incident.evidence["observed"] == 5
    assert sorted(incident.evidence["span_ids"]) == sorted(s.span_id.hex() for s in spans)


def test_a_resent_batch_is_not_counted_twice_by_the_loop_check(client, agent_key, watching,
                                                               django_capture_on_commit_callbacks):
    trace = helpers.new_trace_id()
    spans = [tool(trace, "lookup_order", {"order": 42}, parent=PARENT) for _ in range(3)]
    send_committed(client, agent_key, django_capture_on_commit_callbacks, *spans)
    send_committed(client, agent_key, django_capture_on_commit_callbacks, *spans)  # exporter retry: duplicates
    send_committed(client, agent_key, django_capture_on_commit_callbacks,
                   tool(trace, "lookup_order", {"order": 42}, parent=PARENT))
    assert not Incident.objects.exists()  # four calls stored, the threshold is five
    send_committed(client, agent_key, django_capture_on_commit_callbacks,
                   tool(trace, "lookup_order", {"order": 42}, parent=PARENT))
    assert Incident.objects.get().evidence["observed"] == 5


def test_a_forgotten_window_is_read_back_from_the_database(client, agent_key, watching,
                                                           django_capture_on_commit_callbacks):
    trace = helpers.new_trace_id()
    spans = [tool(trace, "refund", {"order": 7, "amount": 10}, parent=PARENT) for _ in range(5)]
    send_committed(client, agent_key, django_capture_on_commit_callbacks, *spans[:4])
    stream.forget_windows()  # a restarted process, or a run pushed out of the kept windows
    send_committed(client, agent_key, django_capture_on_commit_callbacks, spans[4])
    assert Incident.objects.get().evidence["observed"] == 5


def test_resource_touches_come_from_the_inserted_spans_once(client, agent_key, watching,
                                                            django_capture_on_commit_callbacks):
    trace = helpers.new_trace_id()
    span = tool(trace, "update_customer", {"id": 42}, resource="crm:customer:42", parent=PARENT)
    send_committed(client, agent_key, django_capture_on_commit_callbacks, span)
    send_committed(client, agent_key, django_capture_on_commit_callbacks, span)  # a duplicate touches nothing
    touch = ResourceTouch.objects.get()
    assert touch.resource == "crm:customer:42" and touch.span_id == span.span_id.hex()

"""HTML views of the traces app (and, for traces, the OTLP endpoint /v1/traces)."""

from django.urls import include, path

from traces import ingest
from traces.views import graph, metrics, runs, timeline

urlpatterns = [
    path("v1/traces", ingest.otlp_traces, name="otlp-traces"),
    path("runs/", runs.runs_list, name="traces-runs"),
    path("runs/metrics/", metrics.metrics_page, name="traces-metrics"),
    path("runs/<str:trace_id>/", timeline.run_detail, name="traces-run"),
    path("runs/<str:trace_id>/spans", timeline.run_spans, name="traces-run-spans"),
    path("runs/<str:trace_id>/spans/<str:span_id>/", timeline.span_panel, name="traces-span"),
    path("runs/<str:trace_id>/graph/", graph.run_graph, name="traces-graph"),
    path("", include("traces.incident_urls")),  # incidents, detectors, autonomy (traces/watchers)
]

"""HTML views of the traces app (and, for traces, the OTLP endpoint /v1/traces)."""

from django.urls import path

from traces import ingest

urlpatterns = [
    path("v1/traces", ingest.otlp_traces, name="otlp-traces"),
]

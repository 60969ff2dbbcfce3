"""HTML views of the traces app (and, for traces, the OTLP endpoint /v1/traces)."""

urlpatterns = []

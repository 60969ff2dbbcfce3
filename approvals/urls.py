"""HTML views of the approvals app (and, for traces, the OTLP endpoint /v1/traces)."""

urlpatterns = []

"""Incidents, detector settings and earned autonomy (traces/watchers), included from traces/urls.py."""

from django.urls import path

from traces import incident_views as views

urlpatterns = [
    path("incidents/", views.incidents_list, name="incidents"),
    path("incidents/detectors/", views.detector_settings, name="incident-detectors"),
    path("incidents/<int:pk>/", views.incident_detail, name="incident"),
    path("incidents/<int:pk>/panel/", views.incident_panel, name="incident-panel"),
    path("incidents/<int:pk>/acknowledge/", views.incident_acknowledge, name="incident-acknowledge"),
    path("incidents/<int:pk>/resolve/", views.incident_resolve, name="incident-resolve"),
    path("incidents/<int:pk>/actions/<int:action_id>/undo/", views.incident_undo, name="incident-undo"),
    path("autonomy/", views.autonomy_page, name="autonomy"),
    path("autonomy/bar/", views.autonomy_bar, name="autonomy-bar"),
    path("autonomy/<int:pk>/<str:verdict>/", views.autonomy_decide, name="autonomy-decide"),
]

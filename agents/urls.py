from django.urls import path

from agents import views

app_name = "agents"

urlpatterns = [
    path("", views.agent_list, name="list"),
    path("new/", views.agent_create, name="create"),
    path("<int:pk>/", views.agent_detail, name="detail"),
    path("<int:pk>/pause/", views.agent_pause, name="pause"),
    path("<int:pk>/resume/", views.agent_resume, name="resume"),
    path("<int:pk>/keys/", views.key_issue, name="key_issue"),
    path("keys/<int:key_id>/revoke/", views.key_revoke, name="key_revoke"),
]

from django.urls import path

from agents import prompt_views as views

app_name = "prompts"

urlpatterns = [
    path("", views.prompt_list, name="list"),
    path("new/", views.prompt_create, name="create"),
    path("rate/", views.rate, name="rate"),
    path("<slug:name>/", views.prompt_detail, name="detail"),
    path("<slug:name>/diff/", views.version_diff, name="diff"),
    path("<slug:name>/labels/", views.label_move, name="label_move"),
    path("<slug:name>/labels/<str:label>/rollback/", views.label_rollback, name="label_rollback"),
    path("<slug:name>/promote/", views.promote, name="promote"),
    path("<slug:name>/webhooks/", views.webhook_add, name="webhook_add"),
    path("<slug:name>/v<int:number>/", views.version_detail, name="version"),
    path("<slug:name>/v<int:number>/refine/", views.refine, name="refine"),
]

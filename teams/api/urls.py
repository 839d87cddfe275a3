from django.urls import path

from teams.api import views

ID = "<str:team_pk>"

urlpatterns = [
    path("", views.TeamViewSet.as_view({"get": "list"}), name="team-list"),
    path(
        "<str:pk>/",
        views.TeamViewSet.as_view({"get": "retrieve", "patch": "partial_update"}),
        name="team-detail",
    ),
    path(
        "<str:pk>/default/",
        views.TeamViewSet.as_view({"post": "make_default"}),
        name="team-default",
    ),
    path(
        f"{ID}/members/",
        views.MemberViewSet.as_view({"get": "list", "post": "create"}),
        name="team-member-list",
    ),
    path(
        f"{ID}/members/<str:pk>/",
        views.MemberViewSet.as_view({"patch": "partial_update", "delete": "destroy"}),
        name="team-member-detail",
    ),
    path(
        f"{ID}/keys/",
        views.TeamApiKeyViewSet.as_view({"get": "list", "post": "create"}),
        name="team-key-list",
    ),
    path(
        f"{ID}/keys/<str:pk>/",
        views.TeamApiKeyViewSet.as_view({"delete": "destroy"}),
        name="team-key-detail",
    ),
    path(
        f"{ID}/budgets/",
        views.TeamBudgetViewSet.as_view({"get": "list", "post": "create"}),
        name="team-budget-list",
    ),
    path(
        f"{ID}/budgets/<str:pk>/",
        views.TeamBudgetViewSet.as_view({"delete": "destroy"}),
        name="team-budget-detail",
    ),
]

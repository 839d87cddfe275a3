from django.contrib.auth import views as auth_views
from django.urls import path

from selfservice import views

app_name = "selfservice"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("login/", views.SignInView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("keys/", views.api_key_create, name="api-key-create"),
    path("keys/<int:key_id>/revoke/", views.api_key_revoke, name="api-key-revoke"),
    path("teams/<slug:slug>/members/", views.team_member_add, name="team-member-add"),
    path(
        "teams/<slug:slug>/members/<int:user_id>/remove/",
        views.team_member_remove,
        name="team-member-remove",
    ),
    path(
        "teams/<slug:slug>/keys/<int:key_id>/revoke/",
        views.team_api_key_revoke,
        name="team-api-key-revoke",
    ),
]

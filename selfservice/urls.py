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
]

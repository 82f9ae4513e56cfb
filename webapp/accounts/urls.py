from django.urls import path

from webapp.accounts import views

app_name = "accounts"
urlpatterns = [
    path("accounts/", views.account, name="account"),
    path("accounts/tokens/new", views.token_create, name="token_create"),
    path("accounts/tokens/<int:token_id>/revoke", views.token_revoke, name="token_revoke"),
]

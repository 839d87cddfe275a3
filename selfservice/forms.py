from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.utils import timezone

from teams.models import TeamRole


class PasswordSignInForm(AuthenticationForm):
    def clean(self):
        if not settings.PASSWORD_SIGNIN_ENABLED:
            raise forms.ValidationError(
                "Password sign-in is turned off here; sign in with single sign-on.",
                code="password_signin_disabled",
            )
        return super().clean()


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(max_length=100, strip=True)
    expires_in_days = forms.IntegerField(
        min_value=1, max_value=3650, required=False, help_text="Empty: never expires."
    )

    def expires_at(self):
        days = self.cleaned_data.get("expires_in_days")
        return timezone.now() + timedelta(days=days) if days else None


class TeamMemberAddForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=TeamRole.choices, initial=TeamRole.MEMBER)

from django.apps import AppConfig


class TeamsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "teams"

    def ready(self) -> None:
        # Which team a call is charged to is cached per process (teams.selectors): any change
        # to a team, a membership or a key's scope makes every process forget it at once.
        from project.hotcache import invalidate_on_change
        from teams.models import Membership, Team, TeamApiKey
        from teams.selectors import TEAMS

        invalidate_on_change(TEAMS, Team, Membership, TeamApiKey)

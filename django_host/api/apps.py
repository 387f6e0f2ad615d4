from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "dziri.django_host.api"
    label = "dziri_api"
    verbose_name = "dziri chat API"

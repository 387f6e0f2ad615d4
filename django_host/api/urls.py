from django.urls import path

from . import views
from .views import methods

urlpatterns = [
    path("auth/csrf", methods(GET=views.csrf)),
    path("auth/register", methods(POST=views.register)),
    path("auth/login", methods(POST=views.login)),
    path("auth/logout", methods(POST=views.logout)),
    path("auth/me", methods(GET=views.me)),
    path("conversations", methods(GET=views.list_conversations, POST=views.create_conversation)),
    path("conversations/<str:conversation_id>",
         methods(GET=views.get_conversation, PATCH=views.update_conversation, DELETE=views.delete_conversation)),
    path("conversations/<str:conversation_id>/messages", methods(GET=views.list_messages, POST=views.send_message)),
    path("conversations/<str:conversation_id>/messages/<str:message_id>", methods(PATCH=views.edit_message)),
    path("conversations/<str:conversation_id>/regenerate", methods(POST=views.regenerate)),
    path("conversations/<str:conversation_id>/export", methods(GET=views.export_conversation)),
    path("account", methods(DELETE=views.delete_account)),
    path("account/export", methods(GET=views.export_account)),
    path("conversations/<str:conversation_id>/stop", methods(POST=views.stop)),
    path("search", methods(GET=views.search)),
    path("apikeys", methods(GET=views.list_api_keys, POST=views.create_api_key)),
    path("apikeys/<str:key_id>", methods(DELETE=views.revoke_api_key)),
    path("health", methods(GET=views.health)),
    path("plugins", methods(GET=views.plugins)),
]

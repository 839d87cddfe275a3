"""Existing conversations were straight lines: each message follows the one before it by
position, and the last message is the current leaf."""

from django.db import migrations


def link_messages(apps, schema_editor):
    Conversation = apps.get_model("llm", "Conversation")
    Message = apps.get_model("llm", "Message")
    for conversation_id in Conversation.objects.values_list("pk", flat=True).iterator():
        messages = list(
            Message.objects.filter(conversation_id=conversation_id).order_by("position").only("pk")
        )
        previous = None
        for message in messages:
            message.parent_id = previous
            previous = message.pk
        Message.objects.bulk_update(messages, ["parent"], batch_size=500)
        Conversation.objects.filter(pk=conversation_id).update(current_leaf_id=previous)


class Migration(migrations.Migration):
    dependencies = [("llm", "0003_message_tree_and_fallbacks")]

    operations = [migrations.RunPython(link_messages, migrations.RunPython.noop)]

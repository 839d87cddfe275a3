from decimal import Decimal

import factory

from llm.models import Conversation, LLMModel
from tests.accounts.factories import UserFactory


class StandinModelFactory(factory.django.DjangoModelFactory):
    """A catalog entry served by the local stand-in provider."""

    class Meta:
        model = LLMModel
        django_get_or_create = ["slug"]

    slug = factory.Sequence(lambda n: f"test-model-{n}")
    display_name = factory.LazyAttribute(lambda m: m.slug)
    provider = "openai"
    provider_model = "standin-chat"
    is_standin = True
    context_window = 16_384
    max_output_tokens = 1_024
    input_price_per_mtok = Decimal("3.00")
    output_price_per_mtok = Decimal("15.00")


class ConversationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Conversation

    owner = factory.SubFactory(UserFactory)
    model = factory.SubFactory(StandinModelFactory)
    title = factory.Faker("sentence", nb_words=3)

from rest_framework.routers import SimpleRouter

from llm.api import views

router = SimpleRouter()
router.register("models", views.LLMModelViewSet, basename="model")

urlpatterns = router.urls

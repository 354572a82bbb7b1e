from django.http import HttpResponse
from django.urls import path

from .models import Item


def one_row(request):
    """A one-row ORM get(): the smallest real request that touches the database."""
    return HttpResponse(Item.objects.get(pk=1).name)


urlpatterns = [path("", one_row)]

from django.http import HttpResponse
from django.urls import path

from .models import Item


def one_row(request):
    """A one-row ORM get(): the smallest real request that touches the database."""
    return HttpResponse(Item.objects.get(pk=1).name)


async def one_row_async(request):
    """The same through the async ORM (aget()): what an ASGI site's async views do."""
    return HttpResponse((await Item.objects.aget(pk=1)).name)


async def no_database(request):
    """An async view that touches no database: what the request itself costs."""
    return HttpResponse("no row")


urlpatterns = [path("", one_row), path("async", one_row_async), path("floor", no_database)]

"""gunicorn settings for --preload with the gevent worker (used by test_gevent.py).

gunicorn's gevent worker monkey-patches after the fork, but --preload has
imported the app, and with it django.db, in the master before that. Django's
per-thread connection storage is then a real threading.local, which every
greenlet of a worker shares: all requests but one fail with "DatabaseWrapper
objects created in a thread can only be used in that same thread". gunicorn
loads this file before it preloads the app, so patching here comes first.
"""

from gevent import monkey

monkey.patch_all()

"""The peers djtasks is measured against, each driven by a script that prints its figures as JSON.

Their packages are not djtasks' dependencies: ``pip install -r bench/requirements-peers.txt`` (and
``apt-get install -y redis-server`` for Celery's broker). ``harness.py`` runs them next to djtasks.
"""

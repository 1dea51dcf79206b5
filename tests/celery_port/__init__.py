"""The djtasks port of the small Celery project in docs/migrating-from-celery.md ("A worked port").

Each function keeps the Celery original's name and behaviour; the comment above each decorator is the Celery
line it replaces. tests/acceptance/test_celery_port.py runs it on real ``runworker`` and ``runbeat`` processes.
"""

from __future__ import annotations

from django import forms
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from djtasks import GroupResult, JobResult, chord
from djtasks.models import Job

from .tasks import add, fail, fail_once, flaky_add, square, summarize

RECENT_JOBS = 15
CHORD_SIZE_MAX = 20


class EnqueueForm(forms.Form):
    JOBS = [
        ("add", "add(a, b) after a delay"),
        ("flaky_add", "flaky_add(a, b): fails twice, then succeeds"),
        ("fail", "fail(): always raises"),
        ("fail_once", "fail_once(a, b): fails once; retry it in the admin"),
    ]
    job = forms.ChoiceField(choices=JOBS)
    a = forms.IntegerField(initial=2)
    b = forms.IntegerField(initial=3)
    seconds = forms.FloatField(initial=1.0, min_value=0, max_value=60, help_text="how long add() works")
    countdown = forms.FloatField(initial=0, min_value=0, max_value=3600, help_text="start no sooner than this")


def index(request: HttpRequest) -> HttpResponse:
    form = EnqueueForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        # The job row is written in this transaction: it exists (and a worker sees it) only on commit.
        with transaction.atomic():
            if data["job"] == "add":
                result = add.apply_async(args=(data["a"], data["b"], data["seconds"]), countdown=data["countdown"])
            elif data["job"] == "flaky_add":
                result = flaky_add.apply_async(args=(data["a"], data["b"]), countdown=data["countdown"])
            elif data["job"] == "fail_once":
                result = fail_once.apply_async(args=(data["a"], data["b"]), countdown=data["countdown"])
            else:
                result = fail.delay(f"you asked for it: {data['a']} {data['b']}")
        return redirect("job-detail", job_id=result.id)
    recent = Job.objects.order_by("-enqueued_at")[:RECENT_JOBS]
    return render(request, "demo/index.html", {"form": form, "recent": recent})


def job_detail(request: HttpRequest, job_id: str) -> HttpResponse:
    result = JobResult(job_id)
    try:
        result.refresh()
    except LookupError:
        return render(request, "demo/job.html", {"missing": True, "job_id": job_id}, status=404)
    return render(request, "demo/job.html", {"job": result, "finished": result.status.is_final})


class ChordForm(forms.Form):
    size = forms.IntegerField(initial=5, min_value=0, max_value=CHORD_SIZE_MAX, help_text="header jobs")
    seconds = forms.FloatField(initial=2.0, min_value=0, max_value=30, help_text="how long each square() works")


def start_chord(request: HttpRequest) -> HttpResponse:
    """Enqueue ``chord([square(1), ..., square(n)], summarize())`` in one transaction; show it."""
    form = ChordForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        size, seconds = form.cleaned_data["size"], form.cleaned_data["seconds"]
        with transaction.atomic():
            callback = chord([square.s(n, seconds) for n in range(1, size + 1)], summarize.s()).delay()
        return redirect("chord-detail", job_id=callback.id)
    return render(request, "demo/chord.html", {"form": form, "start": True})


def chord_detail(request: HttpRequest, job_id: str) -> HttpResponse:
    """A chord's header jobs (status, progress) and its callback; refreshes until the callback finishes."""
    callback = JobResult(job_id)
    try:
        callback.refresh()
    except LookupError:
        return render(request, "demo/chord.html", {"missing": True, "job_id": job_id}, status=404)
    header = callback.parent
    members: list[Job] = []
    if isinstance(header, GroupResult):
        rows = Job.objects.in_bulk([r.id for r in header.results])
        members = [rows[r.id] for r in header.results if r.id in rows]
    context = {"callback": callback, "header": header, "members": members, "finished": callback.status.is_final}
    return render(request, "demo/chord.html", context)

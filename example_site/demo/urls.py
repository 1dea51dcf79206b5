from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("jobs/<uuid:job_id>/", views.job_detail, name="job-detail"),
    path("chord/", views.start_chord, name="chord"),
    path("chord/<uuid:job_id>/", views.chord_detail, name="chord-detail"),
]

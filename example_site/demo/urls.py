from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("jobs/<uuid:job_id>/", views.job_detail, name="job-detail"),
]

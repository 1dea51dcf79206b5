from django.contrib import admin
from django.contrib.staticfiles.views import serve as staticfiles_serve
from django.urls import include, path, re_path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("example_site.demo.urls")),
    # The demo serves static files itself so that it runs under gunicorn with DEBUG off and nothing else;
    # a production site puts them behind its web server or WhiteNoise instead.
    re_path(r"^static/(?P<path>.*)$", staticfiles_serve, {"insecure": True}),
]

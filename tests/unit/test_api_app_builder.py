"""`serve run serve_apps.api.deployment:build` hands Serve an app builder: Serve refuses one that
takes more than the single arguments dict, and then never deploys the API (the platform's
/health answers nothing for minutes). The check here is Serve's own, run without a cluster."""

from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
from ray.serve.deployment import Application

from serve_apps.api.deployment import build


def test_serve_accepts_the_platform_api_builder_and_gets_an_application() -> None:
    app = call_user_app_builder_with_args_if_necessary(build, {"num_replicas": 1})

    assert isinstance(app, Application)

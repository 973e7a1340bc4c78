"""The same app on Ray Serve (extra `[scale]`): N replicas, each a full `create_app` with its own models.

On one machine `ray.init()` starts a local cluster. To spread to several machines: `ray start --head` on one,
`ray start --address=<head>:6379` on the others, then run `susik serve --backend ray --replicas N` with
`RAY_ADDRESS=<head>:6379`; Serve places replicas by their CPU (or GPU) request and runs an HTTP proxy on
every node, so a load balancer in front of the nodes' ports completes it. Replicas on different machines
must share the store: set `SUSIK_DB_URL` to PostgreSQL and `SUSIK_DATA_DIR` to shared storage.
"""

from __future__ import annotations

from collections.abc import Callable

from susik.serve.app import Pipelines, create_app, default_pipelines
from susik.serve.settings import Settings


def ray_application(
    settings: Settings, replicas: int, replica_cpus: float,
    pipeline_factory: Callable[[Settings], Pipelines] = default_pipelines,
):
    """A bound Serve application; each replica builds its app (and loads its models) where it runs."""
    from ray import serve

    @serve.deployment(num_replicas=replicas, ray_actor_options={"num_cpus": replica_cpus},
                      max_ongoing_requests=settings.max_queue)
    @serve.ingress()
    class Susik:
        def __init__(self, settings_json: dict, factory: Callable[[Settings], Pipelines]) -> None:
            self.settings = Settings(**settings_json)
            self.factory = factory

        def __serve_build_asgi_app__(self):
            return create_app(self.settings, pipeline_factory=self.factory)

    return Susik.bind(settings.model_dump(mode="json"), pipeline_factory)


def serve_on_ray(
    settings: Settings, host: str, port: int, replicas: int, replica_cpus: float = 1.0,
    pipeline_factory: Callable[[Settings], Pipelines] = default_pipelines, blocking: bool = True,
) -> None:
    import ray
    from ray import serve

    if settings.onnx_threads is None:  # replicas sharing a machine must not each take every core
        settings = settings.model_copy(update={"onnx_threads": max(1, round(replica_cpus))})
    ray.init(ignore_reinit_error=True, include_dashboard=False)  # joins RAY_ADDRESS when it is set
    serve.start(http_options={"host": host, "port": port})
    serve.run(ray_application(settings, replicas, replica_cpus, pipeline_factory), name="susik",
              route_prefix="/", blocking=blocking)

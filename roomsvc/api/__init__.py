"""Transports: REST route modules, one per feature. Each exposes `routes` (Starlette routes)
and `duties` (background coroutines `duty(app)` run for the app's lifetime in every process,
docs/spec.md §1 "background duties"). `roomsvc.app` mounts them all. `routing` declares a REST
method
once: its route, its discovery metadata and the authenticate -> decode -> call -> encode steps."""

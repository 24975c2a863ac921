"""The HTTP API and the demo page: a thin adapter over :class:`unembed.inverter.Inverter`.

Routes: ``GET /api/health``, ``GET /api/models``, ``POST /api/encode``, ``POST /api/invert``
(Server-Sent Events: ``step`` per decoder forward pass, then ``final``, or ``error``),
``POST /api/identify`` (the known-value attack: a list of candidates ranked for a vector), the page at
``/`` and its files under ``/static/``, the OpenAPI schema at ``/openapi.json`` and Swagger UI at
``/docs``, whose assets come from the ``swagger-ui-bundle-v2`` package (no CDN: it works offline).

Every bad input gets a 4xx with ``{"error": message}``: 400 (malformed JSON), 403 (cross-origin
POST), 404 (unknown model or path), 413 (body over ``max_body_bytes``), 422 (invalid fields,
wrong dimension, non-finite values, text over 2,000 characters, steps out of range), 503 with
Retry-After (the worker is saturated). Model work runs on the worker thread (``worker.py``).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..identify import builtin, from_values
from ..inverter import Inverter
from ..sampling import STRATEGIES
from .schemas import (
    EncodeRequest,
    EncodeResponse,
    ErrorEvent,
    ErrorResponse,
    FinalEvent,
    HealthResponse,
    IdentifyRequest,
    IdentifyResponse,
    InvertRequest,
    Memory,
    ModelInfo,
    ModelsResponse,
    StepEvent,
)
from .worker import EncodeJob, IdentifyJob, InvertJob, Saturated, Worker

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_BODY_BYTES = 1_000_000
LOOPBACK = ("127.0.0.1", "localhost", "::1")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_ERRORS = {
    400: {"model": ErrorResponse},
    404: {"model": ErrorResponse},
    413: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
    503: {"model": ErrorResponse},
}


# ---- the app ---------------------------------------------------------------------------------------


def create_app(
    inverters: dict[str, Inverter],
    *,
    max_jobs: int = 64,
    max_batch: int = 32,
    batch_window_s: float = 0.005,
    retry_after_s: int = 1,
    max_body_bytes: int = MAX_BODY_BYTES,
    allowed_origins: Sequence[str] = (),
    allowed_hosts: Sequence[str] | None = None,
) -> FastAPI:
    """An app serving ``inverters`` (name -> loaded Inverter; the first is the default model).

    ``max_jobs`` bounds the encode and invert jobs queued or running (beyond it: 503), ``max_batch``
    and ``batch_window_s`` control batching, ``allowed_origins`` lists exact origins (besides the
    page's own) that may POST, ``allowed_hosts`` (when given) the exact Host names accepted, which
    stops DNS-rebinding pages from reaching a loopback server.
    """
    if not inverters:
        raise ValueError("serve at least one model")
    worker = Worker(inverters, max_jobs=max_jobs, max_batch=max_batch, batch_window_s=batch_window_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker.start()
        try:
            yield
        finally:
            worker.stop()

    app = FastAPI(
        title="unembed",
        summary="Recover text from a text-embedding vector",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's own pages load their assets from a CDN: /docs is served below
        redoc_url=None,
    )
    app.state.inverters, app.state.worker, app.state.retry_after_s = inverters, worker, retry_after_s
    _add_error_handlers(app)
    _add_routes(app)
    _add_identify_route(app)
    _document_stream_events(app)
    _add_docs(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(
        _Guard,
        max_body=max_body_bytes,
        origins=frozenset(allowed_origins),
        hosts=None if allowed_hosts is None else frozenset(allowed_hosts),
    )
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k not in ("input", "url", "ctx")} for e in exc.errors()]
        errors = jsonable_encoder(errors)
        if any(e.get("type") == "json_invalid" for e in errors):
            return _error(400, "the request body is not valid JSON")
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "body"
        return _error(422, f"{where}: {first.get('msg', 'invalid request')}", errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "internal server error")


def _error(status: int, message: str, detail: list | None = None, headers: dict | None = None) -> JSONResponse:
    body = ErrorResponse(error=message, detail=detail).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status, headers=headers)


def _add_docs(app: FastAPI) -> None:
    """Swagger UI at /docs with its JavaScript, CSS and icon served from the installed bundle."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title="unembed API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
        )


def _add_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/api/health", response_model=HealthResponse)
    async def health(request: Request) -> HealthResponse:
        st = request.app.state
        return HealthResponse(status="ok", models=list(st.inverters), worker=st.worker.stats(), memory=_memory())

    @app.get("/api/models", response_model=ModelsResponse)
    async def models(request: Request) -> ModelsResponse:
        return ModelsResponse(models=[_model_info(inv) for inv in request.app.state.inverters.values()])

    @app.post("/api/encode", response_model=EncodeResponse, responses=_ERRORS)
    async def encode(body: EncodeRequest, request: Request) -> EncodeResponse:
        inv = _model(request, body.model)
        return await _answer(request, EncodeJob(model=inv.name, text=body.text))

    @app.post(
        "/api/invert",
        response_class=StreamingResponse,
        responses={
            **_ERRORS,
            200: {
                "description": "text/event-stream: `step` events (StepEvent), then `final` (FinalEvent) "
                "or `error` (ErrorEvent)",
                "content": {"text/event-stream": {}},
            },
        },
    )
    async def invert(body: InvertRequest, request: Request) -> StreamingResponse:
        inv = _model(request, body.model)
        job = _invert_job(inv, body)
        _submit(request, job)
        return StreamingResponse(
            _sse(job), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )


def _add_identify_route(app: FastAPI) -> None:
    @app.post("/api/identify", response_model=IdentifyResponse, responses=_ERRORS)
    async def identify(body: IdentifyRequest, request: Request) -> IdentifyResponse:
        inv = _model(request, body.model)
        vector = None
        if body.embedding is not None:
            try:
                vector = inv.check_vectors(body.embedding).cpu().numpy()[0]
            except ValueError as exc:
                raise HTTPException(422, f"embedding: {exc}") from None
        if body.builtin is not None:
            candidates, cache = builtin(body.builtin), True
        else:
            try:
                candidates, cache = from_values(body.candidates, body.type, "pasted list"), False
            except ValueError as exc:
                raise HTTPException(422, f"candidates: {exc}") from None
        job = IdentifyJob(
            model=inv.name, text=body.text or "", vector=vector, candidates=candidates, top_k=body.top_k, cache=cache
        )
        return await _answer(request, job)


def _document_stream_events(app: FastAPI) -> None:
    """Put the SSE event schemas into the OpenAPI document (FastAPI cannot infer a stream's items)."""
    default = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = default()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (StepEvent, FinalEvent, ErrorEvent):
                js = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(js.pop("$defs", {}))
                components[model.__name__] = js
            stream = schema["paths"]["/api/invert"]["post"]["responses"]["200"]["content"]["text/event-stream"]
            refs = [{"$ref": f"#/components/schemas/{m.__name__}"} for m in (StepEvent, FinalEvent, ErrorEvent)]
            stream["schema"] = {"oneOf": refs}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


def _model(request: Request, name: str | None) -> Inverter:
    inverters: dict[str, Inverter] = request.app.state.inverters
    if name is None:
        return next(iter(inverters.values()))
    if name not in inverters:
        raise HTTPException(404, f"model {name!r} is not served (served: {', '.join(inverters)})")
    return inverters[name]


def _model_info(inv: Inverter) -> ModelInfo:
    cfg = inv.cfg
    return ModelInfo(
        name=inv.name,
        encoder=cfg.encoder.name,
        dim=inv.dim,
        vocab_size=cfg.model.vocab_size,
        seq_len=cfg.model.seq_len,
        strategies=list(STRATEGIES),
        default_strategy=cfg.sample.strategy,
        default_num_steps=cfg.sample.num_steps,
        eos_id=cfg.model.eos_id,
        pad_id=cfg.model.pad_id,
    )


def _invert_job(inv: Inverter, body: InvertRequest) -> InvertJob:
    """Check the request against the model (422 on mismatch) and make its job."""
    cfg = inv.cfg
    strategy = body.strategy or cfg.sample.strategy
    num_steps = body.num_steps or cfg.sample.num_steps
    if not 1 <= num_steps <= cfg.model.seq_len:
        raise HTTPException(422, f"num_steps must be between 1 and {cfg.model.seq_len} for model {inv.name}")
    vector = None
    if body.embedding is not None:
        try:
            inv.check_vectors(body.embedding)
        except ValueError as exc:
            raise HTTPException(422, f"embedding: {exc}") from None
        vector = np.asarray(body.embedding, dtype=np.float64)
    return InvertJob(
        model=inv.name,
        strategy=strategy,
        num_steps=num_steps,
        seed=body.seed,
        text=body.text,
        vector=vector,
        loop=asyncio.get_running_loop(),
        events=asyncio.Queue(),
    )


async def _answer(request: Request, job: EncodeJob):
    """Submit a job whose answer is one value and wait for it; a client that leaves cancels it."""
    _submit(request, job)
    try:
        return await asyncio.wrap_future(job.future)
    except asyncio.CancelledError:
        job.cancel()
        raise


def _submit(request: Request, job) -> None:
    try:
        request.app.state.worker.submit(job)
    except Saturated as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": str(request.app.state.retry_after_s)}) from None


async def _sse(job: InvertJob) -> AsyncIterator[str]:
    """The job's events as SSE; leaving before the last event (client gone) cancels the job."""
    ended = False
    try:
        while not ended:
            event = await job.events.get()
            name = {StepEvent: "step", FinalEvent: "final", ErrorEvent: "error"}[type(event)]
            ended = name != "step"
            yield f"event: {name}\ndata: {event.model_dump_json()}\n\n"
    finally:
        if not ended:
            job.cancel()


def _memory() -> Memory:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    rss = peak
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return Memory(rss_mb=round(rss, 1), peak_rss_mb=round(peak, 1))


# ---- request guard: body size, origin, headers -------------------------------------------------------


class _Guard:
    """ASGI middleware: checks Host (400), bounds bodies (413), refuses cross-origin POSTs (403), adds headers.

    An ``Origin`` header must equal the page's own origin (scheme + Host header) or one of
    ``origins`` exactly; requests without one (curl, scripts) are not browser cross-origin requests.
    """

    def __init__(self, app: ASGIApp, max_body: int, origins: frozenset[str], hosts: frozenset[str] | None):
        self.app, self.max_body, self.origins, self.hosts = app, max_body, origins, hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if self.hosts is not None and _hostname(headers.get("host", "")) not in self.hosts:
            await _error(400, f"host {headers.get('host')!r} is not served here")(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD", "OPTIONS") and not self._origin_ok(scope, headers):
            await _error(403, f"origin {headers.get('origin')!r} may not call this API")(scope, receive, send)
            return
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            status = 413 if length.isdigit() else 400
            await _error(status, f"request body over {self.max_body} bytes" if status == 413 else "bad Content-Length")(
                scope, receive, send
            )
            return
        if scope["method"] in ("POST", "PUT", "PATCH"):
            body = await self._read(receive)
            if body is None:
                await _error(413, f"request body over {self.max_body} bytes")(scope, receive, send)
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, _with_headers(scope, send))

    def _origin_ok(self, scope: Scope, headers: Headers) -> bool:
        origin = headers.get("origin")
        if origin is None:
            return True
        own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
        return origin == own or origin in self.origins

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or None once it passes max_body (chunked uploads are counted too)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _hostname(host: str) -> str:
    """'127.0.0.1:8080' -> '127.0.0.1', '[::1]:8080' -> '[::1]'."""
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.split(":", 1)[0]


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _with_headers(scope: Scope, send: Send) -> Send:
    page = not scope["path"].startswith(("/api/", "/docs", "/redoc", "/openapi.json"))

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            extra = [(b"x-content-type-options", b"nosniff")]
            if page:
                extra.append((b"content-security-policy", PAGE_CSP.encode()))
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped


# ---- running it -----------------------------------------------------------------------------------


def load_inverters(models: Sequence[str], device: str = "cpu", sample: dict | None = None) -> dict[str, Inverter]:
    """Load each model once; models that share an encoder share one loaded copy of it.

    ``sample`` overrides every model's decoding settings (Inverter.load), e.g. its precision."""
    inverters: dict[str, Inverter] = {}
    encoders: dict[str, object] = {}
    for name in models:
        first = Inverter.load(name, device=device, sample=sample)
        enc = encoders.get(first.cfg.encoder.name)
        inv = first if enc is None else Inverter.load(name, device=device, encoder=enc, sample=sample)
        if inv.name in inverters:
            raise ValueError(f"model {inv.name!r} is given twice")
        encoders.setdefault(inv.cfg.encoder.name, inv.encoder)  # loads the encoder now, not on first request
        if getattr(inv.model, "traced_passes", None) is not None:
            inv.model.traced_passes.warm_up(inv.model)  # the graphs too
        inverters[inv.name] = inv
    return inverters


def serve(
    models: Sequence[str] = ("default",),
    host: str = "127.0.0.1",
    port: int = 8080,
    device: str = "cpu",
    sample: dict | None = None,
    **limits,
) -> None:
    """Load the models and serve the API and page with uvicorn until interrupted.

    The port is taken first: a port in use is a ValueError before any model loads or URL is shown."""
    import uvicorn

    log.setLevel(min(log.getEffectiveLevel(), logging.INFO))
    sock = listen_socket(host, port)
    try:
        inverters = load_inverters(models, device, sample)
        if host in LOOPBACK:
            limits.setdefault("allowed_hosts", LOOPBACK_HOSTS)
        app = create_app(inverters, **limits)
        if host not in LOOPBACK:
            log.warning("listening on %s: the API is reachable from other machines", host)
        shown = f"[{host}]" if ":" in host else host
        server = uvicorn.Server(uvicorn.Config(app, log_level="info", access_log=False, timeout_graceful_shutdown=5))
        log.info("serving %s on http://%s:%d/ (API docs at /docs)", ", ".join(inverters), shown, port)
        server.run(sockets=[sock])
    finally:
        sock.close()


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port); ValueError naming the address when that fails (in use)."""
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be 0..65535, got {port}")
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:
        raise ValueError(f"cannot open a socket for {host}: {exc.strerror or exc}") from None
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # reuse TIME_WAIT, never a listening port
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


@contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 60.0) -> Iterator[str]:
    """Run ``app`` with uvicorn on a background thread; yields its base URL (a free port by default)."""
    import uvicorn

    sock = listen_socket(host, port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)
        sock.close()

"""The daemon's server does not import uvicorn's command line, and uvicorn stays whole for others."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _python(code: str) -> str:
    command = [sys.executable, "-c", textwrap.dedent(code)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_serving_imports_no_command_line_and_uvicorn_completes_on_first_use() -> None:
    out = _python(
        """
        import sys
        import kurative.commands.serve, kurative.daemon, kurative.ingress.server as server
        print(sorted(m for m in ("uvicorn.main", "uvicorn.supervisors", "click") if m in sys.modules))
        import uvicorn
        print(uvicorn.Config is server.Config, uvicorn.Server is server.Server)
        from uvicorn import run
        print(callable(run), uvicorn.__version__.startswith("0."))
        print("uvicorn.main" in sys.modules, sorted(uvicorn.__all__))
        """
    )
    assert out.splitlines() == [
        "[]",
        "True True",
        "True True",
        "True ['Config', 'Server', 'main', 'run']",
    ]


def test_a_uvicorn_imported_before_is_used_as_it_is() -> None:
    out = _python(
        """
        import uvicorn
        import kurative.ingress.server as server
        print(server.Config is uvicorn.Config, "__getattr__" in vars(uvicorn))
        """
    )
    assert out.split() == ["True", "False"]


def test_the_daemon_serves_with_the_lazily_completed_package() -> None:
    out = _python(
        """
        import asyncio, socket
        from kurative.ingress.server import IngressServer, bind
        from kurative.ingress.settings import IngressSettings
        from starlette.applications import Starlette
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route

        async def main():
            app = Starlette(routes=[Route("/", lambda request: PlainTextResponse("up"))])
            settings = IngressSettings(host="127.0.0.1", port=0)
            server = IngressServer(app, settings, bind(settings))
            task = asyncio.create_task(server.serve())
            stop = asyncio.Event()
            assert await server.wait_started(stop)
            host, port = server.url.rsplit("/", 1)[1].split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET / HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
            print((await reader.read()).split(b"\\r\\n")[-1].decode())
            writer.close()
            server.stop()
            await task

        asyncio.run(main())
        """
    )
    assert out.split() == ["up"]

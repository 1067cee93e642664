"""A model hub on 127.0.0.1 serving one folder as a model repository, run in a thread by tests.

Enough of the Hugging Face Hub's HTTP API for huggingface_hub's `snapshot_download` (point it
here with `HF_ENDPOINT`): a revision's commit, the file tree, and `resolve` with HEAD and
ranged GET. Files go out at `bytes_per_second`, so a test can watch a download's progress;
`fail` makes every request answer 500. Knows nothing about Persona.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.servers.threaded import ThreadedServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
CHUNK = 4096


class LocalHub(ThreadedServer):
    def __init__(self, repo_id: str, folder: Path, *, bytes_per_second: float = 1e9) -> None:
        self.repo_id = repo_id
        self.files = {
            str(f.relative_to(folder)): f.read_bytes()
            for f in sorted(folder.rglob("*"))
            if f.is_file()
        }
        self.bytes_per_second = bytes_per_second
        self.fail = False
        super().__init__()
        self.endpoint = self.origin

    def routes(self) -> list[Route]:
        repo = "/{owner}/{name}"
        return [
            Route(f"/api/models{repo}/revision/{{revision}}", self._revision),
            Route(f"/api/models{repo}/tree/{{revision}}", self._tree),
            Route(f"/api/models{repo}/tree/{{revision}}/{{path:path}}", self._tree),
            Route(f"{repo}/resolve/{{revision}}/{{path:path}}", self._resolve,
                  methods=["GET", "HEAD"]),
        ]  # fmt: skip

    @property
    def total_bytes(self) -> int:
        return sum(len(b) for b in self.files.values())

    def _problem(self, request: Request) -> Response | None:
        if self.fail:
            return JSONResponse({"error": "the hub is down"}, status_code=500)
        params = request.path_params
        if f"{params['owner']}/{params['name']}" != self.repo_id:
            return JSONResponse(
                {"error": "Repository not found"},
                status_code=404,
                headers={"X-Error-Code": "RepoNotFound"},
            )
        return None

    async def _revision(self, request: Request) -> Response:
        if problem := self._problem(request):
            return problem
        siblings = [{"rfilename": name} for name in self.files]
        return JSONResponse({"id": self.repo_id, "sha": COMMIT, "siblings": siblings})

    async def _tree(self, request: Request) -> Response:
        if problem := self._problem(request):
            return problem
        entries = [
            {"type": "file", "path": name, "size": len(blob), "oid": _oid(blob)}
            for name, blob in self.files.items()
        ]
        return JSONResponse(entries)

    async def _resolve(self, request: Request) -> Response:
        if problem := self._problem(request):
            return problem
        blob = self.files.get(request.path_params["path"])
        if blob is None:
            return JSONResponse(
                {"error": "Entry not found"},
                status_code=404,
                headers={"X-Error-Code": "EntryNotFound"},
            )
        headers = {
            "X-Repo-Commit": COMMIT,
            "ETag": f'"{_oid(blob)}"',
            "Content-Length": str(len(blob)),
            "Accept-Ranges": "bytes",
        }
        if request.method == "HEAD":
            return Response(headers=headers)
        start = 0
        if (wanted := request.headers.get("range", "")).startswith("bytes="):
            start = int(wanted[6:].split("-")[0] or 0)
            headers["Content-Length"] = str(len(blob) - start)
        pace = CHUNK / self.bytes_per_second

        async def chunks():  # type: ignore[no-untyped-def]
            for at in range(start, len(blob), CHUNK):
                yield blob[at : at + CHUNK]
                await asyncio.sleep(pace)

        return StreamingResponse(chunks(), status_code=206 if start else 200, headers=headers)


def _oid(blob: bytes) -> str:
    """git's blob id, as the hub reports it."""
    return hashlib.sha1(b"blob %d\0" % len(blob) + blob).hexdigest()

"""Web endpoints in isolated containers (crun): the image brings FastAPI, and a container reaches
another endpoint through the same URL the host uses."""

import urllib.request

import modal

image = modal.Image.debian_slim().uv_pip_install("fastapi[standard]")
app = modal.App("e2e-web-oci", image=image)


@app.function()
@modal.fastapi_endpoint()
def hello() -> str:
    return "Hello from an isolated container"


@app.function()
@modal.fastapi_endpoint()
def fetch(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return {"status": resp.status, "body": resp.read().decode()}

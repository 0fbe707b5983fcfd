"""A small web app whose VERSION the URL tests rewrite to see reloads and redeploys."""

import modal

VERSION = "v1"

app = modal.App("e2e-web-small", image=modal.Image.debian_slim().uv_pip_install("fastapi[standard]"))


@app.function()
@modal.fastapi_endpoint()
def version() -> str:
    return VERSION


@app.function()
@modal.fastapi_endpoint(label="e2e-small-label")
def labelled() -> str:
    return f"labelled {VERSION}"

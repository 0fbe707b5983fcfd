"""`modal shell shell_app.py::shelled`: a shell in this function's image, with its secret."""

import modal

app = modal.App("shell-app")
image = modal.Image.debian_slim().env({"SHELL_APP_MARK": "from-the-image"})


@app.function(image=image, secrets=[modal.Secret.from_dict({"SHELL_APP_SECRET": "s3cret"})])
def shelled() -> str:
    return "unused"

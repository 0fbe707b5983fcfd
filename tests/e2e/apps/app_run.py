import modal

app = modal.App("e2e-app-run")


@app.function()
def cube(x: int) -> int:
    return x**3


if __name__ == "__main__":
    with app.run():
        print(f"cube={cube.remote(3)}")
        print(f"cubes={list(cube.map([1, 2, 3]))}")

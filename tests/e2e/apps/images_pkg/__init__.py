VALUE = "local-python-source"

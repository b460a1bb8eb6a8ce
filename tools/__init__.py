"""Operator tools: the `retrain` command, `retrain azure doctor` and the reference webhook client.

Not deployed (see .funcignore): the Functions package (main.py, function_app/, shared/) never imports these.
"""

"""`python -m local.pipeline_endpoint --port N --runs-dir D`."""

from local.pipeline_endpoint.app import main

main()

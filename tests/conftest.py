pytest_plugins = [
    "tests.peers.postgres",
    "tests.peers.litellm",
    "tests.peers.llamacpp",
    "tests.peers.synapse",
]

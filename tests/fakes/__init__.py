"""Fake servers that speak the wire protocols of the services dziri's plugins talk to,
on 127.0.0.1 with a free port, for offline tests and benchmarks: `ollama_server`,
`openai_server`, `groq_server`. The pytest fixtures for the first two (`fake_ollama`,
`fake_openai`) are in `fakes.fixtures`, which `tests/conftest.py` loads for every test.
"""
